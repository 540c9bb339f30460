//! Per-step and per-evaluation metrics as JSON lines (one object a line, each with `step`).

use std::path::Path;

use anyhow::{Context, Result};
use serde::Serialize;

/// Starts a fresh metrics file.
pub fn reset(path: &Path) -> Result<()> {
    if path.exists() {
        std::fs::remove_file(path).with_context(|| format!("removing {}", path.display()))?;
    }
    Ok(())
}

/// Appends one record.
pub fn append(path: &Path, record: &impl Serialize) -> Result<()> {
    Ok(autolora_data::atomic::append_line(
        path,
        &serde_json::to_string(record)?,
    )?)
}

/// Drops records of steps at or after `step` (written after the checkpoint a resumed run
/// starts from), so the file of a resumed run equals that of an uninterrupted one.
pub fn truncate_after(path: &Path, step: u64) -> Result<()> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Ok(());
    };
    let kept: Vec<&str> = text
        .lines()
        .filter(|line| {
            serde_json::from_str::<serde_json::Value>(line)
                .ok()
                .and_then(|v| v.get("step").and_then(|s| s.as_u64()))
                .is_some_and(|s| s < step)
        })
        .collect();
    let mut out = kept.join("\n");
    if !out.is_empty() {
        out.push('\n');
    }
    Ok(autolora_data::atomic::write(path, out.as_bytes())?)
}
