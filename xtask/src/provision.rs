//! libtorch provisioning.
//!
//! tch 0.24 binds libtorch 2.11.0 exactly. libtorch itself cannot be downloaded from the
//! PyTorch site on every machine, but the PyPI wheel `torch==2.11.0` carries it, so we install
//! that wheel (with the Python reference packages of `xtask/requirements.txt`) into a virtual
//! environment in a cache outside the repository, then point the repository's `.libtorch`
//! symlink at the wheel's `torch` folder. `.cargo/config.toml` sets `LIBTORCH=.libtorch`, and
//! every crate that links tch bakes that folder into its binaries' rpath, so plain `cargo
//! build` / `cargo test` work with no environment variables afterwards.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

/// The libtorch version tch 0.24 binds.
pub const TORCH_VERSION: &str = "2.11.0";

/// Lean install: just the wheel and the two CUDA runtime packages `libtorch_cpu.so` needs at
/// load time (versions resolved by the full install of torch 2.11.0).
const LEAN_PACKAGES: &[&str] = &[
    "torch==2.11.0",
    "nvidia-cuda-runtime==13.0.96",
    "nvidia-cuda-cupti==13.0.85",
];

/// Name of the file written into an environment once it is installed and verified.
const COMPLETE_MARKER: &str = ".autolora-complete";

/// Where the project keeps large downloads: `$AUTOLORA_CACHE`, else `$XDG_CACHE_HOME/autolora`,
/// else `~/.cache/autolora`.
pub fn cache_root() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("AUTOLORA_CACHE") {
        return Ok(PathBuf::from(dir));
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME") {
        return Ok(PathBuf::from(dir).join("autolora"));
    }
    let home = std::env::var_os("HOME").context("neither AUTOLORA_CACHE nor HOME is set")?;
    Ok(PathBuf::from(home).join(".cache").join("autolora"))
}

/// The repository root (the parent of `xtask/`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the repository root")
        .to_path_buf()
}

/// What kind of Python environment to install.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Flavor {
    /// A virtual environment with torch, its CUDA dependencies and the reference packages
    /// (about 5 GB): serves CPU and CUDA builds and the Python reference scripts.
    Full,
    /// Only what `libtorch_cpu.so` needs (about 1.2 GB): CPU-only Rust builds, no Python scripts.
    Lean,
}

/// A provisioned environment.
#[derive(Debug, Clone)]
pub struct Provisioned {
    /// The folder holding `lib/` and `include/` of libtorch.
    pub libtorch: PathBuf,
    /// The Python interpreter of the environment (full flavor only).
    pub python: Option<PathBuf>,
}

/// Installs (if needed) the environment of `flavor` under `cache`, and returns where it is.
pub fn ensure(cache: &Path, flavor: Flavor) -> Result<Provisioned> {
    let dir = env_dir(cache, flavor);
    if !dir.join(COMPLETE_MARKER).exists() {
        install(&dir, flavor)?;
    }
    locate(&dir, flavor)
}

fn env_dir(cache: &Path, flavor: Flavor) -> PathBuf {
    let name = match flavor {
        Flavor::Full => format!("torch-{TORCH_VERSION}"),
        Flavor::Lean => format!("torch-{TORCH_VERSION}-lean"),
    };
    cache.join("python").join(name)
}

/// Installs into `<dir>.partial`, verifies, then renames, so an interrupted install never
/// leaves something that looks complete.
fn install(dir: &Path, flavor: Flavor) -> Result<()> {
    let name = dir.file_name().expect("an environment folder has a name");
    let partial = dir.with_file_name(format!("{}.partial", name.to_string_lossy()));
    for stale in [&partial, &dir.to_path_buf()] {
        if stale.exists() {
            std::fs::remove_dir_all(stale)
                .with_context(|| format!("removing incomplete install {}", stale.display()))?;
        }
    }
    std::fs::create_dir_all(partial.parent().unwrap())?;
    eprintln!(
        "provisioning libtorch {TORCH_VERSION} ({flavor:?}) into {} (a few minutes, once)",
        dir.display()
    );
    match flavor {
        Flavor::Full => {
            run(Command::new(system_python())
                .args(["-m", "venv"])
                .arg(&partial))?;
            let requirements = repo_root().join("xtask").join("requirements.txt");
            run(Command::new(partial.join("bin").join("python"))
                .args(["-m", "pip", "install", "--disable-pip-version-check", "-r"])
                .arg(&requirements))?;
        }
        Flavor::Lean => {
            run(Command::new(system_python())
                .args([
                    "-m",
                    "pip",
                    "install",
                    "--disable-pip-version-check",
                    "--no-deps",
                ])
                .arg("--target")
                .arg(&partial)
                .args(LEAN_PACKAGES))?;
        }
    }
    // A venv's interpreter finds its prefix from its own location, so `python -m ...` keeps
    // working after the rename (only the entry-point scripts in bin/ would not; we never use them).
    std::fs::rename(&partial, dir)
        .with_context(|| format!("moving {} into place", partial.display()))?;
    let found = locate(dir, flavor)?;
    verify(&found)?;
    std::fs::write(dir.join(COMPLETE_MARKER), TORCH_VERSION)?;
    Ok(())
}

