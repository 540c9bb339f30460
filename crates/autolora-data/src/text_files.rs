//! Sentence and sentence-pair tasks (classification, regression) from the user's own files, in
//! any format [`records`](crate::records) reads.
//!
//! Each row gives a text (column `text` by default), optionally a second text (`text_pair`:
//! used when the file has that column, required when the column is named explicitly) and a
//! label (`label`). Labels are strings or numbers; a class's name is the label as written
//! (`1` and `"1"` are the same class). The classes are the training file's labels, sorted
//! (numerically when every one is a number, else as strings), or a list the caller gives.
//! A label an evaluation file has and the classes do not is an error naming file and line; so
//! is a missing column (with the columns the row has), a text that is not a string, and a
//! regression label that is not a number. A row without a label (`null`, or an empty CSV
//! field) reads as unlabelled; training and evaluation refuse it
//! ([`TextSplit::require_labels`]).

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::error::{Error, Result};
use crate::example::{Label, TextExample, TextSplit};
use crate::records::{Row, Rows, describe};

/// Which columns hold the texts and the label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextColumns {
    /// The text (the first of a pair).
    pub text: String,
    /// The second text of a pair; `None`: the column `text_pair` where the file has one.
    pub text_pair: Option<String>,
    /// The label.
    pub label: String,
}

impl Default for TextColumns {
    fn default() -> Self {
        TextColumns {
            text: "text".into(),
            text_pair: None,
            label: "label".into(),
        }
    }
}

/// The default name of the second text's column.
pub const TEXT_PAIR: &str = "text_pair";

/// One row as read, its label not yet mapped to a class or a score.
#[derive(Debug, Clone, PartialEq)]
pub struct RawExample {
    /// The text.
    pub text_a: String,
    /// The second text of a pair.
    pub text_b: Option<String>,
    /// The label as written (`None`: no label).
    pub label: Option<String>,
    /// 1-based line the row starts on.
    pub line: usize,
}

/// The rows of one file.
#[derive(Debug, Clone)]
pub struct RawTextFile {
    /// The file read.
    pub path: PathBuf,
    /// The rows kept, in file order.
    pub examples: Vec<RawExample>,
}

/// Reads the rows of `path` whose 0-based index `keep` accepts (a caller that wants a subset
/// of a large file holds only that subset).
pub fn read_text_file(
    path: &Path,
    columns: &TextColumns,
    mut keep: impl FnMut(usize) -> bool,
) -> Result<RawTextFile> {
    let mut examples = Vec::new();
    // Whether the file pairs texts: decided on its first row.
    let mut pair: Option<Option<String>> = None;
    for (index, row) in Rows::open(path)?.enumerate() {
        let row = row?;
        let pair = pair.get_or_insert_with(|| match &columns.text_pair {
            Some(column) => Some(column.clone()),
            None => row.get(TEXT_PAIR).map(|_| TEXT_PAIR.to_string()),
        });
        if !keep(index) {
            continue;
        }
        let text_b = match pair {
            Some(column) => Some(row.string(path, column)?),
            None => None,
        };
        examples.push(RawExample {
            text_a: row.string(path, &columns.text)?,
            text_b,
            label: label(path, &row, &columns.label)?,
            line: row.line,
        });
    }
    Ok(RawTextFile {
        path: path.to_path_buf(),
        examples,
    })
}

impl RawTextFile {
    /// The distinct labels, sorted: numerically when every one is a number, else as strings.
    pub fn class_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .examples
            .iter()
            .filter_map(|e| e.label.clone())
            .collect();
        names.sort_unstable();
        names.dedup();
        let numbers: Option<Vec<f64>> = names.iter().map(|n| n.parse().ok()).collect();
        if let Some(numbers) = numbers {
            let mut order: Vec<usize> = (0..names.len()).collect();
            order.sort_by(|&a, &b| numbers[a].total_cmp(&numbers[b]));
            names = order.into_iter().map(|i| names[i].clone()).collect();
        }
        names
    }

    /// The rows as a classification split over `classes` (ids are positions); a label not
    /// among them is an error naming the file and line.
    pub fn classification(&self, classes: &[String]) -> Result<TextSplit> {
        self.split(|label, line| {
            classes
                .iter()
                .position(|c| c == label)
                .map(Label::Class)
                .ok_or_else(|| {
                    let known = classes.iter().take(20).cloned().collect::<Vec<_>>();
                    let more = if classes.len() > 20 { ", ..." } else { "" };
                    Error::parse(
                        &self.path,
                        line,
                        format!("one of the task's labels ({}{more})", known.join(", ")),
                        format!("the label {label:?}"),
                    )
                })
        })
    }

    /// The rows as a regression split; a label that is not a finite number is an error.
    pub fn regression(&self) -> Result<TextSplit> {
        self.split(|label, line| match label.parse::<f32>() {
            Ok(score) if score.is_finite() => Ok(Label::Score(score)),
            _ => Err(Error::parse(
                &self.path,
                line,
                "a number as the label of a regression task",
                format!("the label {label:?}"),
            )),
        })
    }

    fn split(&self, label: impl Fn(&str, usize) -> Result<Label>) -> Result<TextSplit> {
        let examples = self
            .examples
            .iter()
            .map(|e| {
                Ok(TextExample {
                    text_a: e.text_a.clone(),
                    text_b: e.text_b.clone(),
                    label: match &e.label {
                        Some(l) => label(l, e.line)?,
                        None => Label::Unlabeled,
                    },
                    line: e.line,
                })
            })
            .collect::<Result<_>>()?;
        Ok(TextSplit {
            path: self.path.clone(),
            examples,
            skipped: Vec::new(),
        })
    }
}

