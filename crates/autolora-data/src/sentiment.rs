//! The Rotten-Tomatoes movie-review snippets as an SST-2-like task.
//!
//! The file `movieReviewSnippets_GroundTruth.txt` (VADER's resources) holds 10,605 CRLF lines
//! `id<TAB>score<TAB>text`, the score being the mean human sentiment in [-4, 4]. These are the
//! snippets the Stanford Sentiment Treebank was built from, but this is *not* SST-2: it is a
//! binary task on the sign of the score (negative 0, positive 1), and a regression task on the
//! score itself.
//!
//! Rows with a score of exactly 0 have no sign: the binary task drops them and reports how
//! many (37 in the real file). The file has no official split; [`RottenTomatoes::split`]
//! makes a deterministic one: a permutation seeded with [`SPLIT_SEED`] of all rows, the first
//! 10% for test, the next 10% for dev, the rest for train: 8,483 / 1,061 / 1,061 rows
//! (train / dev / test) for regression. Zero-score rows are dropped only after splitting, so
//! both tasks share one partition; the binary task has 8,457 / 1,057 / 1,054 rows.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::example::{Label, Skipped, TextExample, TextSplit};
use crate::rng::permutation;
use crate::text::{numbered_lines, read_text};

/// File name inside the `rotten-tomatoes` asset folder.
pub const FILE_NAME: &str = "movieReviewSnippets_GroundTruth.txt";
/// Seed of the fixed split.
pub const SPLIT_SEED: u64 = 2014;
/// Label names of the binary task, in id order.
pub const LABELS: [&str; 2] = ["negative", "positive"];

/// One snippet.
#[derive(Debug, Clone, PartialEq)]
pub struct Snippet {
    /// The id column.
    pub id: String,
    /// Mean human sentiment in [-4, 4].
    pub score: f32,
    /// The review sentence.
    pub text: String,
    /// 1-based line.
    pub line: usize,
}

/// Which task to build from the snippets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SentimentTask {
    /// Sign of the score: negative 0, positive 1; zero scores dropped and counted.
    Binary,
    /// The score itself.
    Regression,
}

/// All snippets of one file.
#[derive(Debug, Clone)]
pub struct RottenTomatoes {
    /// The file read.
    pub path: PathBuf,
    /// The rows in file order.
    pub snippets: Vec<Snippet>,
}

/// The three splits of one task.
#[derive(Debug, Clone)]
pub struct SentimentSplits {
    /// Training split.
    pub train: TextSplit,
    /// Development split.
    pub dev: TextSplit,
    /// Test split.
    pub test: TextSplit,
}

impl SentimentSplits {
    /// Rows dropped over all splits (zero scores in the binary task).
    pub fn dropped(&self) -> usize {
        self.train.skipped.len() + self.dev.skipped.len() + self.test.skipped.len()
    }
}

impl RottenTomatoes {
    /// Reads the snippets file. Every line must have three tab-separated fields and a score
    /// in [-4, 4].
    pub fn read(path: &Path) -> Result<Self> {
        let text = read_text(path, "id<TAB>score<TAB>text lines")?;
        let mut snippets = Vec::new();
        for (line_no, line) in numbered_lines(&text) {
            if line.trim().is_empty() {
                continue;
            }
            let fields: Vec<&str> = line.splitn(3, '\t').collect();
            if fields.len() != 3 {
                return Err(Error::parse(
                    path,
                    line_no,
                    "3 tab-separated fields (id, score, text)",
                    format!("{} field(s)", fields.len()),
                ));
            }
            let score: f32 = fields[1]
                .trim()
                .parse()
                .ok()
                .filter(|s: &f32| (-4.0..=4.0).contains(s))
                .ok_or_else(|| {
                    Error::parse(
                        path,
                        line_no,
                        "a sentiment score between -4 and 4 in field 2",
                        format!("{:?}", fields[1]),
                    )
                })?;
            let text = fields[2].trim();
            if text.is_empty() {
                return Err(Error::parse(
                    path,
                    line_no,
                    "review text in field 3",
                    "nothing",
                ));
            }
            snippets.push(Snippet {
                id: fields[0].trim().to_string(),
                score,
                text: text.to_string(),
                line: line_no,
            });
        }
        Ok(RottenTomatoes {
            path: path.to_path_buf(),
            snippets,
        })
    }

