//! `cargo xtask gpu-pack`: builds what the CUDA check runs on a GPU machine and packs it into
//! `.gpu-carry/`.
//!
//! The GPU machine has libtorch (its Python's torch wheel) but no Rust toolchain, no registry
//! and no model files, and at most 64 MiB travel to it per call. So the `cuda`-feature
//! binaries (the `autolora` command and the `cuda` test binaries) are built here, stripped of
//! debug information, and carried with `xtask/gpu/check.sh`, which finds the machine's
//! libtorch and benchmarks random weights of the real model shapes. See docs/cuda.md.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::{provision, report};

/// The folder that travels (ignored by git, named in the device call's `carry`).
pub const CARRY_DIR: &str = ".gpu-carry";

/// What may travel per device call: the working tree and the carried paths together.
const TRAVEL_LIMIT: u64 = 64 * 1024 * 1024;

/// Test targets built with `--features cuda` and run on the GPU: every test file gated on the
/// `cuda` feature, by package.
const CUDA_TESTS: &[(&str, &str)] = &[("autolora-core", "cuda")];

/// Device time the check is sized for (check.sh stops starting bench runs at 400 s); the call's
/// limit leaves room for the machine's start-up work and the report.
const SUGGESTED_TIMEOUT_S: u32 = 540;

/// Builds, strips and packs the binaries, checks the size, and prints the device call.
pub fn pack(release: bool) -> Result<()> {
    let root = provision::repo_root();
    let libtorch = libtorch_dir(&root)?;
    if !libtorch.join("lib").join("libtorch_cuda.so").is_file() {
        bail!(
            "{} has no lib/libtorch_cuda.so: the cuda feature links it, so the full torch \
             install is needed (cargo xtask setup --flavor full)",
            libtorch.display()
        );
    }
    let profile = if release { "release" } else { "dev" };
    let mut built = Vec::new();
    eprintln!("building autolora with --features cuda ({profile} profile)");
    let cli = cargo_artifacts(
        &root,
        &["build", "-p", "autolora-cli", "--features", "cuda"],
        release,
    )?;
    let cli = cli
        .into_iter()
        .find(|(kind, name, _)| kind == "bin" && name == "autolora")
        .context("cargo built no `autolora` binary")?;
    built.push((PathBuf::from("bin/autolora"), cli.2));
    for (package, test) in CUDA_TESTS {
        eprintln!("building test {package}/{test} with --features cuda ({profile} profile)");
        let artifacts = cargo_artifacts(
            &root,
            &[
                "test",
                "--no-run",
                "-p",
                package,
                "--features",
                "cuda",
                "--test",
                test,
            ],
            release,
        )?;
        let (_, _, path) = artifacts
            .into_iter()
            .find(|(kind, name, _)| kind == "test" && name == test)
            .with_context(|| format!("cargo built no test binary {package}/{test}"))?;
        built.push((PathBuf::from(format!("tests/{package}-{test}")), path));
    }

    let carry = root.join(CARRY_DIR);
    if carry.exists() {
        std::fs::remove_dir_all(&carry).with_context(|| format!("clearing {}", carry.display()))?;
    }
    let mut files = Vec::new();
    for (relative, source) in &built {
        let dest = carry.join(relative);
        std::fs::create_dir_all(dest.parent().expect("a carry path has a folder"))?;
        strip_debug(source, &dest)?;
        check_links_torch_cuda(&dest)?;
        files.push(relative.clone());
    }
    for script in ["check.sh", "summarize.py"] {
        let dest = carry.join(script);
        std::fs::copy(root.join("xtask/gpu").join(script), &dest)
            .with_context(|| format!("copying {script} into {}", carry.display()))?;
        files.push(PathBuf::from(script));
    }
    let manifest = json!({
        "commit": report::git(&root, &["rev-parse", "HEAD"])?,
        "dirty": report::has_local_edits(&root)?,
        "profile": profile,
        "features": "cuda",
        "torch_version": torch_version(&libtorch)?,
        "binaries": built.iter().map(|(r, _)| r.display().to_string()).collect::<Vec<_>>(),
    });
    std::fs::write(
        carry.join("manifest.json"),
        serde_json::to_string_pretty(&manifest)? + "\n",
    )?;
    files.push(PathBuf::from("manifest.json"));

    let mut carried = 0;
    for file in &files {
        let size = std::fs::metadata(carry.join(file))?.len();
        carried += size;
        println!("{:>10.1} MiB  {CARRY_DIR}/{}", mib(size), file.display());
    }
    let tree = working_tree_bytes(&root)?;
    let total = carried + tree;
    println!(
        "carried {:.1} MiB + working tree {:.1} MiB = {:.1} MiB of the {:.0} MiB a call may take",
        mib(carried),
        mib(tree),
        mib(total),
        mib(TRAVEL_LIMIT)
    );
    if total > TRAVEL_LIMIT {
        bail!(
            "{:.1} MiB would travel, over the {:.0} MiB limit",
            mib(total),
            mib(TRAVEL_LIMIT)
        );
    }
    println!();
    println!("On a lent GPU machine, make one device `run` call with:");
    println!("  command:   bash {CARRY_DIR}/check.sh");
    println!("  carry:     [\"{CARRY_DIR}\"]");
    println!("  timeout_s: {SUGGESTED_TIMEOUT_S}");
    println!("The report (summary.md, bench.jsonl, logs) comes back from $OUT.");
    Ok(())
}

