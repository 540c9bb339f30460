//! `cargo xtask <job>`: the project's automation, written in Rust so it runs wherever cargo does.
//!
//! Every job provisions what it needs first, so each works on a fresh machine.

mod download;
mod provision;

use std::path::PathBuf;
use std::process::Command;

use anyhow::Result;
use clap::{Parser, Subcommand};

use provision::Flavor;

#[derive(Parser)]
#[command(name = "cargo xtask", about = "autolora project automation")]
struct Cli {
    #[command(subcommand)]
    job: Job,
}

#[derive(Subcommand)]
enum Job {
    /// Install libtorch 2.11.0 (PyPI wheel) into the cache and link it into the repository.
    Setup {
        /// Cache folder to install into (default: $AUTOLORA_CACHE, $XDG_CACHE_HOME/autolora or ~/.cache/autolora).
        #[arg(long)]
        cache: Option<PathBuf>,
        /// Which environment to install.
        #[arg(long, value_enum, default_value = "full")]
        flavor: Flavor,
        /// Only install and check that libtorch loads; leave the repository's `.libtorch` link alone.
        #[arg(long)]
        no_link: bool,
    },
    /// Download real assets (models, data sets) into the cache, checking their sha256.
    Download {
        /// Asset names (see `cargo xtask download list`), `all`, or `list`.
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Provision libtorch, then run the whole test suite (extra arguments go to `cargo test`).
    Test {
        /// Arguments passed through to `cargo test`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

fn main() -> Result<()> {
    match Cli::parse().job {
        Job::Setup {
            cache,
            flavor,
            no_link,
        } => {
            let cache = match cache {
                Some(dir) => dir,
                None => provision::cache_root()?,
            };
            let env = provision::ensure(&cache, flavor)?;
            provision::verify(&env)?;
            if !no_link {
                provision::link_into_repo(&env.libtorch)?;
            }
            println!("libtorch {} ready at {}", provision::TORCH_VERSION, env.libtorch.display());
            Ok(())
        }
        Job::Download { names } => download::run(&names),
        Job::Test { args } => {
            setup_default()?;
            provision::run(
                Command::new(cargo())
                    .current_dir(provision::repo_root())
                    .args(["test", "--workspace"])
                    .args(args),
            )
        }
    }
}

/// Provisions the default (full) environment into the default cache and links it, unless the
/// user brought their own libtorch.
fn setup_default() -> Result<()> {
    if provision::user_libtorch().is_some() {
        return Ok(());
    }
    let env = provision::ensure(&provision::cache_root()?, Flavor::Full)?;
    provision::link_into_repo(&env.libtorch)
}

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}
