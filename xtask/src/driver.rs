//! What the resumable drivers (`cargo xtask experiment`, `cargo xtask recovery`) share: the
//! JSON-lines log of finished units (`results.jsonl`), the loop that runs what the log lacks,
//! the copy of the `autolora` binary they run, and the commit their records name.
//!
//! Each driver keeps its own record type and its own `find` (which record is which unit);
//! this module knows neither.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::report;

/// The log's file name inside a plan's `out_dir`.
pub const LOG: &str = "results.jsonl";

/// The records so far: one line of the log per finished unit.
#[derive(Debug)]
pub struct Log<R> {
    /// In the order they finished.
    pub records: Vec<R>,
}

impl<R> Default for Log<R> {
    fn default() -> Self {
        Log {
            records: Vec::new(),
        }
    }
}

impl<R: DeserializeOwned> Log<R> {
    /// Reads the log (empty when absent). A last line cut short by an interruption is reported
    /// and ignored, so its unit runs again; a malformed line elsewhere is an error.
    pub fn load(path: &Path) -> Result<Self> {
        Ok(Log {
            records: load_lines(path)?,
        })
    }
}

impl<R: Serialize> Log<R> {
    /// Appends a record to the file (one whole line per write) and to the log.
    pub fn append(&mut self, path: &Path, record: R) -> Result<()> {
        append_line(path, &record)?;
        self.records.push(record);
        Ok(())
    }
}

/// Runs, in order, every unit the log lacks (`is_recorded`), appending each one's record to
/// the log at `log_path` as soon as it finishes; `run_one` sees the log as it stands. Before
/// each run prints `[i/n] <label>, about N min left` (the estimate from this call's runs so
/// far), and at the end `all n <noun> recorded in <log_path>`.
pub fn drive<U, R: Serialize>(
    units: &[U],
    log: &mut Log<R>,
    log_path: &Path,
    noun: &str,
    is_recorded: impl Fn(&Log<R>, &U) -> bool,
    label: impl Fn(&U) -> String,
    mut run_one: impl FnMut(&U, &Log<R>) -> Result<R>,
) -> Result<()> {
    let started = Instant::now();
    let mut finished_here = 0u32;
    for (index, unit) in units.iter().enumerate() {
        if is_recorded(log, unit) {
            continue;
        }
        let left = units[index..]
            .iter()
            .filter(|u| !is_recorded(log, u))
            .count() as u32;
        println!(
            "\n[{}/{}] {}{}",
            index + 1,
            units.len(),
            label(unit),
            eta(started, finished_here, left)
        );
        let record = run_one(unit, log)?;
        log.append(log_path, record)?;
        finished_here += 1;
    }
    println!(
        "\nall {} {noun} recorded in {}",
        units.len(),
        log_path.display()
    );
    Ok(())
}

/// `", about N min left"` for `left` more runs, averaging this driver's `finished` runs since
/// `started` (searches and trainings alike); empty before the first one finished.
fn eta(started: Instant, finished: u32, left: u32) -> String {
    match finished {
        0 => String::new(),
        n => format!(
            ", about {:.0} min left",
            (started.elapsed() / n * left).as_secs_f64() / 60.0
        ),
    }
}

/// Copies the `autolora` binary into `out` and returns the copy's path: one build serves a
/// whole driver, even if the tree is rebuilt while it runs. Copied under a temporary name and
/// renamed, so a running copy is never written over.
pub fn install_binary(cli: &Path, out: &Path) -> Result<PathBuf> {
    let binary = out.join("autolora");
    let staging = out.join(format!(".autolora-{}", std::process::id()));
    std::fs::copy(cli, &staging)
        .and_then(|_| std::fs::rename(&staging, &binary))
        .with_context(|| format!("copying {} to {}", cli.display(), binary.display()))?;
    Ok(binary)
}

/// The source tree's commit, marked `-dirty` when it has local edits (empty outside a git
/// checkout: the record then names no commit).
pub fn commit(root: &Path) -> String {
    let head = report::git(root, &["rev-parse", "--short", "HEAD"]).unwrap_or_default();
    match report::has_local_edits(root) {
        Ok(true) => format!("{head}-dirty"),
        _ => head,
    }
}

/// Reads a JSON-lines log (empty when absent). A last line cut short by an interruption is
/// reported and ignored, so its run is done again; a malformed line elsewhere is an error.
fn load_lines<T: DeserializeOwned>(path: &Path) -> Result<Vec<T>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let lines: Vec<&str> = text.lines().collect();
    let mut records = Vec::new();
    for (index, line) in lines.iter().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str(line) {
            Ok(record) => records.push(record),
            Err(e) if index + 1 == lines.len() && !text.ends_with('\n') => {
                println!(
                    "{}:{}: an unfinished last line ({e}); its run will be done again",
                    path.display(),
                    index + 1
                );
            }
            Err(e) => {
                return Err(e).with_context(|| {
                    format!(
                        "{}:{}: expected one JSON record per line",
                        path.display(),
                        index + 1
                    )
                });
            }
        }
    }
    Ok(records)
}

