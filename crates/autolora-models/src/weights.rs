//! Reading checkpoint tensors from safetensors files.
//!
//! [`SafeTensorStore`] memory-maps one file or every shard of a sharded checkpoint and indexes
//! their tensors by key; nothing is copied until a tensor is requested.
//! [`WeightLoader`] serves one model's construction: it finds the checkpoint's key prefix
//! (`bert.`, `roberta.`, `transformer.`, `model.` or none), checks every requested tensor's
//! shape against the config, converts F32/F16/BF16/F64 storage to the requested kind, and
//! keeps track of what was used so that [`WeightLoader::finish`] can flag tensors the
//! architecture did not expect.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::Mmap;
use safetensors::{Dtype, SafeTensors};
use tch::{Device, Kind, Tensor};

use crate::{Error, Result};

/// Name of a single-file checkpoint inside a model directory.
pub const SINGLE_FILE: &str = "model.safetensors";
/// Name of the shard index of a sharded checkpoint.
pub const SHARD_INDEX: &str = "model.safetensors.index.json";

/// Anything that serves named tensors: memory-mapped safetensors ([`SafeTensorStore`]), or
/// another checkpoint format (a GGUF file, dequantizing on load).
pub trait TensorSource {
    /// What was opened (a path), for messages.
    fn description(&self) -> &str;
    /// All tensor keys, sorted.
    fn keys(&self) -> Vec<&str>;
    /// The stored shape of `key` (in the layout [`load`](TensorSource::load) returns).
    fn shape(&self, key: &str) -> Option<Vec<i64>>;
    /// Reads `key` as a `kind` tensor on `device`.
    fn load(&self, key: &str, kind: Kind, device: Device) -> Result<Tensor>;
    /// Whether `key` is stored.
    fn contains(&self, key: &str) -> bool {
        self.shape(key).is_some()
    }
}

/// The tensor kinds checkpoints are read and written in, with their safetensors dtypes.
const KINDS: &[(Kind, Dtype)] = &[
    (Kind::Float, Dtype::F32),
    (Kind::Half, Dtype::F16),
    (Kind::BFloat16, Dtype::BF16),
    (Kind::Double, Dtype::F64),
    (Kind::Int64, Dtype::I64),
];

/// The safetensors dtype of `kind`, if checkpoints can hold it (F32, F16, BF16, F64, I64).
pub fn safetensors_dtype(kind: Kind) -> Option<Dtype> {
    KINDS.iter().find_map(|&(k, d)| (k == kind).then_some(d))
}

/// Where one tensor lives.
#[derive(Debug, Clone)]
struct TensorEntry {
    file: usize,
    dtype: Dtype,
    shape: Vec<i64>,
    /// Absolute byte range inside the file.
    start: usize,
    end: usize,
}

/// Memory-mapped safetensors files and the index of their tensors.
pub struct SafeTensorStore {
    description: String,
    files: Vec<(PathBuf, Mmap)>,
    entries: BTreeMap<String, TensorEntry>,
}

impl std::fmt::Debug for SafeTensorStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SafeTensorStore")
            .field("source", &self.description)
            .field("tensors", &self.entries.len())
            .finish()
    }
}

#[derive(serde::Deserialize)]
struct ShardIndex {
    weight_map: HashMap<String, String>,
}

/// Maps a file read-only.
#[allow(unsafe_code)]
fn map_file(path: &Path) -> Result<Mmap> {
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = File::open(path).map_err(io)?;
    // SAFETY: the mapping is read-only and checkpoint files are not modified while a model
    // is being loaded; this is the standard way safetensors files are read.
    unsafe { Mmap::map(&file) }.map_err(io)
}

impl SafeTensorStore {
    /// Opens the weights of a Hugging Face model directory: `model.safetensors.index.json`
    /// with its shards if present, else `model.safetensors`.
    pub fn open_dir(dir: &Path) -> Result<Self> {
        let index = dir.join(SHARD_INDEX);
        let single = dir.join(SINGLE_FILE);
        if index.is_file() {
            Self::open_sharded(&index)
        } else if single.is_file() {
            Self::open_files(&[single])
        } else {
            Err(Error::NoWeights {
                dir: dir.to_path_buf(),
            })
        }
    }

