//! GLUE tasks from the official distribution layout (`<TASK>/train.tsv`, `dev.tsv`, ...).
//!
//! The files are tab-separated with no quoting (quotes are text), one example per line. Each
//! task has its own columns and quirks, which [`GlueTask::layout`] records:
//!
//! | task | train/dev columns used | labels | test file |
//! |---|---|---|---|
//! | CoLA | no header; 4 columns: source, label, original mark, sentence | `0`, `1` | header `index sentence` |
//! | SST-2 | `sentence`, `label` | `0`, `1` | `index sentence` |
//! | MRPC | `Quality`, `#1 String`, `#2 String` | `0`, `1` | `index #1 ID #2 ID #1 String #2 String` |
//! | QQP | `question1`, `question2`, `is_duplicate` | `0`, `1` | `id question1 question2` |
//! | STS-B | `sentence1`, `sentence2`, `score` (last column) | regression, 0 to 5 | no score |
//! | MNLI | `sentence1`, `sentence2`, `gold_label` (last column; dev files have 16 columns, train 12) | `contradiction`, `entailment`, `neutral` | `test_matched`, `test_mismatched` |
//! | QNLI | `question`, `sentence`, `label` | `entailment`, `not_entailment` | `index question sentence` |
//! | RTE | `sentence1`, `sentence2`, `label` | `entailment`, `not_entailment` | `index sentence1 sentence2` |
//!
//! Every row must have the header's number of columns (CoLA: 4). A row that does not, or that
//! holds an unknown label, is an error naming the file and line; with
//! [`GlueOptions::lenient`] it is skipped instead, recorded in [`TextSplit::skipped`] and the
//! count is logged (the original QQP release has a few broken rows).

use std::path::Path;

use crate::error::{Error, Result};
use crate::example::{Label, Skipped, TaskKind, TextExample, TextSplit};
use crate::metrics;
use crate::text::{numbered_lines, read_text};

/// The GLUE tasks the paper evaluates on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GlueTask {
    /// Corpus of Linguistic Acceptability (Matthews correlation).
    Cola,
    /// Stanford Sentiment Treebank, binary (accuracy).
    Sst2,
    /// Microsoft Research Paraphrase Corpus (accuracy and F1).
    Mrpc,
    /// Quora Question Pairs (accuracy and F1).
    Qqp,
    /// Semantic Textual Similarity Benchmark (Pearson and Spearman).
    Stsb,
    /// Multi-Genre NLI (accuracy, matched and mismatched).
    Mnli,
    /// Question NLI (accuracy).
    Qnli,
    /// Recognizing Textual Entailment (accuracy).
    Rte,
}

/// Which file of a task's folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GlueFile {
    /// `train.tsv`.
    Train,
    /// `dev.tsv` (MNLI: `dev_matched.tsv`).
    Dev,
    /// MNLI's `dev_mismatched.tsv`.
    DevMismatched,
    /// `test.tsv` (MNLI: `test_matched.tsv`), unlabeled.
    Test,
    /// MNLI's `test_mismatched.tsv`, unlabeled.
    TestMismatched,
}

/// A column: by position, or the last one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Column {
    /// 0-based position.
    At(usize),
    /// The last column (MNLI's `gold_label`, STS-B's `score`).
    Last,
}

impl Column {
    fn pick<'a>(self, fields: &[&'a str]) -> &'a str {
        match self {
            Column::At(i) => fields[i],
            Column::Last => fields[fields.len() - 1],
        }
    }

    fn min_columns(self) -> usize {
        match self {
            Column::At(i) => i + 1,
            Column::Last => 1,
        }
    }
}

/// Where a file's fields are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// Whether the first line is a header.
    pub header: bool,
    /// Number of columns when there is no header to take it from.
    pub columns: Option<usize>,
    /// First text.
    pub text_a: Column,
    /// Second text (pair tasks).
    pub text_b: Option<Column>,
    /// Label (absent in test files).
    pub label: Option<Column>,
}