fn locate(dir: &Path, flavor: Flavor) -> Result<Provisioned> {
    let site = match flavor {
        Flavor::Lean => dir.to_path_buf(),
        Flavor::Full => {
            let lib = dir.join("lib");
            let entry = std::fs::read_dir(&lib)
                .with_context(|| format!("reading {}", lib.display()))?
                .filter_map(|e| e.ok())
                .find(|e| e.file_name().to_string_lossy().starts_with("python"))
                .with_context(|| format!("no python*/ folder in {}", lib.display()))?;
            entry.path().join("site-packages")
        }
    };
    let libtorch = site.join("torch");
    if !libtorch.join("lib").join("libtorch_cpu.so").exists() {
        bail!(
            "{} has no lib/libtorch_cpu.so: the install is broken; delete {} and run `cargo xtask setup` again",
            libtorch.display(),
            dir.display()
        );
    }
    let python = (flavor == Flavor::Full).then(|| dir.join("bin").join("python"));
    Ok(Provisioned { libtorch, python })
}

/// Checks that the installed libtorch loads and has the right version. With a Python
/// environment torch is imported; for the lean install the shared libraries are opened
/// through the system Python's `ctypes`, in dependency order.
pub fn verify(env: &Provisioned) -> Result<()> {
    let lib = env.libtorch.join("lib");
    let script = match &env.python {
        Some(_) => format!(
            "import torch, ctypes; assert torch.__version__.split('+')[0] == '{TORCH_VERSION}', torch.__version__; \
             ctypes.CDLL('{}'); print('torch', torch.__version__, 'loads')",
            lib.join("libtorch_cpu.so").display()
        ),
        None => format!(
            "import ctypes, glob, os\n\
             lib = '{}'\n\
             for name in ['libc10.so', 'libtorch_cpu.so', 'libtorch.so']:\n    ctypes.CDLL(os.path.join(lib, name), mode=ctypes.RTLD_GLOBAL)\n\
             print('libtorch loads from', lib)",
            lib.display()
        ),
    };
    let python = env.python.clone().unwrap_or_else(system_python);
    run(Command::new(python).args(["-c", &script]))
}

/// Points `<repo>/.libtorch` at `libtorch`, unless the user set `LIBTORCH` themselves.
pub fn link_into_repo(libtorch: &Path) -> Result<()> {
    let link = repo_root().join(".libtorch");
    if let Some(user) = user_libtorch() {
        eprintln!("LIBTORCH is set to {}: using it", user.display());
        return Ok(());
    }
    if std::fs::read_link(&link).ok().as_deref() == Some(libtorch) {
        return Ok(());
    }
    if link.symlink_metadata().is_ok() {
        std::fs::remove_file(&link).with_context(|| format!("replacing {}", link.display()))?;
    }
    std::os::unix::fs::symlink(libtorch, &link)
        .with_context(|| format!("linking {} -> {}", link.display(), libtorch.display()))?;
    eprintln!("linked {} -> {}", link.display(), libtorch.display());
    Ok(())
}

/// `LIBTORCH` as the user set it. Cargo's `[env]` sets it to the repository's `.libtorch` for
/// every process it starts (this one included), which does not count.
pub fn user_libtorch() -> Option<PathBuf> {
    let value = PathBuf::from(std::env::var_os("LIBTORCH")?);
    (value != repo_root().join(".libtorch")).then_some(value)
}

/// The Python interpreter of the full environment, provisioning it if needed.
pub fn reference_python() -> Result<PathBuf> {
    let env = ensure(&cache_root()?, Flavor::Full)?;
    Ok(env.python.expect("the full flavor has a Python"))
}

fn system_python() -> PathBuf {
    std::env::var_os("PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("python3"))
}

/// Runs a command, failing with its command line when it fails.
pub fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd.status().with_context(|| format!("starting {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed with {status}");
    }
    Ok(())
}