    /// Opens a sharded checkpoint from its index file; every key of the index must be in the
    /// shard it names.
    pub fn open_sharded(index_path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(index_path).map_err(|source| Error::Io {
            path: index_path.to_path_buf(),
            source,
        })?;
        let index: ShardIndex = serde_json::from_str(&text).map_err(|source| Error::Json {
            path: index_path.to_path_buf(),
            source,
        })?;
        let dir = index_path.parent().unwrap_or(Path::new("."));
        let shards: BTreeSet<&String> = index.weight_map.values().collect();
        let paths: Vec<PathBuf> = shards.iter().map(|s| dir.join(s)).collect();
        let mut store = Self::open_files(&paths)?;
        store.description = index_path.display().to_string();
        for (name, shard) in &index.weight_map {
            let in_shard = store
                .entries
                .get(name)
                .is_some_and(|e| store.files[e.file].0 == dir.join(shard));
            if !in_shard {
                return Err(Error::ShardIndex {
                    index: index_path.to_path_buf(),
                    name: name.clone(),
                    shard: shard.clone(),
                });
            }
        }
        Ok(store)
    }

    /// Opens and indexes the given safetensors files. A key present in two files is an error
    /// (reported as an unexpected tensor), since it is ambiguous.
    pub fn open_files(paths: &[PathBuf]) -> Result<Self> {
        let mut files = Vec::with_capacity(paths.len());
        let mut entries = BTreeMap::new();
        let mut duplicates = Vec::new();
        for (file, path) in paths.iter().enumerate() {
            let mmap = map_file(path)?;
            let (header_len, metadata) =
                SafeTensors::read_metadata(&mmap).map_err(|source| Error::SafeTensors {
                    path: path.clone(),
                    source,
                })?;
            let data_start = 8 + header_len;
            for (name, info) in metadata.tensors() {
                let entry = TensorEntry {
                    file,
                    dtype: info.dtype,
                    shape: info.shape.iter().map(|&d| d as i64).collect(),
                    start: data_start + info.data_offsets.0,
                    end: data_start + info.data_offsets.1,
                };
                if entries.insert(name.clone(), entry).is_some() {
                    duplicates.push(format!("{name} (in several files)"));
                }
            }
            files.push((path.clone(), mmap));
        }
        if !duplicates.is_empty() {
            return Err(Error::UnexpectedTensors { names: duplicates });
        }
        let description = match paths {
            [one] => one.display().to_string(),
            _ => format!("{} safetensors files", paths.len()),
        };
        Ok(SafeTensorStore {
            description,
            files,
            entries,
        })
    }

    /// What was opened (a path), for messages.
    pub fn description(&self) -> &str {
        &self.description
    }

    /// All tensor keys, sorted.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }

    /// Whether `key` is stored.
    pub fn contains(&self, key: &str) -> bool {
        self.entries.contains_key(key)
    }

    /// The stored shape of `key`.
    pub fn shape(&self, key: &str) -> Option<&[i64]> {
        self.entries.get(key).map(|e| e.shape.as_slice())
    }

    fn entry(&self, key: &str) -> Result<&TensorEntry> {
        self.entries.get(key).ok_or_else(|| Error::MissingTensor {
            name: key.to_string(),
            key: key.to_string(),
            source_desc: self.description.clone(),
        })
    }

    /// The kind `key` is stored in: F32, F16, BF16, F64 or I64 (other dtypes are errors).
    pub fn stored_kind(&self, key: &str) -> Result<Kind> {
        let dtype = self.entry(key)?.dtype;
        KINDS
            .iter()
            .find_map(|&(k, d)| (d == dtype).then_some(k))
            .ok_or_else(|| Error::UnsupportedDtype {
                name: key.to_string(),
                dtype: dtype.to_string(),
            })
    }

    /// Reads `key` as a `kind` tensor on `device` (converting from the
    /// [stored kind](Self::stored_kind)).
    pub fn load(&self, key: &str, kind: Kind, device: Device) -> Result<Tensor> {
        let stored = self.stored_kind(key)?;
        let entry = self.entry(key)?;
        let bytes = &self.files[entry.file].1[entry.start..entry.end];
        // `from_data_size` copies the bytes (the map may be unaligned for the element type).
        let tensor = Tensor::f_from_data_size(bytes, &entry.shape, stored)?;
        Ok(tensor.f_to_kind(kind)?.f_to(device)?)
    }
}

