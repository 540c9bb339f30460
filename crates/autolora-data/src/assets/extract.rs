//! Taking members out of zip and tar.gz archives.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use flate2::read::GzDecoder;

use super::registry::{Format, Member};
use crate::error::{Error, Result};

/// Extracts `members` of `archive` (packed as `format`) into `dest_dir`.
pub fn extract(archive: &Path, format: Format, members: &[Member], dest_dir: &Path) -> Result<()> {
    match format {
        Format::Plain => {
            for member in members {
                let dest = dest_dir.join(member.dest);
                fs::copy(archive, &dest).map_err(|e| Error::io(&dest, e))?;
            }
        }
        Format::Zip => extract_zip(archive, members, dest_dir)?,
        Format::TarGz => extract_tar_gz(archive, members, dest_dir)?,
    }
    // Members that are archives themselves: unpack what we need from them, then drop them.
    for member in members {
        if let Some((inner_format, inner_members)) = member.inner {
            let inner_path = dest_dir.join(member.dest);
            extract(&inner_path, inner_format, inner_members, dest_dir)?;
            fs::remove_file(&inner_path).map_err(|e| Error::io(&inner_path, e))?;
        }
    }
    Ok(())
}

/// Index of the entry in `names` that `wanted` refers to: equal to it, or ending with
/// `/wanted`; the shallowest such entry, which must be unique.
fn find_member(archive: &Path, names: &[String], wanted: &str) -> Result<usize> {
    let suffix = format!("/{wanted}");
    let matches: Vec<usize> = names
        .iter()
        .enumerate()
        .filter(|(_, name)| name.as_str() == wanted || name.ends_with(&suffix))
        .map(|(i, _)| i)
        .collect();
    let depth = |i: &usize| names[*i].matches('/').count();
    let Some(shallowest) = matches.iter().map(depth).min() else {
        return Err(Error::MissingMember {
            archive: archive.to_path_buf(),
            member: wanted.to_string(),
            found: "no such member".to_string(),
        });
    };
    let best: Vec<usize> = matches
        .into_iter()
        .filter(|i| depth(i) == shallowest)
        .collect();
    if best.len() > 1 {
        let candidates: Vec<&str> = best.iter().map(|&i| names[i].as_str()).collect();
        return Err(Error::MissingMember {
            archive: archive.to_path_buf(),
            member: wanted.to_string(),
            found: format!("several equally good matches: {}", candidates.join(", ")),
        });
    }
    Ok(best[0])
}

fn create(path: &Path) -> Result<fs::File> {
    fs::File::create(path).map_err(|e| Error::io(path, e))
}

fn extract_zip(archive: &Path, members: &[Member], dest_dir: &Path) -> Result<()> {
    let zip_err = |source| Error::Zip {
        path: archive.to_path_buf(),
        source,
    };
    let file = fs::File::open(archive).map_err(|e| Error::io(archive, e))?;
    let mut zip = zip::ZipArchive::new(io::BufReader::new(file)).map_err(zip_err)?;
    let names: Vec<String> = zip.file_names().map(str::to_string).collect();
    for member in members {
        let index = find_member(archive, &names, member.path)?;
        let name = &names[index];
        let mut entry = zip.by_name(name).map_err(zip_err)?;
        let dest = dest_dir.join(member.dest);
        let mut out = create(&dest)?;
        io::copy(&mut entry, &mut out).map_err(|e| Error::io(&dest, e))?;
    }
    Ok(())
}

fn tar_entry_names(archive: &Path) -> Result<Vec<String>> {
    let file = fs::File::open(archive).map_err(|e| Error::io(archive, e))?;
    let mut tar = tar::Archive::new(GzDecoder::new(io::BufReader::new(file)));
    let mut names = Vec::new();
    for entry in tar.entries().map_err(|e| Error::io(archive, e))? {
        let entry = entry.map_err(|e| Error::io(archive, e))?;
        let path = entry.path().map_err(|e| Error::io(archive, e))?;
        names.push(normalise(&path));
    }
    Ok(names)
}

