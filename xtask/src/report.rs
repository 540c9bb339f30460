//! What the generated reports share: a description of the machine, the source tree's state
//! (git), and replacing the generated block of a hand-written markdown file.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};

/// The machine a report was measured on.
#[derive(serde::Serialize)]
pub struct Machine {
    /// Logical CPUs.
    pub nproc: usize,
    /// `model name` of /proc/cpuinfo.
    pub cpu: String,
    /// When the measurement started (UTC).
    pub date: String,
    /// libtorch threads the measurement used.
    pub threads: usize,
    /// /proc/loadavg's three averages at the start.
    pub load_at_start: String,
}

/// Describes this machine now.
pub fn machine(threads: usize) -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")?
                .split_once(':')
                .map(|(_, v)| v.trim())
        })
        .unwrap_or("unknown")
        .to_string();
    let date = Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    Machine {
        nproc: std::thread::available_parallelism().map_or(0, |n| n.get()),
        cpu,
        date,
        threads,
        load_at_start: std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" "),
    }
}

/// The paragraph that opens a driver's report: when it was written, from which log and how many
/// of its records (`noun`: runs, units), the commits they ran from (each once, sorted; `-` when
/// none), and this machine, then `build`, which says what ran and how far the times hold.
pub fn provenance<'a>(
    log: &Path,
    recorded: usize,
    noun: &str,
    commits: impl IntoIterator<Item = &'a str>,
    build: &str,
) -> String {
    let machine = machine(0);
    let mut commits: Vec<&str> = commits.into_iter().collect();
    commits.sort_unstable();
    commits.dedup();
    format!(
        "Written {} from `{}` ({recorded} {noun} recorded; sources at commit {}). Machine: {} ({} \
         logical CPUs), {build}\n\n",
        machine.date,
        log.display(),
        if commits.is_empty() {
            "-".to_string()
        } else {
            commits.join(", ")
        },
        machine.cpu,
        machine.nproc,
    )
}

/// The 1-minute load average (NaN where /proc is missing).
pub fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(f64::NAN)
}

/// Runs git in `root` and returns its trimmed standard output.
pub fn git(root: &Path, args: &[&str]) -> Result<String> {
    let output = Command::new("git")
        .current_dir(root)
        .args(args)
        .output()
        .with_context(|| format!("starting git {}", args.join(" ")))?;
    if !output.status.success() {
        bail!(
            "git {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
}

/// Whether tracked files in `root` differ from HEAD (untracked files do not count).
pub fn has_local_edits(root: &Path) -> Result<bool> {
    Ok(!git(root, &["status", "--porcelain", "--untracked-files=no"])?.is_empty())
}

/// The lines around a generated block, and the title a new file starts with.
pub struct Markers {
    /// The line before the block.
    pub begin: &'static str,
    /// The line after it.
    pub end: &'static str,
    /// The first line of a file created from nothing.
    pub title: &'static str,
}

/// Replaces the generated block of `path` (between the markers), keeping the hand-written rest;
/// a file without the markers gets the block appended (after the title when the file is new).
pub fn write_generated(path: &Path, markers: &Markers, generated: &str) -> Result<()> {
    let Markers { begin, end, title } = markers;
    let block = format!("{begin}\n{generated}\n{end}");
    let existing = std::fs::read_to_string(path).unwrap_or_default();
    let text = match (existing.find(begin), existing.find(end)) {
        (Some(start), Some(stop)) if stop > start => {
            format!(
                "{}{block}{}",
                &existing[..start],
                &existing[stop + end.len()..]
            )
        }
        _ if existing.is_empty() => format!("{title}\n\n{block}\n"),
        _ => format!("{}\n{block}\n", existing.trim_end()),
    };
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MARKERS: Markers = Markers {
        begin: "<!-- x:begin -->",
        end: "<!-- x:end -->",
        title: "# Speed",
    };

    #[test]
    fn provenance_lists_each_commit_once_and_a_dash_for_none() {
        let log = Path::new("runs/x/results.jsonl");
        let text = provenance(log, 3, "runs", ["b", "a", "b"], "the build.");
        assert!(
            text.contains(
                " from `runs/x/results.jsonl` (3 runs recorded; sources at commit a, b). Machine: "
            ),
            "{text}"
        );
        assert!(text.ends_with(" logical CPUs), the build.\n\n"), "{text}");
        let none = provenance(log, 0, "units", [], "the build.");
        assert!(
            none.contains("(0 units recorded; sources at commit -)"),
            "{none}"
        );
    }

    #[test]
    fn generated_block_replaces_only_itself() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("report.md");
        write_generated(&path, &MARKERS, "first")?;
        let fresh = std::fs::read_to_string(&path)?;
        assert!(
            fresh.starts_with("# Speed") && fresh.contains("first"),
            "{fresh}"
        );
        std::fs::write(
            &path,
            fresh.replace("# Speed", "# Title\n\nanalysis above") + "\nanalysis below\n",
        )?;
        write_generated(&path, &MARKERS, "second")?;
        let text = std::fs::read_to_string(&path)?;
        assert!(text.contains("second") && !text.contains("first"), "{text}");
        assert!(
            text.contains("analysis above") && text.contains("analysis below"),
            "{text}"
        );
        Ok(())
    }

    #[test]
    fn a_file_without_markers_keeps_its_text_and_gets_the_block() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("results.md");
        std::fs::write(&path, "# Results\n\nwritten by hand\n")?;
        write_generated(&path, &MARKERS, "table")?;
        let text = std::fs::read_to_string(&path)?;
        assert_eq!(
            text,
            "# Results\n\nwritten by hand\n<!-- x:begin -->\ntable\n<!-- x:end -->\n"
        );
        Ok(())
    }
}