/// Reading options.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GlueOptions {
    /// Skip (and record) malformed rows instead of failing.
    pub lenient: bool,
}

impl GlueTask {
    /// Every task, in the paper's table order.
    pub const ALL: [GlueTask; 8] = [
        GlueTask::Mnli,
        GlueTask::Sst2,
        GlueTask::Mrpc,
        GlueTask::Cola,
        GlueTask::Qnli,
        GlueTask::Qqp,
        GlueTask::Rte,
        GlueTask::Stsb,
    ];

    /// The task's usual name (`CoLA`, `SST-2`, ...), which is also its folder in the GLUE
    /// distribution.
    pub fn name(self) -> &'static str {
        match self {
            GlueTask::Cola => "CoLA",
            GlueTask::Sst2 => "SST-2",
            GlueTask::Mrpc => "MRPC",
            GlueTask::Qqp => "QQP",
            GlueTask::Stsb => "STS-B",
            GlueTask::Mnli => "MNLI",
            GlueTask::Qnli => "QNLI",
            GlueTask::Rte => "RTE",
        }
    }

    /// Parses a task name, ignoring case and `-`/`_` (`sst2`, `SST-2`, `sts_b`).
    pub fn from_name(name: &str) -> Result<Self> {
        let key: String = name
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .collect::<String>()
            .to_ascii_lowercase();
        GlueTask::ALL
            .into_iter()
            .find(|t| t.name().replace('-', "").to_ascii_lowercase() == key)
            .ok_or_else(|| {
                Error::invalid(
                    "GLUE task",
                    "one of CoLA, SST-2, MRPC, QQP, STS-B, MNLI, QNLI, RTE",
                    format!("{name:?}"),
                )
            })
    }

    /// The asset name of the task's data (`cargo xtask download glue-cola`).
    pub fn asset_name(self) -> &'static str {
        match self {
            GlueTask::Cola => "glue-cola",
            GlueTask::Sst2 => "glue-sst2",
            GlueTask::Mrpc => "glue-mrpc",
            GlueTask::Qqp => "glue-qqp",
            GlueTask::Stsb => "glue-stsb",
            GlueTask::Mnli => "glue-mnli",
            GlueTask::Qnli => "glue-qnli",
            GlueTask::Rte => "glue-rte",
        }
    }

    /// Classification labels (in id order) or regression.
    pub fn kind(self) -> TaskKind {
        let labels = |l: &[&str]| TaskKind::Classification {
            labels: l.iter().map(|s| s.to_string()).collect(),
        };
        match self {
            GlueTask::Stsb => TaskKind::Regression,
            GlueTask::Mnli => labels(&["contradiction", "entailment", "neutral"]),
            GlueTask::Qnli | GlueTask::Rte => labels(&["entailment", "not_entailment"]),
            GlueTask::Cola | GlueTask::Sst2 | GlueTask::Mrpc | GlueTask::Qqp => labels(&["0", "1"]),
        }
    }

    /// Whether examples are sentence pairs.
    pub fn is_pair(self) -> bool {
        !matches!(self, GlueTask::Cola | GlueTask::Sst2)
    }

    /// The file name of `file` in the task's folder.
    pub fn file_name(self, file: GlueFile) -> Result<&'static str> {
        let mnli = self == GlueTask::Mnli;
        Ok(match (file, mnli) {
            (GlueFile::Train, _) => "train.tsv",
            (GlueFile::Dev, false) => "dev.tsv",
            (GlueFile::Dev, true) => "dev_matched.tsv",
            (GlueFile::DevMismatched, true) => "dev_mismatched.tsv",
            (GlueFile::Test, false) => "test.tsv",
            (GlueFile::Test, true) => "test_matched.tsv",
            (GlueFile::TestMismatched, true) => "test_mismatched.tsv",
            (other, false) => {
                return Err(Error::invalid(
                    format!("{} file", self.name()),
                    "train, dev or test (mismatched files exist for MNLI only)",
                    format!("{other:?}"),
                ));
            }
        })
    }

    /// The evaluation files (MNLI: matched and mismatched dev).
    pub fn eval_files(self) -> &'static [GlueFile] {
        if self == GlueTask::Mnli {
            &[GlueFile::Dev, GlueFile::DevMismatched]
        } else {
            &[GlueFile::Dev]
        }
    }

    /// Where the fields of `file` are.
    pub fn layout(self, file: GlueFile) -> Layout {
        use Column::{At, Last};
        let test = matches!(file, GlueFile::Test | GlueFile::TestMismatched);
        let layout = |text_a, text_b, label| Layout {
            header: true,
            columns: None,
            text_a,
            text_b,
            label,
        };
        match (self, test) {
            (GlueTask::Cola, false) => Layout {
                header: false,
                columns: Some(4),
                text_a: At(3),
                text_b: None,
                label: Some(At(1)),
            },
            (GlueTask::Cola | GlueTask::Sst2, true) => layout(At(1), None, None),
            (GlueTask::Sst2, false) => layout(At(0), None, Some(At(1))),
            (GlueTask::Mrpc, false) => layout(At(3), Some(At(4)), Some(At(0))),
            (GlueTask::Mrpc, true) => layout(At(3), Some(At(4)), None),
            (GlueTask::Qqp, false) => layout(At(3), Some(At(4)), Some(At(5))),
            (GlueTask::Qqp | GlueTask::Qnli | GlueTask::Rte, true) => {
                layout(At(1), Some(At(2)), None)
            }
            (GlueTask::Stsb, false) => layout(At(7), Some(At(8)), Some(Last)),
            (GlueTask::Stsb, true) => layout(At(7), Some(At(8)), None),
            (GlueTask::Mnli, false) => layout(At(8), Some(At(9)), Some(Last)),
            (GlueTask::Mnli, true) => layout(At(8), Some(At(9)), None),
            (GlueTask::Qnli | GlueTask::Rte, false) => layout(At(1), Some(At(2)), Some(Last)),
        }
    }

    /// Reads `file` from the task's folder `dir`.
    pub fn read(self, dir: &Path, file: GlueFile, options: GlueOptions) -> Result<TextSplit> {
        let path = dir.join(self.file_name(file)?);
        read_glue_file(self, &path, self.layout(file), options)
    }

    /// The task's metrics on class predictions: `(name, value)` pairs in GLUE's order.
    pub fn score_classes(
        self,
        predictions: &[usize],
        gold: &[usize],
    ) -> Result<Vec<(&'static str, f64)>> {
        Ok(match self {
            GlueTask::Cola => vec![("matthews", metrics::matthews_corrcoef(predictions, gold)?)],
            GlueTask::Mrpc | GlueTask::Qqp => vec![
                ("accuracy", metrics::accuracy(predictions, gold)?),
                ("f1", metrics::f1_binary(predictions, gold, 1)?),
            ],
            GlueTask::Stsb => {
                return Err(Error::invalid(
                    "STS-B scoring",
                    "real-valued predictions (use score_regression)",
                    "class predictions",
                ));
            }
            _ => vec![("accuracy", metrics::accuracy(predictions, gold)?)],
        })
    }

    /// STS-B's metrics on score predictions: Pearson and Spearman.
    pub fn score_regression(
        self,
        predictions: &[f64],
        gold: &[f64],
    ) -> Result<Vec<(&'static str, f64)>> {
        if self != GlueTask::Stsb {
            return Err(Error::invalid(
                format!("{} scoring", self.name()),
                "class predictions (use score_classes)",
                "real-valued predictions",
            ));
        }
        Ok(vec![
            ("pearson", metrics::pearson(predictions, gold)?),
            ("spearman", metrics::spearman(predictions, gold)?),
        ])
    }
}