/// Runs a cargo build and returns (target kind, target name, executable) of what it built.
fn cargo_artifacts(
    root: &Path,
    args: &[&str],
    release: bool,
) -> Result<Vec<(String, String, PathBuf)>> {
    let mut cmd = Command::new(crate::cargo());
    cmd.current_dir(root)
        .args(args)
        .arg("--message-format=json-render-diagnostics")
        .stderr(Stdio::inherit());
    if release {
        cmd.arg("--release");
    }
    let output = cmd.output().with_context(|| format!("starting {cmd:?}"))?;
    if !output.status.success() {
        bail!("{cmd:?} failed with {}", output.status);
    }
    let mut found = Vec::new();
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let Ok(message) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        if message["reason"] != "compiler-artifact" {
            continue;
        }
        let Some(executable) = message["executable"].as_str() else {
            continue;
        };
        let target = &message["target"];
        let kind = target["kind"][0].as_str().unwrap_or_default().to_string();
        let name = target["name"].as_str().unwrap_or_default().to_string();
        found.push((kind, name, PathBuf::from(executable)));
    }
    Ok(found)
}

/// Copies `source` to `dest` without debug information (the symbols stay, for backtraces).
fn strip_debug(source: &Path, dest: &Path) -> Result<()> {
    let status = Command::new("strip")
        .arg("--strip-debug")
        .arg("-o")
        .arg(dest)
        .arg(source)
        .status()
        .context("starting `strip` (binutils)")?;
    if !status.success() {
        bail!(
            "strip --strip-debug {} failed with {status}",
            source.display()
        );
    }
    Ok(())
}

/// A binary that does not link libtorch_cuda would see no GPU (see autolora-core's `cuda`
/// feature); catch that here rather than on the GPU machine.
fn check_links_torch_cuda(binary: &Path) -> Result<()> {
    let output = Command::new("ldd")
        .arg(binary)
        .output()
        .context("starting `ldd`")?;
    let text = String::from_utf8_lossy(&output.stdout);
    if !text.contains("libtorch_cuda.so") {
        bail!(
            "{} does not link libtorch_cuda.so (ldd):\n{text}",
            binary.display()
        );
    }
    if let Some(line) = text.lines().find(|l| l.contains("not found")) {
        bail!(
            "{}: a library is missing: {}",
            binary.display(),
            line.trim()
        );
    }
    Ok(())
}

/// The libtorch the build links: `LIBTORCH` as the user set it, else the repository's link.
fn libtorch_dir(root: &Path) -> Result<PathBuf> {
    let dir = provision::user_libtorch().unwrap_or_else(|| root.join(".libtorch"));
    std::fs::canonicalize(&dir).with_context(|| {
        format!(
            "libtorch not found at {} (run cargo xtask setup)",
            dir.display()
        )
    })
}

/// The torch version of a wheel's `torch` folder, from its `version.py` (`2.11.0+cu130`).
fn torch_version(libtorch: &Path) -> Result<String> {
    let path = libtorch.join("version.py");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    text.lines()
        .find_map(|l| l.strip_prefix("__version__ = "))
        .map(|v| v.trim().trim_matches('\'').trim_matches('"').to_string())
        .with_context(|| format!("{}: no __version__ line", path.display()))
}

/// Bytes of what travels besides the carry: tracked files and untracked ones git does not ignore.
fn working_tree_bytes(root: &Path) -> Result<u64> {
    let listing = report::git(
        root,
        &[
            "ls-files",
            "-z",
            "--cached",
            "--others",
            "--exclude-standard",
        ],
    )?;
    let mut total = 0;
    for name in listing.split('\0').filter(|n| !n.is_empty()) {
        // A tracked file deleted in the working tree does not travel.
        if let Ok(meta) = std::fs::symlink_metadata(root.join(name)) {
            total += meta.len();
        }
    }
    Ok(total)
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_wheel_version() -> Result<()> {
        let dir = tempfile::tempdir()?;
        std::fs::write(
            dir.path().join("version.py"),
            "from typing import Optional\n__version__ = '2.11.0+cu130'\ndebug = False\n",
        )?;
        assert_eq!(torch_version(dir.path())?, "2.11.0+cu130");
        Ok(())
    }

    #[test]
    fn the_cuda_test_targets_exist_and_are_gated_on_the_feature() -> Result<()> {
        let root = provision::repo_root();
        for (package, test) in CUDA_TESTS {
            let path = root
                .join("crates")
                .join(package)
                .join("tests")
                .join(format!("{test}.rs"));
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            assert!(
                text.contains("#![cfg(feature = \"cuda\")]"),
                "{} is not gated on the cuda feature",
                path.display()
            );
        }
        Ok(())
    }
}
