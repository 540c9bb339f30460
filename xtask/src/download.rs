//! `cargo xtask download NAME|all|list`: fetch real assets into the cache.

use anyhow::{Result, bail};
use autolora_data::assets;

/// Fetches each named asset (`all` for every asset; `list` prints the registry).
pub fn run(names: &[String]) -> Result<()> {
    if names.iter().any(|n| n == "list") {
        list();
        return Ok(());
    }
    let wanted: Vec<&str> = if names.iter().any(|n| n == "all") {
        assets::ASSETS.iter().map(|a| a.name).collect()
    } else {
        names.iter().map(String::as_str).collect()
    };
    let cache = assets::cache_root()?;
    println!("cache: {}", cache.display());
    let mut failed = Vec::new();
    for name in wanted {
        match assets::fetch_into(&cache, name) {
            Ok(dir) => println!("ok      {name:<16} {}", dir.display()),
            Err(e) => {
                // Keep going: with `all`, data sets whose home is unreachable must not hide
                // the ones that can be fetched.
                println!("FAILED  {name:<16} {e}");
                failed.push(name);
            }
        }
    }
    if !failed.is_empty() {
        bail!(
            "{} asset(s) not fetched: {}",
            failed.len(),
            failed.join(", ")
        );
    }
    Ok(())
}

fn list() {
    for asset in assets::ASSETS {
        let pinned = asset.archives.iter().all(|a| a.sha256.is_some());
        let hash = if pinned {
            "sha256 pinned"
        } else {
            "sha256 recorded at first download"
        };
        println!("{:<16} {} ({hash})", asset.name, asset.description);
    }
}