fn label(path: &Path, row: &Row, column: &str) -> Result<Option<String>> {
    match row.require(path, column)? {
        Value::Null => Ok(None),
        Value::String(s) if s.trim().is_empty() => Ok(None),
        Value::String(s) => Ok(Some(s.trim().to_string())),
        Value::Number(n) => Ok(Some(n.to_string())),
        Value::Bool(b) => Ok(Some(b.to_string())),
        other => Err(Error::parse(
            path,
            row.line,
            format!("a label (a string or a number) in `{column}`"),
            describe(&other),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::records::test_file as file;

    fn all(path: &Path) -> Result<RawTextFile> {
        read_text_file(path, &TextColumns::default(), |_| true)
    }

    #[test]
    fn classes_come_from_the_training_file_sorted() -> Result<()> {
        let dir = tempfile::tempdir().unwrap();
        let numbers = file(
            &dir,
            "n.jsonl",
            "{\"text\": \"a\", \"label\": 10}\n{\"text\": \"b\", \"label\": 2}\n{\"text\": \"c\", \"label\": \"2\"}\n",
        );
        let train = all(&numbers)?;
        assert_eq!(train.class_names(), ["2", "10"]);
        let split = train.classification(&train.class_names())?;
        let ids: Vec<Label> = split.examples.iter().map(|e| e.label).collect();
        assert_eq!(ids, [Label::Class(1), Label::Class(0), Label::Class(0)]);
        let words = file(&dir, "w.csv", "label,text\npos,x\nneg,y\npos,z\n");
        assert_eq!(all(&words)?.class_names(), ["neg", "pos"]);
        Ok(())
    }

    #[test]
    fn pairs_subsets_and_scores() -> Result<()> {
        let dir = tempfile::tempdir().unwrap();
        let path = file(
            &dir,
            "pairs.tsv",
            "text\ttext_pair\tlabel\na\tb\t0.5\nc\td\t1\ne\tf\t-2.25\n",
        );
        let odd = read_text_file(&path, &TextColumns::default(), |i| i % 2 == 0)?;
        assert_eq!(odd.examples.len(), 2);
        assert_eq!(odd.examples[1].text_b.as_deref(), Some("f"));
        assert_eq!(odd.examples[1].line, 4);
        let scores: Vec<Label> = odd.regression()?.examples.iter().map(|e| e.label).collect();
        assert_eq!(scores, [Label::Score(0.5), Label::Score(-2.25)]);
        assert_eq!(
            crate::records::count(&path, crate::records::Format::Tsv)?,
            3
        );
        // Named columns; an explicitly named pair column must exist.
        let columns = TextColumns {
            text: "text_pair".into(),
            text_pair: Some("missing".into()),
            label: "label".into(),
        };
        let e = read_text_file(&path, &columns, |_| true)
            .unwrap_err()
            .to_string();
        assert!(
            e.ends_with(
                ":2: expected a column `missing`, found the columns text, text_pair, label"
            ),
            "{e}"
        );
        Ok(())
    }

    #[test]
    fn bad_labels_and_texts_name_the_file_and_line() -> Result<()> {
        let dir = tempfile::tempdir().unwrap();
        let train = all(&file(&dir, "train.csv", "text,label\na,pos\nb,neg\n"))?;
        let classes = train.class_names();
        let dev = all(&file(&dir, "dev.csv", "text,label\na,pos\nb,neutral\n"))?;
        let e = dev.classification(&classes).unwrap_err().to_string();
        assert!(
            e.ends_with(
                "dev.csv:3: expected one of the task's labels (neg, pos), found the label \"neutral\""
            ),
            "{e}"
        );
        let e = train.regression().unwrap_err().to_string();
        assert!(e.ends_with("train.csv:2: expected a number as the label of a regression task, found the label \"pos\""), "{e}");
        let path = file(&dir, "types.jsonl", "{\"text\": 3, \"label\": 1}\n");
        let e = all(&path).unwrap_err().to_string();
        assert!(
            e.ends_with(":1: expected a string in `text`, found the number 3"),
            "{e}"
        );
        let path = file(&dir, "list.jsonl", "{\"text\": \"a\", \"label\": [1]}\n");
        let e = all(&path).unwrap_err().to_string();
        assert!(
            e.contains("expected a label (a string or a number) in `label`, found the list [1]"),
            "{e}"
        );
        // A row without a label is unlabelled, which training refuses at its line.
        let path = file(
            &dir,
            "null.jsonl",
            "{\"text\": \"a\", \"label\": 1}\n{\"text\": \"b\", \"label\": null}\n",
        );
        let file = all(&path)?;
        let e = file
            .classification(&file.class_names())?
            .require_labels()
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("null.jsonl:2: expected a labelled example"),
            "{e}"
        );
        Ok(())
    }
}
