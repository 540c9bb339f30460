//! Atomic writes of the files this crate produces (safetensors weights, PEFT adapters): a kill
//! never leaves a half-written file, or an adapter folder that mixes a new config with old
//! weights, under a final name.
//!
//! The same routine as `autolora_data::atomic` (which this crate cannot depend on): a file goes
//! through a temporary file in its folder, fsync, rename and an fsync of the folder; a folder is
//! filled under a staging name beside it and renamed into place whole.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// Writes `path` through `fill`, which writes the whole content to the temporary path it is
/// given (libraries such as safetensors write by path), atomically.
pub fn write_via(path: &Path, fill: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let dir = parent(path);
    std::fs::create_dir_all(dir).map_err(at(dir))?;
    let tmp = tempfile::NamedTempFile::new_in(dir).map_err(at(dir))?;
    fill(tmp.path())?;
    tmp.as_file().sync_all().map_err(at(path))?;
    tmp.persist(path).map_err(|e| at(path)(e.error))?;
    sync_dir(dir)
}

/// Builds the folder `dir` through `fill`, which writes into a staging folder beside it; the
/// staging folder then replaces `dir` whole (an existing `dir` is moved aside first and removed
/// after). On failure the staging folder is removed and `dir` is left as it was.
pub fn write_dir(dir: &Path, fill: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let staging = sibling(dir, "partial");
    if staging.exists() {
        std::fs::remove_dir_all(&staging).map_err(at(&staging))?;
    }
    std::fs::create_dir_all(&staging).map_err(at(&staging))?;
    if let Err(e) = fill(&staging) {
        let _ = std::fs::remove_dir_all(&staging);
        return Err(e);
    }
    sync_dir(&staging)?;
    let old = sibling(dir, "old");
    if dir.exists() {
        std::fs::rename(dir, &old).map_err(at(dir))?;
    }
    std::fs::rename(&staging, dir).map_err(at(dir))?;
    sync_dir(parent(dir))?;
    if old.exists() {
        std::fs::remove_dir_all(&old).map_err(at(&old))?;
    }
    Ok(())
}

fn parent(path: &Path) -> &Path {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// `.name.<what>-<pid>` beside `path`.
fn sibling(path: &Path, what: &str) -> PathBuf {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    parent(path).join(format!(".{name}.{what}-{}", std::process::id()))
}

fn at(path: &Path) -> impl Fn(io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(at(dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_folder_write_leaves_the_old_folder_whole() -> Result<()> {
        let root = tempfile::tempdir().map_err(at(Path::new("tempdir")))?;
        let dir = root.path().join("adapter");
        let put = |path: PathBuf, text: &str| std::fs::write(&path, text).map_err(at(&path));
        write_dir(&dir, |d| {
            put(d.join("adapter_config.json"), "old")?;
            put(d.join("adapter_model.safetensors"), "old")
        })?;
        let failed = write_dir(&dir, |d| {
            put(d.join("adapter_config.json"), "new")?;
            Err(Error::InvalidArgument {
                what: "weights",
                why: "killed before the weights".into(),
            })
        });
        assert!(failed.is_err());
        for file in ["adapter_config.json", "adapter_model.safetensors"] {
            let text = std::fs::read_to_string(dir.join(file)).map_err(at(&dir))?;
            assert_eq!(text, "old", "{file}");
        }
        let file = root.path().join("w.safetensors");
        write_via(&file, |tmp| put(tmp.to_path_buf(), "weights"))?;
        assert_eq!(
            std::fs::read_to_string(&file).map_err(at(&file))?,
            "weights"
        );
        let left: Vec<_> = std::fs::read_dir(root.path())
            .map_err(at(root.path()))?
            .collect();
        assert_eq!(
            left.len(),
            2,
            "no staging or temporary files are left behind"
        );
        Ok(())
    }
}