/// Appends one record to a JSON-lines log as one whole line per write, synced to disk. A
/// last line cut short by an interruption (which [`load_lines`] ignores) is cut off first, so
/// the new line does not run on from it.
fn append_line<T: Serialize>(path: &Path, record: &T) -> Result<()> {
    let mut line = serde_json::to_string(record)?;
    line.push('\n');
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .read(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    drop_unfinished_line(&mut file).with_context(|| format!("repairing {}", path.display()))?;
    file.write_all(line.as_bytes())
        .and_then(|()| file.sync_data())
        .with_context(|| format!("appending to {}", path.display()))
}

/// Truncates `file` after its last newline when it does not end with one.
fn drop_unfinished_line(file: &mut std::fs::File) -> std::io::Result<()> {
    use std::io::{Read as _, Seek as _, SeekFrom};
    let len = file.metadata()?.len();
    if len == 0 {
        return Ok(());
    }
    let mut last = [0u8];
    file.seek(SeekFrom::Start(len - 1))?;
    file.read_exact(&mut last)?;
    if last[0] == b'\n' {
        return Ok(());
    }
    let mut text = Vec::new();
    file.seek(SeekFrom::Start(0))?;
    file.read_to_end(&mut text)?;
    let keep = text.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    file.set_len(keep as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Line {
        unit: u32,
        value: String,
    }

    fn line(unit: u32) -> Line {
        Line {
            unit,
            value: format!("v{unit}"),
        }
    }

    #[test]
    fn appended_records_read_back_in_order_as_one_line_each() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join(LOG);
        let mut log = Log::<Line>::load(&path)?;
        assert!(log.records.is_empty());
        log.append(&path, line(1))?;
        log.append(&path, line(2))?;
        assert_eq!(log.records, [line(1), line(2)]);
        assert_eq!(
            std::fs::read_to_string(&path)?,
            "{\"unit\":1,\"value\":\"v1\"}\n{\"unit\":2,\"value\":\"v2\"}\n"
        );
        assert_eq!(Log::<Line>::load(&path)?.records, [line(1), line(2)]);
        Ok(())
    }

    #[test]
    fn an_unfinished_last_line_is_dropped_and_a_broken_middle_line_is_an_error() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join(LOG);
        let whole = serde_json::to_string(&line(1))?;
        std::fs::write(&path, format!("{whole}\n{{\"unit\": 2, \"val"))?;
        assert_eq!(Log::<Line>::load(&path)?.records, [line(1)]);
        // The next record replaces the unfinished line.
        let mut log = Log::<Line>::load(&path)?;
        log.append(&path, line(3))?;
        assert_eq!(Log::<Line>::load(&path)?.records, [line(1), line(3)]);
        std::fs::write(&path, format!("{{\"unit\": 2, \"val\n{whole}\n"))?;
        let err = Log::<Line>::load(&path).unwrap_err();
        assert!(
            format!("{err:#}").contains(":1: expected one JSON record"),
            "{err:#}"
        );
        Ok(())
    }

    /// [`drive`] over units that are numbers, recorded when a line names them.
    fn drive_lines(
        units: &[u32],
        log: &mut Log<Line>,
        path: &Path,
        run_one: impl FnMut(&u32, &Log<Line>) -> Result<Line>,
    ) -> Result<()> {
        drive(
            units,
            log,
            path,
            "units",
            |log, unit| log.records.iter().any(|r| r.unit == *unit),
            |unit| format!("unit {unit}"),
            run_one,
        )
    }

    #[test]
    fn drive_runs_only_what_the_log_lacks_and_records_each_run() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join(LOG);
        let mut log = Log::default();
        log.append(&path, line(2))?;
        let mut ran = Vec::new();
        drive_lines(&[1, 2, 3], &mut log, &path, |&unit, log| {
            // Each run sees the records of the runs before it.
            ran.push((unit, log.records.len()));
            Ok(line(unit))
        })?;
        assert_eq!(ran, [(1, 1), (3, 2)]);
        let units: Vec<u32> = Log::<Line>::load(&path)?
            .records
            .iter()
            .map(|r| r.unit)
            .collect();
        assert_eq!(units, [2, 1, 3]);

        // Complete: nothing runs again. A failed run stops the loop and records nothing.
        let mut reloaded = Log::<Line>::load(&path)?;
        drive_lines(&[1, 2, 3], &mut reloaded, &path, |_, _| {
            panic!("every unit is recorded")
        })?;
        let err = drive_lines(&[4, 5], &mut reloaded, &path, |_, _| {
            anyhow::bail!("the run failed")
        })
        .unwrap_err();
        assert!(format!("{err:#}").contains("the run failed"), "{err:#}");
        assert_eq!(Log::<Line>::load(&path)?.records.len(), 3);
        Ok(())
    }

    #[test]
    fn the_estimate_waits_for_a_finished_run() {
        assert_eq!(eta(Instant::now(), 0, 5), "");
        assert_eq!(eta(Instant::now(), 1, 5), ", about 0 min left");
    }
}