impl TensorSource for SafeTensorStore {
    fn description(&self) -> &str {
        SafeTensorStore::description(self)
    }

    fn keys(&self) -> Vec<&str> {
        SafeTensorStore::keys(self).collect()
    }

    fn shape(&self, key: &str) -> Option<Vec<i64>> {
        SafeTensorStore::shape(self, key).map(<[i64]>::to_vec)
    }

    fn load(&self, key: &str, kind: Kind, device: Device) -> Result<Tensor> {
        SafeTensorStore::load(self, key, kind, device)
    }

    fn contains(&self, key: &str) -> bool {
        SafeTensorStore::contains(self, key)
    }
}

/// Everything [`WeightLoader::finish`] found out.
#[derive(Debug, Clone, Default)]
pub struct LoadReport {
    /// The detected key prefix (`"bert."`, `""`, ...).
    pub prefix: String,
    /// Number of tensors read.
    pub loaded: usize,
    /// Checkpoint keys outside the model's namespace that were not used (say, a
    /// pre-training head); logged as a warning.
    pub unused: Vec<String>,
}

/// Serves the tensors of one model from a [`TensorSource`]; see the module docs.
pub struct WeightLoader<'a> {
    store: &'a dyn TensorSource,
    prefix: String,
    base_modules: Vec<String>,
    ignored_suffixes: Vec<String>,
    device: Device,
    used: BTreeSet<String>,
}

impl std::fmt::Debug for WeightLoader<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WeightLoader")
            .field("source", &self.store.description())
            .field("prefix", &self.prefix)
            .field("used", &self.used.len())
            .finish()
    }
}

impl<'a> WeightLoader<'a> {
    /// Detects the prefix: the first of `prefixes` (e.g. `["bert.", ""]`) under which `probe`
    /// (a tensor every checkpoint of the architecture has, e.g.
    /// `embeddings.word_embeddings.weight`) is stored. `base_modules` are the base model's
    /// top-level module names (`embeddings`, `encoder`, ...): an unused key under the prefix
    /// and one of these is an error at [`finish`](Self::finish).
    pub fn new(
        store: &'a dyn TensorSource,
        prefixes: &[&str],
        probe: &str,
        base_modules: &[&str],
        device: Device,
    ) -> Result<Self> {
        let prefix = prefixes
            .iter()
            .find(|p| store.contains(&format!("{p}{probe}")))
            .ok_or_else(|| Error::MissingTensor {
                name: probe.to_string(),
                key: prefixes
                    .iter()
                    .map(|p| format!("{p}{probe}"))
                    .collect::<Vec<_>>()
                    .join(" | "),
                source_desc: store.description().to_string(),
            })?;
        Ok(WeightLoader {
            store,
            prefix: prefix.to_string(),
            base_modules: base_modules.iter().map(|s| s.to_string()).collect(),
            ignored_suffixes: Vec::new(),
            device,
            used: BTreeSet::new(),
        })
    }

    /// Keys ending in `suffix` (non-persistent buffers some checkpoints carry, such as
    /// `embeddings.position_ids`) are never reported as unexpected.
    pub fn ignore_suffix(&mut self, suffix: &str) {
        self.ignored_suffixes.push(suffix.to_string());
    }

    /// The detected prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The device tensors are placed on.
    pub fn device(&self) -> Device {
        self.device
    }

    /// Whether the base model has tensor `name` (prefix added).
    pub fn has(&self, name: &str) -> bool {
        self.store.contains(&format!("{}{name}", self.prefix))
    }

    /// Whether the checkpoint has `key` verbatim (no prefix: task heads).
    pub fn has_root(&self, key: &str) -> bool {
        self.store.contains(key)
    }

    /// Base-model tensor `name` (prefix added) with the given shape, as `kind`.
    pub fn get(&mut self, name: &str, shape: &[i64], kind: Kind) -> Result<Tensor> {
        let key = format!("{}{name}", self.prefix);
        self.fetch(name, key, shape, kind)
    }

    /// Like [`get`](Self::get) but `None` when the tensor is absent.
    pub fn get_opt(&mut self, name: &str, shape: &[i64], kind: Kind) -> Result<Option<Tensor>> {
        if self.has(name) {
            self.get(name, shape, kind).map(Some)
        } else {
            Ok(None)
        }
    }