    /// Reads the snippets from the `rotten-tomatoes` asset folder.
    pub fn read_dir(dir: &Path) -> Result<Self> {
        Self::read(&dir.join(FILE_NAME))
    }

    /// The fixed train / dev / test split (see the module docs) for `task`.
    pub fn split(&self, task: SentimentTask) -> SentimentSplits {
        let n = self.snippets.len();
        let order = permutation(n, SPLIT_SEED);
        let tenth = (n as f64 * 0.1).round() as usize;
        let part = |range: &[usize]| {
            let mut indices = range.to_vec();
            indices.sort_unstable();
            self.examples(&indices, task)
        };
        SentimentSplits {
            test: part(&order[..tenth]),
            dev: part(&order[tenth..2 * tenth]),
            train: part(&order[2 * tenth..]),
        }
    }

    /// The examples at `indices` for `task`.
    fn examples(&self, indices: &[usize], task: SentimentTask) -> TextSplit {
        let mut examples = Vec::with_capacity(indices.len());
        let mut skipped = Vec::new();
        for &i in indices {
            let s = &self.snippets[i];
            let label = match task {
                SentimentTask::Regression => Label::Score(s.score),
                SentimentTask::Binary if s.score == 0.0 => {
                    skipped.push(Skipped {
                        line: s.line,
                        reason: "score exactly 0 has no sentiment sign".to_string(),
                    });
                    continue;
                }
                SentimentTask::Binary => Label::Class(usize::from(s.score > 0.0)),
            };
            examples.push(TextExample {
                text_a: s.text.clone(),
                text_b: None,
                label,
                line: s.line,
            });
        }
        if !skipped.is_empty() {
            tracing::info!(
                path = %self.path.display(),
                dropped = skipped.len(),
                "rows with score exactly 0 dropped from the binary task"
            );
        }
        TextSplit {
            path: self.path.clone(),
            examples,
            skipped,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(body: &[u8]) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        std::fs::write(&path, body).unwrap();
        (dir, path)
    }

    #[test]
    fn bad_rows_name_file_line_and_expectation() {
        let (_d, path) = write(b"1\t1.5\tfine\r\n2\tnot-a-number\tbad\r\n");
        let err = RottenTomatoes::read(&path).unwrap_err().to_string();
        assert!(err.contains(":2: expected a sentiment score"), "{err}");
        let (_d, path) = write(b"1\t1.5\tfine\r\n2\t-1.0\r\n");
        let err = RottenTomatoes::read(&path).unwrap_err().to_string();
        assert!(err.contains(":2: expected 3 tab-separated fields"), "{err}");
        let (_d, path) = write(b"1\t9.5\ttoo high\r\n");
        assert!(RottenTomatoes::read(&path).is_err());
    }

    #[test]
    fn zero_scores_are_dropped_and_counted_for_binary_only() {
        let rows: String = (0..20)
            .map(|i| format!("{i}\t{}\tsnippet {i}\r\n", (i as f32 - 10.0) / 4.0))
            .collect();
        let (_d, path) = write(rows.as_bytes());
        let data = RottenTomatoes::read(&path).unwrap();
        let binary = data.split(SentimentTask::Binary);
        assert_eq!(binary.dropped(), 1);
        let regression = data.split(SentimentTask::Regression);
        assert_eq!(regression.dropped(), 0);
        let total = |s: &SentimentSplits| {
            s.train.examples.len() + s.dev.examples.len() + s.test.examples.len()
        };
        assert_eq!(total(&binary), 19);
        assert_eq!(total(&regression), 20);
        assert_eq!(regression.test.examples.len(), 2);
    }
}
