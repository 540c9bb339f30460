//! What the CLI's integration tests share: the fixtures folder, running the binary, and the
//! project's reference Python.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use anyhow::{Result, ensure};

/// `tests/fixtures` (tiny models and data sets in their official formats).
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// Runs the `autolora` binary.
pub fn autolora(args: &[&str]) -> Result<Output> {
    Ok(Command::new(env!("CARGO_BIN_EXE_autolora"))
        .args(args)
        .output()?)
}

/// The standard output of a command that must have succeeded (else its whole output).
pub fn ok(output: Output) -> Result<String> {
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    ensure!(
        output.status.success(),
        "failed: {}\nstdout:\n{stdout}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(stdout)
}

/// The project's Python (installed by `cargo xtask setup`), if present.
pub fn reference_python() -> Option<PathBuf> {
    let cache = std::env::var_os("AUTOLORA_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache/autolora")))?;
    let python = cache.join("python/torch-2.11.0/bin/python");
    python.exists().then_some(python)
}

/// A script of `tests/reference`.
pub fn reference_script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/reference")
        .join(name)
}
