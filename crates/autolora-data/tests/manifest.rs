//! `datasets/manifest.toml` documents the asset registry; this test keeps the two in step.

use autolora_data::assets::{ASSETS, Source};

#[test]
fn manifest_agrees_with_the_registry() -> anyhow::Result<()> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../datasets/manifest.toml");
    let manifest: toml::Table = std::fs::read_to_string(path)?.parse()?;
    let entries = manifest["asset"]
        .as_array()
        .ok_or_else(|| anyhow::anyhow!("{path}: expected an [[asset]] array"))?;
    assert_eq!(
        entries.len(),
        ASSETS.len(),
        "one manifest entry per registry asset"
    );
    for asset in ASSETS {
        let entry = entries
            .iter()
            .find(|e| e["name"].as_str() == Some(asset.name))
            .ok_or_else(|| anyhow::anyhow!("{path}: no entry for {}", asset.name))?;
        let sha = entry["sha256"].as_str().unwrap_or_default();
        match asset.archives {
            [archive] => match archive.sha256 {
                Some(pinned) => assert_eq!(sha, pinned, "{}", asset.name),
                None => assert_eq!(sha, "recorded-at-first-download", "{}", asset.name),
            },
            many => {
                assert!(many.iter().all(|a| a.sha256.is_none()), "{}", asset.name);
                assert_eq!(sha, "recorded-at-first-download", "{}", asset.name);
            }
        }
        if let [archive] = asset.archives
            && let Source::Url(url) = archive.source
        {
            assert_eq!(entry["source"].as_str(), Some(url), "{}", asset.name);
        }
    }
    Ok(())
}
