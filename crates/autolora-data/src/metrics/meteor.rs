//! METEOR 1.5 through its reference Java implementation, the way `pycocoevalcap` (and so the
//! E2E challenge's script) runs it: `java -jar meteor-1.5.jar - - -stdio -l en -norm`.
//!
//! METEOR has no faithful reimplementation: it needs the jar and its paraphrase tables. When
//! Java or the jar is missing, [`Meteor::locate`] returns `None` and reports say METEOR is
//! unavailable rather than printing a number from something else.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::bleu::check_references;
use super::classification::same_len;
use crate::error::{Error, Result};

/// Environment variable naming `meteor-1.5.jar` (its `data/` folder must sit beside it).
pub const METEOR_JAR_ENV: &str = "AUTOLORA_METEOR_JAR";

/// A usable METEOR installation.
#[derive(Debug, Clone)]
pub struct Meteor {
    jar: PathBuf,
}

impl Meteor {
    /// Finds the jar: `$AUTOLORA_METEOR_JAR`, else the copy `pycocoevalcap` ships in the
    /// reference Python environment under the cache; `None` when there is none or no `java`.
    pub fn locate() -> Option<Meteor> {
        let java_ok = Command::new("java")
            .arg("-version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !java_ok {
            return None;
        }
        if let Some(jar) = std::env::var_os(METEOR_JAR_ENV).map(PathBuf::from) {
            return jar.is_file().then_some(Meteor { jar });
        }
        let lib = crate::assets::cache_root()
            .ok()?
            .join("python/torch-2.11.0/lib");
        std::fs::read_dir(lib).ok()?.flatten().find_map(|entry| {
            let jar = entry
                .path()
                .join("site-packages/pycocoevalcap/meteor/meteor-1.5.jar");
            jar.is_file().then_some(Meteor { jar })
        })
    }

    /// Uses the jar at `path`.
    pub fn with_jar(path: &Path) -> Meteor {
        Meteor {
            jar: path.to_path_buf(),
        }
    }

    /// Corpus METEOR of tokenized hypotheses against tokenized references, computed by the jar
    /// in one `EVAL` over all segments (as `pycocoevalcap.meteor.Meteor` does).
    pub fn score<H: AsRef<str>, R: AsRef<str>>(
        &self,
        hypotheses: &[H],
        references: &[Vec<R>],
    ) -> Result<f64> {
        same_len("METEOR", hypotheses.len(), references.len())?;
        check_references("METEOR", references)?;
        let io = |e| Error::io(&self.jar, e);
        let dir = self.jar.parent().unwrap_or(Path::new("."));
        let mut child = Command::new("java")
            .args(["-jar", "-Xmx2G"])
            .arg(&self.jar)
            .args(["-", "-", "-stdio", "-l", "en", "-norm"])
            .current_dir(dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(io)?;
        let mut stdin = child.stdin.take().ok_or_else(|| bad("no stdin"))?;
        let mut stdout = BufReader::new(child.stdout.take().ok_or_else(|| bad("no stdout"))?);
        let mut read_line = || -> Result<String> {
            let mut line = String::new();
            stdout.read_line(&mut line).map_err(io)?;
            if line.is_empty() {
                return Err(bad("METEOR closed its output early"));
            }
            Ok(line.trim().to_string())
        };
        let mut eval_line = String::from("EVAL");
        for (hyp, refs) in hypotheses.iter().zip(references) {
            let hyp = hyp.as_ref().replace("|||", "").replace("  ", " ");
            let refs: Vec<&str> = refs.iter().map(AsRef::as_ref).collect();
            writeln!(stdin, "SCORE ||| {} ||| {hyp}", refs.join(" ||| ")).map_err(io)?;
            stdin.flush().map_err(io)?;
            eval_line.push_str(" ||| ");
            eval_line.push_str(&read_line()?);
        }
        writeln!(stdin, "{eval_line}").map_err(io)?;
        stdin.flush().map_err(io)?;
        for _ in 0..hypotheses.len() {
            read_line()?;
        }
        let total = read_line()?;
        drop(stdin);
        let _ = child.wait();
        total
            .parse()
            .map_err(|_| bad(&format!("a final METEOR score, got {total:?}")))
    }
}

fn bad(found: &str) -> Error {
    Error::invalid(
        "METEOR subprocess",
        "the SCORE/EVAL protocol of meteor-1.5.jar",
        found,
    )
}
