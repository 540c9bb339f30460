//! The GGUF container (version 2 and 3): header, metadata key/values and tensor infos, read
//! from a memory map with every length and offset bounds-checked, so a truncated or corrupt
//! file is an error naming the byte offset, never a panic.
//!
//! Layout (little-endian): magic `GGUF`, u32 version, u64 tensor count, u64 metadata count;
//! metadata as (string key, u32 value type, value); tensor infos as (string name, u32 rank,
//! u64 dims, fastest-varying first, u32 ggml type, u64 offset into the data section); the data
//! section starts at the next multiple of `general.alignment` (default 32).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use memmap2::Mmap;

use super::quant::GgmlType;
use crate::{Error, Result};

/// A metadata value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// Unsigned integer (u8, u16, u32, u64).
    UInt(u64),
    /// Signed integer (i8, i16, i32, i64).
    Int(i64),
    /// Float (f32, f64).
    Float(f64),
    /// Boolean.
    Bool(bool),
    /// UTF-8 string.
    Str(String),
    /// Array of values.
    Array(Vec<Value>),
}

impl Value {
    /// The value as an integer, if it is one.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::UInt(v) => i64::try_from(*v).ok(),
            Value::Int(v) => Some(*v),
            _ => None,
        }
    }

    /// The value as a float (integers convert).
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Float(v) => Some(*v),
            Value::UInt(v) => Some(*v as f64),
            Value::Int(v) => Some(*v as f64),
            _ => None,
        }
    }

    /// The value as a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The value as a boolean.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// The value as an array.
    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }
}

/// Where one tensor lives.
#[derive(Debug, Clone)]
pub struct TensorInfo {
    /// GGUF tensor name (`blk.0.attn_q.weight`).
    pub name: String,
    /// Dimensions, fastest-varying first (GGUF order: `[in, out]` for a weight).
    pub dims: Vec<u64>,
    /// Storage type.
    pub ggml_type: GgmlType,
    /// Absolute byte range in the file.
    pub start: usize,
    /// End of the byte range.
    pub end: usize,
}

impl TensorInfo {
    /// The shape in PyTorch order (slowest-varying first).
    pub fn torch_shape(&self) -> Vec<i64> {
        self.dims.iter().rev().map(|&d| d as i64).collect()
    }

    /// Number of elements.
    pub fn numel(&self) -> u64 {
        self.dims.iter().product()
    }
}

/// An opened GGUF file.
pub struct GgufFile {
    path: PathBuf,
    mmap: Mmap,
    /// GGUF version.
    pub version: u32,
    /// Metadata by key.
    pub metadata: BTreeMap<String, Value>,
    /// Tensor infos by name.
    pub tensors: BTreeMap<String, TensorInfo>,
}

impl std::fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufFile")
            .field("path", &self.path)
            .field("version", &self.version)
            .field("metadata", &self.metadata.len())
            .field("tensors", &self.tensors.len())
            .finish()
    }
}

/// A bounds-checked little-endian cursor over the file.
struct Cursor<'a> {
    path: &'a Path,
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn err(&self, what: String) -> Error {
        Error::Gguf {
            path: self.path.to_path_buf(),
            offset: self.pos as u64,
            what,
        }
    }

    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.bytes.len());
        let Some(end) = end else {
            return Err(self.err(format!(
                "truncated: {what} needs {n} bytes, the file has {} left",
                self.bytes.len().saturating_sub(self.pos)
            )));
        };
        let out = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N]> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, what)?);
        Ok(out)
    }

    fn u32(&mut self, what: &str) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &str) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    /// A count that must fit in memory: anything beyond the bytes left is corrupt.
    fn count(&mut self, what: &str, min_item_bytes: usize) -> Result<usize> {
        let at = self.pos;
        let n = self.u64(what)?;
        let left = (self.bytes.len() - self.pos) as u64;
        if n.saturating_mul(min_item_bytes.max(1) as u64) > left {
            self.pos = at;
            return Err(self.err(format!(
                "{what} is {n}, more than the {left} bytes left in the file can hold"
            )));
        }
        Ok(n as usize)
    }

    fn string(&mut self, what: &str) -> Result<String> {
        let n = self.count(what, 1)?;
        let bytes = self.take(n, what)?;
        String::from_utf8(bytes.to_vec()).map_err(|e| self.err(format!("{what} is not UTF-8: {e}")))
    }

    fn value(&mut self, value_type: u32, key: &str, depth: usize) -> Result<Value> {
        Ok(match value_type {
            0 => Value::UInt(u64::from(self.array::<1>(key)?[0])),
            1 => Value::Int(i64::from(i8::from_le_bytes(self.array(key)?))),
            2 => Value::UInt(u64::from(u16::from_le_bytes(self.array(key)?))),
            3 => Value::Int(i64::from(i16::from_le_bytes(self.array(key)?))),
            4 => Value::UInt(u64::from(self.u32(key)?)),
            5 => Value::Int(i64::from(i32::from_le_bytes(self.array(key)?))),
            6 => Value::Float(f64::from(f32::from_le_bytes(self.array(key)?))),
            7 => Value::Bool(self.array::<1>(key)?[0] != 0),
            8 => Value::Str(self.string(key)?),
            9 => {
                if depth > 4 {
                    return Err(self.err(format!("{key}: arrays nested too deeply")));
                }
                let item_type = self.u32(key)?;
                let n = self.count(&format!("{key} array length"), 1)?;
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    items.push(self.value(item_type, key, depth + 1)?);
                }
                Value::Array(items)
            }
            10 => Value::UInt(self.u64(key)?),
            11 => Value::Int(i64::from_le_bytes(self.array(key)?)),
            12 => Value::Float(f64::from_le_bytes(self.array(key)?)),
            other => {
                return Err(self.err(format!(
                    "metadata {key}: unknown value type {other} (expected 0..=12)"
                )));
            }
        })
    }
}

