//! Task-independent example types shared by the loaders.

use std::path::PathBuf;

use crate::error::{Error, Result};

/// The gold answer of a sentence or sentence-pair example.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Label {
    /// A class id (index into the task's label list).
    Class(usize),
    /// A real-valued score (regression tasks such as STS-B).
    Score(f32),
    /// No gold label (GLUE test files).
    Unlabeled,
}

/// A single sentence or a sentence pair with its label.
#[derive(Debug, Clone, PartialEq)]
pub struct TextExample {
    /// First (or only) text.
    pub text_a: String,
    /// Second text of a pair task.
    pub text_b: Option<String>,
    /// Gold label.
    pub label: Label,
    /// 1-based line (or CSV record start line) in the source file.
    pub line: usize,
}

/// Whether a task predicts classes or a score.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskKind {
    /// Classification over the given label names (ids are positions).
    Classification {
        /// Label names in id order.
        labels: Vec<String>,
    },
    /// Regression on a real-valued score.
    Regression,
}

/// A split of a sentence-level task, read from one file.
#[derive(Debug, Clone)]
pub struct TextSplit {
    /// The file read.
    pub path: PathBuf,
    /// Its examples, in file order.
    pub examples: Vec<TextExample>,
    /// Rows deliberately left out, with the reason (reported, never silent).
    pub skipped: Vec<Skipped>,
}

/// A row a loader left out on purpose.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// 1-based line in the file.
    pub line: usize,
    /// Why it was left out.
    pub reason: String,
}

impl TextSplit {
    /// Checks that every example has a gold label, as training and evaluation need: the first
    /// unlabelled row is an error naming the file and line.
    pub fn require_labels(&self) -> Result<()> {
        match self.examples.iter().find(|e| e.label == Label::Unlabeled) {
            Some(e) => Err(Error::parse(
                &self.path,
                e.line,
                "a labelled example (training and evaluation need a label)",
                "a row without a label",
            )),
            None => Ok(()),
        }
    }

    /// Class ids of the examples (`None` for any example without a class label).
    pub fn class_ids(&self) -> Option<Vec<usize>> {
        self.examples
            .iter()
            .map(|e| match e.label {
                Label::Class(c) => Some(c),
                _ => None,
            })
            .collect()
    }

    /// Keeps the examples at `indices` (in that order).
    pub fn select(&self, indices: &[usize]) -> TextSplit {
        TextSplit {
            path: self.path.clone(),
            examples: indices.iter().map(|&i| self.examples[i].clone()).collect(),
            skipped: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unlabelled_row_is_an_error_naming_file_and_line() {
        let example = |line, label| TextExample {
            text_a: "a".into(),
            text_b: None,
            label,
            line,
        };
        let mut split = TextSplit {
            path: "mine/train.tsv".into(),
            examples: vec![example(2, Label::Class(1)), example(3, Label::Score(0.5))],
            skipped: Vec::new(),
        };
        assert!(split.require_labels().is_ok());
        split.examples.push(example(7, Label::Unlabeled));
        let err = split.require_labels().unwrap_err().to_string();
        assert!(
            err.starts_with("mine/train.tsv:7: expected a labelled example"),
            "{err}"
        );
    }
}