    /// Tensor stored under `key` verbatim (task heads sit outside the base prefix).
    pub fn get_root(&mut self, key: &str, shape: &[i64], kind: Kind) -> Result<Tensor> {
        self.fetch(key, key.to_string(), shape, kind)
    }

    /// Like [`get_root`](Self::get_root) but `None` when the tensor is absent.
    pub fn get_root_opt(&mut self, key: &str, shape: &[i64], kind: Kind) -> Result<Option<Tensor>> {
        if self.has_root(key) {
            self.get_root(key, shape, kind).map(Some)
        } else {
            Ok(None)
        }
    }

    fn fetch(&mut self, name: &str, key: String, shape: &[i64], kind: Kind) -> Result<Tensor> {
        let found = self.store.shape(&key).ok_or_else(|| Error::MissingTensor {
            name: name.to_string(),
            key: key.clone(),
            source_desc: self.store.description().to_string(),
        })?;
        if found != shape {
            return Err(Error::ShapeMismatch {
                name: key,
                expected: shape.to_vec(),
                found: found.to_vec(),
            });
        }
        let tensor = self.store.load(&key, kind, self.device)?;
        self.used.insert(key);
        Ok(tensor)
    }

    fn in_namespace(&self, key: &str) -> bool {
        let Some(rest) = key.strip_prefix(&self.prefix) else {
            return false;
        };
        if !self.prefix.is_empty() {
            return true;
        }
        let first = rest.split('.').next().unwrap_or("");
        self.base_modules.iter().any(|m| m == first)
    }

    /// Checks that every tensor inside the base model's namespace was used (else
    /// [`Error::UnexpectedTensors`]); other unused keys are logged and returned.
    pub fn finish(self) -> Result<LoadReport> {
        let mut unexpected = Vec::new();
        let mut unused = Vec::new();
        for key in self.store.keys() {
            if self.used.contains(key) || self.ignored_suffixes.iter().any(|s| key.ends_with(s)) {
                continue;
            }
            if self.in_namespace(key) {
                unexpected.push(key.to_string());
            } else {
                unused.push(key.to_string());
            }
        }
        if !unexpected.is_empty() {
            return Err(Error::UnexpectedTensors { names: unexpected });
        }
        if !unused.is_empty() {
            tracing::warn!(
                count = unused.len(),
                keys = ?unused,
                source = self.store.description(),
                "checkpoint tensors not used by this model"
            );
        }
        Ok(LoadReport {
            prefix: self.prefix,
            loaded: self.used.len(),
            unused,
        })
    }
}

/// Writes `tensors` to a safetensors file with the `{"format": "pt"}` metadata that
/// `transformers` and PEFT expect. Tensors are copied to the CPU; the file is written
/// atomically ([`crate::atomic`]), so a reader never sees half a file.
pub fn write_safetensors(path: &Path, tensors: &[(String, Tensor)]) -> Result<()> {
    let mut buffers = Vec::with_capacity(tensors.len());
    for (name, tensor) in tensors {
        let dtype = safetensors_dtype(tensor.kind()).ok_or_else(|| Error::UnsupportedDtype {
            name: name.clone(),
            dtype: format!("{:?}", tensor.kind()),
        })?;
        let t = tensor.detach().f_to(Device::Cpu)?.f_contiguous()?;
        let numel = t.numel();
        let mut bytes = vec![0u8; numel * t.kind().elt_size_in_bytes()];
        t.f_copy_data_u8(&mut bytes, numel)?;
        let shape: Vec<usize> = t.size().iter().map(|&d| d as usize).collect();
        buffers.push((name.clone(), dtype, shape, bytes));
    }
    let views = buffers
        .iter()
        .map(|(name, dtype, shape, bytes)| {
            safetensors::tensor::TensorView::new(*dtype, shape.clone(), bytes)
                .map(|view| (name.clone(), view))
        })
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|source| Error::SafeTensors {
            path: path.to_path_buf(),
            source,
        })?;
    let metadata = HashMap::from([("format".to_string(), "pt".to_string())]);
    crate::atomic::write_via(path, |tmp| {
        safetensors::tensor::serialize_to_file(views, Some(metadata), tmp).map_err(|source| {
            Error::SafeTensors {
                path: path.to_path_buf(),
                source,
            }
        })
    })
}