/// Maps a file read-only.
#[allow(unsafe_code)]
fn map_file(path: &Path) -> Result<Mmap> {
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    // SAFETY: read-only mapping of a model file that is not modified while it is loaded.
    unsafe { Mmap::map(&file) }.map_err(io)
}

impl GgufFile {
    /// Opens and indexes `path` (memory-mapped; tensor data is read on demand).
    pub fn open(path: &Path) -> Result<Self> {
        let mmap = map_file(path)?;
        let mut c = Cursor {
            path,
            bytes: &mmap,
            pos: 0,
        };
        let magic = c.array::<4>("magic")?;
        if &magic != b"GGUF" {
            return Err(Error::Gguf {
                path: path.to_path_buf(),
                offset: 0,
                what: format!("magic is {magic:?}, expected \"GGUF\""),
            });
        }
        let version = c.u32("version")?;
        if !(2..=3).contains(&version) {
            return Err(c.err(format!("version {version} (supported: 2 and 3)")));
        }
        // A tensor info takes at least 8 (name) + 4 + 4 + 8 bytes; a key/value 8 + 4 + 1.
        let tensor_count = c.count("tensor count", 24)?;
        let kv_count = c.count("metadata count", 13)?;
        let mut metadata = BTreeMap::new();
        for _ in 0..kv_count {
            let key = c.string("metadata key")?;
            let value_type = c.u32(&key)?;
            let value = c.value(value_type, &key, 0)?;
            metadata.insert(key, value);
        }
        let mut infos = Vec::with_capacity(tensor_count);
        for _ in 0..tensor_count {
            let name = c.string("tensor name")?;
            let rank = c.u32(&name)? as usize;
            if rank == 0 || rank > 4 {
                return Err(c.err(format!("tensor {name}: rank {rank} (expected 1 to 4)")));
            }
            let mut dims = Vec::with_capacity(rank);
            for _ in 0..rank {
                dims.push(c.u64(&name)?);
            }
            let type_id = c.u32(&name)?;
            let offset = c.u64(&name)?;
            infos.push((name, dims, type_id, offset));
        }
        let alignment = match metadata.get("general.alignment") {
            None => 32,
            Some(v) => v
                .as_i64()
                .filter(|&a| a > 0)
                .ok_or_else(|| c.err(format!("general.alignment is {v:?}")))?
                as usize,
        };
        let data_start = c.pos.div_ceil(alignment) * alignment;
        let mut tensors = BTreeMap::new();
        for (name, dims, type_id, offset) in infos {
            let ggml_type = GgmlType::from_id(type_id, &name)?;
            let numel = dims.iter().try_fold(1u64, |acc, &d| acc.checked_mul(d));
            let bytes = numel.and_then(|n| ggml_type.byte_size(n));
            let range = bytes.and_then(|b| {
                let start = (data_start as u64).checked_add(offset)?;
                Some((start, start.checked_add(b)?))
            });
            let Some((start, end)) = range.filter(|&(_, e)| e <= mmap.len() as u64) else {
                return Err(Error::Gguf {
                    path: path.to_path_buf(),
                    offset: data_start as u64 + offset,
                    what: format!(
                        "tensor {name} ({dims:?}, {ggml_type:?}) does not fit in the file of {} bytes \
                         (truncated, or a row length that is not a whole number of blocks)",
                        mmap.len()
                    ),
                });
            };
            let info = TensorInfo {
                name: name.clone(),
                dims,
                ggml_type,
                start: start as usize,
                end: end as usize,
            };
            if tensors.insert(name.clone(), info).is_some() {
                return Err(c.err(format!("tensor {name} appears twice")));
            }
        }
        tracing::debug!(path = %path.display(), version, tensors = tensors.len(), "GGUF opened");
        Ok(GgufFile {
            path: path.to_path_buf(),
            mmap,
            version,
            metadata,
            tensors,
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The stored bytes of a tensor.
    pub fn data(&self, info: &TensorInfo) -> &[u8] {
        &self.mmap[info.start..info.end]
    }

    /// Metadata `key`, or an error naming it.
    pub fn require(&self, key: &str) -> Result<&Value> {
        self.metadata.get(key).ok_or_else(|| Error::BadConfig {
            path: self.path.clone(),
            what: format!("GGUF metadata {key} is missing"),
        })
    }

    /// Integer metadata `key`, or an error naming it.
    pub fn require_int(&self, key: &str) -> Result<i64> {
        let v = self.require(key)?;
        v.as_i64().ok_or_else(|| Error::BadConfig {
            path: self.path.clone(),
            what: format!("GGUF metadata {key} should be an integer, found {v:?}"),
        })
    }

    /// A string array (`tokenizer.ggml.tokens`), or an error naming the key.
    pub fn string_array(&self, key: &str) -> Result<Vec<&str>> {
        let bad = |why: &str| Error::BadConfig {
            path: self.path.clone(),
            what: format!("GGUF metadata {key}: {why}"),
        };
        let items = self
            .require(key)?
            .as_array()
            .ok_or_else(|| bad("not an array"))?;
        items
            .iter()
            .map(|v| v.as_str().ok_or_else(|| bad("not an array of strings")))
            .collect()
    }
}
