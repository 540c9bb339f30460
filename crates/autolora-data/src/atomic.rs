//! Atomic writes: a kill never leaves a half-written file, or a folder that mixes old and new
//! files, under a final name.
//!
//! A file is written to a temporary file in its folder, flushed to disk, renamed over its final
//! name, and the folder is flushed so the rename itself survives a crash. A multi-file output
//! (an asset, an adapter, a merged model) is filled in a staging folder beside its final name
//! and renamed into place whole.
//!
//! This is the workspace's writer for everything above the tensor layer (the CLI and xtask use
//! it too); `autolora-models`, which cannot depend on this crate, has the same routine for the
//! files it writes itself.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Writes `path` through `fill`, atomically (see the module docs).
pub fn write_with(path: &Path, fill: impl FnOnce(&mut File) -> io::Result<()>) -> Result<()> {
    let dir = parent(path);
    std::fs::create_dir_all(dir).map_err(at(dir))?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(at(dir))?;
    fill(tmp.as_file_mut()).map_err(at(path))?;
    tmp.as_file().sync_all().map_err(at(path))?;
    tmp.persist(path).map_err(|e| Error::io(path, e.error))?;
    sync_dir(dir)
}

/// Writes `bytes` to `path` atomically.
pub fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    write_with(path, |file| file.write_all(bytes))
}

/// Builds the folder `dir` through `fill`, which writes into a staging folder beside it; the
/// staging folder then replaces `dir` whole. An existing `dir` is moved aside first and removed
/// after, so readers see the old folder, briefly none, then the new one, never a mix. On
/// failure the staging folder is removed and `dir` is left as it was.
pub fn write_dir<E: From<Error>>(
    dir: &Path,
    fill: impl FnOnce(&Path) -> std::result::Result<(), E>,
) -> std::result::Result<(), E> {
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

/// Appends one line to a JSON-lines log; lines are small and written whole.
pub fn append_line(path: &Path, line: &str) -> Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| Error::io(path, e))?;
    writeln!(file, "{line}").map_err(|e| Error::io(path, e))
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

/// The error of an operation on `path`.
fn at(path: &Path) -> impl Fn(io::Error) -> Error + '_ {
    move |e| Error::io(path, e)
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_and_folders_are_replaced_whole() -> Result<()> {
        let io = |e| Error::io("test", e);
        let root = tempfile::tempdir().map_err(io)?;
        let file = root.path().join("a/b.txt");
        write(&file, b"one")?;
        write(&file, b"two")?;
        assert_eq!(std::fs::read(&file).map_err(io)?, b"two");

        let dir = root.path().join("adapter");
        write_dir(&dir, |d| -> Result<()> {
            std::fs::write(d.join("config.json"), "old").map_err(io)?;
            std::fs::write(d.join("weights"), "old").map_err(io)
        })?;
        // A failing writer leaves the old folder untouched and no staging folder behind.
        let failed = write_dir(&dir, |d| -> Result<()> {
            std::fs::write(d.join("config.json"), "new").map_err(io)?;
            Err(io(io::Error::other("killed before the weights")))
        });
        assert!(failed.is_err());
        let read = |p: PathBuf| std::fs::read_to_string(p).map_err(io);
        assert_eq!(read(dir.join("config.json"))?, "old");
        assert_eq!(read(dir.join("weights"))?, "old");
        write_dir(&dir, |d| -> Result<()> {
            std::fs::write(d.join("config.json"), "new").map_err(io)
        })?;
        assert_eq!(read(dir.join("config.json"))?, "new");
        assert!(
            !dir.join("weights").exists(),
            "the new folder replaced the old one whole"
        );
        let names: Vec<_> = std::fs::read_dir(root.path())
            .map_err(io)?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<io::Result<_>>()
            .map_err(io)?;
        assert_eq!(names.len(), 2, "only a/ and adapter/ remain: {names:?}");
        Ok(())
    }
}