/// Reads one GLUE TSV file with an explicit layout.
pub fn read_glue_file(
    task: GlueTask,
    path: &Path,
    layout: Layout,
    options: GlueOptions,
) -> Result<TextSplit> {
    let text = read_text(path, &format!("{} rows", task.name()))?;
    let mut lines = numbered_lines(&text).peekable();
    let columns = if layout.header {
        let (_, header) = lines.next().unwrap_or((1, ""));
        header.split('\t').count()
    } else {
        layout.columns.unwrap_or(1)
    };
    let needed = [Some(layout.text_a), layout.text_b, layout.label]
        .into_iter()
        .flatten()
        .map(Column::min_columns)
        .max()
        .unwrap_or(1);
    if columns < needed {
        return Err(Error::parse(
            path,
            1,
            format!("a {} header with at least {needed} columns", task.name()),
            format!("{columns} columns"),
        ));
    }
    let kind = task.kind();
    let mut examples = Vec::new();
    let mut skipped = Vec::new();
    for (line_no, line) in lines {
        if line.is_empty() {
            continue;
        }
        let row = parse_row(task, &kind, path, line_no, line, columns, layout);
        match row {
            Ok(example) => examples.push(example),
            Err(e) if options.lenient => skipped.push(Skipped {
                line: line_no,
                reason: e.to_string(),
            }),
            Err(e) => return Err(e),
        }
    }
    if !skipped.is_empty() {
        tracing::warn!(
            path = %path.display(),
            skipped = skipped.len(),
            "malformed rows skipped (lenient mode)"
        );
    }
    if examples.is_empty() {
        return Err(Error::EmptyFile {
            path: path.to_path_buf(),
            expected: format!("{} rows after the header", task.name()),
        });
    }
    Ok(TextSplit {
        path: path.to_path_buf(),
        examples,
        skipped,
    })
}