fn normalise(path: &Path) -> String {
    let text = path.to_string_lossy().replace('\\', "/");
    text.trim_start_matches("./").to_string()
}

fn extract_tar_gz(archive: &Path, members: &[Member], dest_dir: &Path) -> Result<()> {
    // A tar stream cannot be searched ahead, so the first pass lists the names and picks the
    // entries, the second copies them out.
    let names = tar_entry_names(archive)?;
    let mut wanted: Vec<(String, PathBuf)> = Vec::new();
    for member in members {
        let index = find_member(archive, &names, member.path)?;
        wanted.push((names[index].clone(), dest_dir.join(member.dest)));
    }
    let file = fs::File::open(archive).map_err(|e| Error::io(archive, e))?;
    let mut tar = tar::Archive::new(GzDecoder::new(io::BufReader::new(file)));
    let mut done = 0;
    for entry in tar.entries().map_err(|e| Error::io(archive, e))? {
        let mut entry = entry.map_err(|e| Error::io(archive, e))?;
        let name = normalise(&entry.path().map_err(|e| Error::io(archive, e))?);
        for (wanted_name, dest) in &wanted {
            if *wanted_name == name {
                let mut out = create(dest)?;
                io::copy(&mut entry, &mut out).map_err(|e| Error::io(dest, e))?;
                done += 1;
                break;
            }
        }
    }
    if done != wanted.len() {
        return Err(Error::MissingMember {
            archive: archive.to_path_buf(),
            member: wanted
                .iter()
                .map(|(n, _)| n.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            found: format!("{done} of {} on the second pass", wanted.len()),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn member_lookup_prefers_the_shallowest_match() {
        let n = names(&["CoLA/train.tsv", "CoLA/original/train.tsv", "CoLA/dev.tsv"]);
        let archive = Path::new("CoLA.zip");
        assert_eq!(find_member(archive, &n, "train.tsv").unwrap(), 0);
        assert_eq!(find_member(archive, &n, "CoLA/dev.tsv").unwrap(), 2);
        assert!(find_member(archive, &n, "test.tsv").is_err());
        let tie = names(&["a/x.txt", "b/x.txt"]);
        let err = find_member(archive, &tie, "x.txt").unwrap_err();
        assert!(err.to_string().contains("a/x.txt, b/x.txt"), "{err}");
    }

    #[test]
    fn extracts_members_from_nested_tar_gz() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        // inner.tar.gz holds data/wanted.txt; outer.tar.gz holds pkg/inner.tar.gz.
        let build = |path: &Path, name: &str, body: &[u8]| -> anyhow::Result<()> {
            let gz = flate2::write::GzEncoder::new(
                fs::File::create(path)?,
                flate2::Compression::default(),
            );
            let mut builder = tar::Builder::new(gz);
            let mut header = tar::Header::new_gnu();
            header.set_size(body.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            builder.append_data(&mut header, name, body)?;
            builder.into_inner()?.finish()?;
            Ok(())
        };
        let inner = dir.path().join("inner.tar.gz");
        build(&inner, "data/wanted.txt", b"hello\r\n")?;
        let outer = dir.path().join("outer.tar.gz");
        build(&outer, "pkg/inner.tar.gz", &fs::read(&inner)?)?;
        let dest = dir.path().join("out");
        fs::create_dir(&dest)?;
        let inner_members = &[Member {
            path: "data/wanted.txt",
            dest: "wanted.txt",
            inner: None,
        }];
        let members = [Member {
            path: "pkg/inner.tar.gz",
            dest: "inner.tar.gz",
            inner: Some((Format::TarGz, inner_members)),
        }];
        extract(&outer, Format::TarGz, &members, &dest)?;
        assert_eq!(fs::read(dest.join("wanted.txt"))?, b"hello\r\n");
        assert!(!dest.join("inner.tar.gz").exists());
        Ok(())
    }
}
