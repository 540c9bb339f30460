//! Pattern files: planted ranks per module, read by the `autolora` CLI (the teacher's planted
//! updates, or `train.ranks`) and by the driver (the oracle's ranks, the random allocation).
//!
//! ```toml
//! # depth: feed-forward outputs of the top layers need the most capacity
//! [ranks]
//! "encoder.layer.4.output.dense" = 8
//! ```
//!
//! Full module names; a module not listed has rank 0 (listing it as 0 says the same).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};
use serde::Deserialize;

/// A parsed pattern file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pattern {
    /// Module name -> rank (0 included).
    pub ranks: BTreeMap<String, usize>,
}

impl Pattern {
    /// Reads a pattern file.
    pub fn load(path: &Path) -> Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("pattern file {}", path.display()))
    }

    /// Parses a pattern file's text.
    pub fn parse(text: &str) -> Result<Self> {
        toml::from_str(text).context("expected a `[ranks]` table of module name = rank (>= 0)")
    }

    /// The rank of `module` (0 when not listed).
    pub fn rank(&self, module: &str) -> usize {
        self.ranks.get(module).copied().unwrap_or(0)
    }

    /// The names this pattern lists that are not among `modules` (a pattern written for
    /// another model, or a typo).
    pub fn unknown<'a>(&'a self, modules: &[&str]) -> Vec<&'a str> {
        self.ranks
            .keys()
            .map(String::as_str)
            .filter(|name| !modules.contains(name))
            .collect()
    }
}

/// The text of a pattern file listing every module of `ranks`, in that order (0s included),
/// under a comment line.
pub fn render(comment: &str, ranks: &[(String, usize)]) -> String {
    let mut text = String::new();
    for line in comment.lines() {
        let _ = writeln!(text, "# {line}");
    }
    text.push_str("[ranks]\n");
    for (name, rank) in ranks {
        let _ = writeln!(text, "{} = {rank}", toml::Value::String(name.clone()));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unlisted_modules_have_rank_zero_and_explicit_zeros_parse() -> Result<()> {
        let pattern = Pattern::parse(
            "# a comment\n[ranks]\n\"encoder.layer.1.attention.self.query\" = 8\n\
             \"encoder.layer.1.attention.self.value\" = 0\n",
        )?;
        assert_eq!(pattern.rank("encoder.layer.1.attention.self.query"), 8);
        assert_eq!(pattern.rank("encoder.layer.1.attention.self.value"), 0);
        assert_eq!(pattern.rank("encoder.layer.2.output.dense"), 0);
        assert_eq!(
            pattern.unknown(&["encoder.layer.1.attention.self.query"]),
            ["encoder.layer.1.attention.self.value"]
        );
        Ok(())
    }

    #[test]
    fn malformed_patterns_are_refused() {
        assert!(Pattern::parse("[rank]\n\"a\" = 1\n").is_err());
        assert!(Pattern::parse("[ranks]\n\"a\" = -1\n").is_err());
        assert!(Pattern::parse("[ranks]\n\"a\" = 1.5\n").is_err());
        assert!(Pattern::parse("[ranks]\n\"a\" = 1\n[extra]\n").is_err());
    }

    #[test]
    fn rendered_patterns_read_back() -> Result<()> {
        let ranks = vec![
            ("encoder.layer.0.attention.self.query".to_string(), 3),
            ("encoder.layer.0.output.dense".to_string(), 0),
            ("odd \"name\"".to_string(), 1),
        ];
        let text = render("random allocation\nseed 1", &ranks);
        assert!(
            text.starts_with("# random allocation\n# seed 1\n[ranks]\n"),
            "{text}"
        );
        let back = Pattern::parse(&text)?;
        assert_eq!(back.ranks.len(), 3);
        for (name, rank) in &ranks {
            assert_eq!(back.ranks[name], *rank);
        }
        Ok(())
    }
}