fn parse_row(
    task: GlueTask,
    kind: &TaskKind,
    path: &Path,
    line_no: usize,
    line: &str,
    columns: usize,
    layout: Layout,
) -> Result<TextExample> {
    let fields: Vec<&str> = line.split('\t').collect();
    if fields.len() != columns {
        return Err(Error::parse(
            path,
            line_no,
            format!("{columns} tab-separated columns"),
            format!("{} columns", fields.len()),
        ));
    }
    let label = match (layout.label, kind) {
        (None, _) => Label::Unlabeled,
        (Some(col), TaskKind::Regression) => {
            let raw = col.pick(&fields);
            let score: f32 = raw.trim().parse().map_err(|_| {
                Error::parse(
                    path,
                    line_no,
                    "a similarity score (a number)",
                    format!("{raw:?}"),
                )
            })?;
            Label::Score(score)
        }
        (Some(col), TaskKind::Classification { labels }) => {
            let raw = col.pick(&fields).trim();
            let id = labels.iter().position(|l| l == raw).ok_or_else(|| {
                Error::parse(
                    path,
                    line_no,
                    format!("a {} label in {{{}}}", task.name(), labels.join(", ")),
                    format!("{raw:?}"),
                )
            })?;
            Label::Class(id)
        }
    };
    Ok(TextExample {
        text_a: layout.text_a.pick(&fields).to_string(),
        text_b: layout.text_b.map(|c| c.pick(&fields).to_string()),
        label,
        line: line_no,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_loosely() {
        assert_eq!(GlueTask::from_name("sst2").unwrap(), GlueTask::Sst2);
        assert_eq!(GlueTask::from_name("STS-B").unwrap(), GlueTask::Stsb);
        assert_eq!(GlueTask::from_name("cola").unwrap(), GlueTask::Cola);
        assert!(GlueTask::from_name("wnli").is_err());
        assert!(GlueTask::Cola.file_name(GlueFile::DevMismatched).is_err());
    }
}
