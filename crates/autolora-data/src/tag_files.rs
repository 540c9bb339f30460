//! Token classification (tagging) from the user's own files, in any format
//! [`records`](crate::records) reads: one sentence per row, its words in a list column
//! (`tokens` by default) and one tag per word in another (`tags`).
//!
//! Tags are strings (`O`, `B-PER`, ...) or integers naming positions in a tag list the caller
//! gives (what `datasets` exports for a `ClassLabel` column such as CoNLL-2003's `ner_tags`).
//! A file's scheme is detected and converted to IOB2, the scheme the tokenizer, the model and
//! the entity F1 work in: BIOES (any `S-` or `E-` tag: `S-X` becomes `B-X`, `E-X` `I-X`),
//! IOB1 (an entity that begins with `I-`), else IOB2. Errors name the file and line: a missing
//! column, a value that is not a list of strings (or integers), tokens and tags of different
//! lengths, an empty sentence, an integer tag outside the list, a malformed tag.

use std::path::Path;

use serde_json::Value;

use crate::conll::{TagScheme, TaggedFile, TaggedSentence, iob1_to_iob2};
use crate::error::{Error, Result};
use crate::labels::LabelSet;
use crate::records::{Format, Row, Rows, describe};

/// Which columns hold the words and their tags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagColumns {
    /// The words of a sentence (a list of strings).
    pub tokens: String,
    /// One tag per word (a list of strings, or of integers into a tag list).
    pub tags: String,
}

impl Default for TagColumns {
    fn default() -> Self {
        TagColumns {
            tokens: "tokens".into(),
            tags: "tags".into(),
        }
    }
}

/// Reads the sentences of the `format` file `path` whose 0-based row index `keep` accepts;
/// integer tags are names in `tag_names` (an error without it). The tags come back in IOB2,
/// the file's scheme in [`TaggedFile::scheme`] (`Iob1` for converted IOB1 and BIOES files
/// alike). A [`Format::Conll`] file's rows have the columns `tokens` and `tags`.
pub fn read_tagged_file(
    path: &Path,
    format: Format,
    columns: &TagColumns,
    tag_names: Option<&[String]>,
    mut keep: impl FnMut(usize) -> bool,
) -> Result<TaggedFile> {
    let mut sentences = Vec::new();
    let mut bioes = false;
    for (index, row) in Rows::open_as(path, format)?.enumerate() {
        let row = row?;
        if !keep(index) {
            continue;
        }
        let tokens = strings(path, &row, &columns.tokens, None)?;
        let tags = strings(path, &row, &columns.tags, tag_names.or(Some(&[])))?;
        if tokens.is_empty() {
            return Err(Error::parse(
                path,
                row.line,
                format!("at least one word in `{}`", columns.tokens),
                "an empty list",
            ));
        }
        if tokens.len() != tags.len() {
            return Err(Error::parse(
                path,
                row.line,
                format!(
                    "one tag in `{}` per word in `{}`",
                    columns.tags, columns.tokens
                ),
                format!("{} words and {} tags", tokens.len(), tags.len()),
            ));
        }
        for tag in &tags {
            let ok = tag == "O"
                || (["B-", "I-", "E-", "S-"].iter().any(|p| tag.starts_with(p)) && tag.len() > 2);
            if !ok {
                return Err(Error::parse(
                    path,
                    row.line,
                    "entity tags O, B-TYPE, I-TYPE (or BIOES's E-TYPE, S-TYPE)",
                    format!("the tag {tag:?}"),
                ));
            }
        }
        bioes |= tags
            .iter()
            .any(|t| t.starts_with("S-") || t.starts_with("E-"));
        sentences.push(TaggedSentence {
            tokens,
            tags,
            line: row.line,
        });
    }
    let iob1 = sentences.iter().any(|s| {
        s.tags.iter().enumerate().any(|(i, t)| {
            t.starts_with("I-") && (i == 0 || s.tags[i - 1] == "O" || s.tags[i - 1][2..] != t[2..])
        })
    });
    for sentence in &mut sentences {
        if bioes {
            for tag in &mut sentence.tags {
                if let Some(ty) = tag.strip_prefix("S-") {
                    *tag = format!("B-{ty}");
                } else if let Some(ty) = tag.strip_prefix("E-") {
                    *tag = format!("I-{ty}");
                }
            }
        } else if iob1 {
            iob1_to_iob2(&mut sentence.tags);
        }
    }
    Ok(TaggedFile {
        path: path.to_path_buf(),
        sentences,
        scheme: if bioes || iob1 {
            TagScheme::Iob1
        } else {
            TagScheme::Iob2
        },
        documents: 0,
    })
}

/// Checks that every tag of a file read by [`read_tagged_file`] is in `labels` (the training
/// file's tag set): an unknown one is an error naming the row's line and the word.
pub fn check_tags(file: &TaggedFile, labels: &LabelSet) -> Result<()> {
    for sentence in &file.sentences {
        if let Some((k, tag)) = sentence
            .tags
            .iter()
            .enumerate()
            .find(|(_, t)| labels.get(t).is_none())
        {
            return Err(Error::parse(
                &file.path,
                sentence.line,
                format!(
                    "a tag the training file has ({})",
                    labels.labels().join(", ")
                ),
                format!("{tag:?} (word {} of the row)", k + 1),
            ));
        }
    }
    Ok(())
}

/// The list of strings in `column`; with `names`, integers are positions in it.
pub(crate) fn strings(
    path: &Path,
    row: &Row,
    column: &str,
    names: Option<&[String]>,
) -> Result<Vec<String>> {
    let value = row.require(path, column)?;
    let expected = match names {
        Some(_) => format!("a list of tags (strings, or integers into task.labels) in `{column}`"),
        None => format!("a list of strings in `{column}`"),
    };
    let wrong = |found: &Value| Error::parse(path, row.line, expected.clone(), describe(found));
    let Value::Array(items) = &value else {
        return Err(wrong(&value));
    };
    items
        .iter()
        .map(|item| match (item, names) {
            (Value::String(s), _) => Ok(s.clone()),
            (Value::Number(n), Some(names)) => {
                let Some(id) = n.as_u64() else {
                    return Err(wrong(item));
                };
                names.get(id as usize).cloned().ok_or_else(|| {
                    Error::parse(
                        path,
                        row.line,
                        match names.len() {
                            0 => "tag names for integer tags: list them in task.labels".to_string(),
                            n => format!("an integer tag below {n}, the length of task.labels"),
                        },
                        format!("the tag {id}"),
                    )
                })
            }
            _ => Err(wrong(item)),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::records::test_file as file;

    fn tags(file: &TaggedFile) -> Vec<Vec<&str>> {
        file.sentences
            .iter()
            .map(|s| s.tags.iter().map(String::as_str).collect())
            .collect()
    }

    #[test]
    fn schemes_are_detected_and_converted_to_iob2() -> Result<()> {
        let dir = tempfile::tempdir().unwrap();
        let all = |path: &Path| {
            read_tagged_file(
                path,
                Format::JsonLines,
                &TagColumns::default(),
                None,
                |_| true,
            )
        };
        let iob2 = file(
            &dir,
            "iob2.jsonl",
            "{\"tokens\": [\"Anna\", \"Berg\", \"met\"], \"tags\": [\"B-PER\", \"I-PER\", \"O\"]}\n",
        );
        let read = all(&iob2)?;
        assert_eq!(read.scheme, TagScheme::Iob2);
        assert_eq!(tags(&read), [["B-PER", "I-PER", "O"]]);
        let iob1 = file(
            &dir,
            "iob1.jsonl",
            "{\"tokens\": [\"Anna\", \"Berg\", \"met\"], \"tags\": [\"I-PER\", \"I-PER\", \"O\"]}\n",
        );
        let read = all(&iob1)?;
        assert_eq!(read.scheme, TagScheme::Iob1);
        assert_eq!(tags(&read), [["B-PER", "I-PER", "O"]]);
        let bioes = file(
            &dir,
            "bioes.jsonl",
            "{\"tokens\": [\"Anna\", \"Berg\", \"in\", \"Oslo\"], \"tags\": [\"B-PER\", \"E-PER\", \"O\", \"S-LOC\"]}\n",
        );
        assert_eq!(tags(&all(&bioes)?), [["B-PER", "I-PER", "O", "B-LOC"]]);
        // Integer tags name positions in the given list.
        let ints = file(
            &dir,
            "ints.jsonl",
            "{\"tokens\": [\"Oslo\", \"x\"], \"tags\": [3, 0]}\n",
        );
        let names: Vec<String> = ["O", "B-PER", "I-PER", "B-LOC"].map(String::from).to_vec();
        let read = read_tagged_file(
            &ints,
            Format::JsonLines,
            &TagColumns::default(),
            Some(&names),
            |_| true,
        )?;
        assert_eq!(tags(&read), [["B-LOC", "O"]]);
        Ok(())
    }

    #[test]
    fn conll_column_files_read_as_their_json_lines_twins() -> Result<()> {
        let dir = tempfile::tempdir().unwrap();
        let conll = file(
            &dir,
            "a.conll",
            "-DOCSTART- -X- O\n\nAnna NNP I-PER\nBerg NNP I-PER\nmet VBD O\n\n\nOslo NNP I-LOC\n",
        );
        let jsonl = file(
            &dir,
            "a.jsonl",
            "{\"tokens\": [\"Anna\", \"Berg\", \"met\"], \"tags\": [\"I-PER\", \"I-PER\", \"O\"]}\n\
             {\"tokens\": [\"Oslo\"], \"tags\": [\"I-LOC\"]}\n",
        );
        let read = |path: &Path| {
            read_tagged_file(
                path,
                Format::of(path)?,
                &TagColumns::default(),
                None,
                |_| true,
            )
        };
        let (from_conll, from_jsonl) = (read(&conll)?, read(&jsonl)?);
        assert_eq!(tags(&from_conll), tags(&from_jsonl));
        assert_eq!(
            tags(&from_conll),
            [vec!["B-PER", "I-PER", "O"], vec!["B-LOC"]]
        );
        assert_eq!(from_conll.scheme, TagScheme::Iob1);
        // A sentence is a row at the line of its first word; separators are not rows.
        let lines: Vec<usize> = from_conll.sentences.iter().map(|s| s.line).collect();
        assert_eq!(lines, [3, 8]);
        assert_eq!(crate::records::count(&conll, Format::Conll)?, 2);
        // Given as CoNLL, a file of another extension reads the same.
        let txt = file(&dir, "train.txt", &std::fs::read_to_string(&conll).unwrap());
        let as_conll =
            read_tagged_file(&txt, Format::Conll, &TagColumns::default(), None, |_| true)?;
        assert_eq!(as_conll.sentences, from_conll.sentences);
        let bad = file(&dir, "bad.conll", "Anna NNP B-PER\nBerg B-PER\n");
        let e = read(&bad).unwrap_err().to_string();
        assert!(e.ends_with("bad.conll:2: expected 3 whitespace-separated columns (token ... tag), found 2 columns in \"Berg B-PER\""), "{e}");
        Ok(())
    }

    #[test]
    fn bad_rows_name_the_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let err = |text: &str| {
            let path = file(&dir, "bad.jsonl", text);
            read_tagged_file(
                &path,
                Format::JsonLines,
                &TagColumns::default(),
                None,
                |_| true,
            )
            .unwrap_err()
            .to_string()
        };
        let ok = "{\"tokens\": [\"a\"], \"tags\": [\"O\"]}\n";
        let e = err(&format!(
            "{ok}{{\"tokens\": [\"a\", \"b\"], \"tags\": [\"O\"]}}\n"
        ));
        assert!(
            e.ends_with(
                ":2: expected one tag in `tags` per word in `tokens`, found 2 words and 1 tags"
            ),
            "{e}"
        );
        let e = err("{\"tokens\": \"a b\", \"tags\": [\"O\"]}\n");
        assert!(
            e.ends_with(":1: expected a list of strings in `tokens`, found the string \"a b\""),
            "{e}"
        );
        let e = err("{\"tokens\": [\"a\"], \"tags\": [1]}\n");
        assert!(
            e.contains("tag names for integer tags: list them in task.labels"),
            "{e}"
        );
        let e = err("{\"tokens\": [], \"tags\": []}\n");
        assert!(
            e.ends_with(":1: expected at least one word in `tokens`, found an empty list"),
            "{e}"
        );
        let e = err("{\"tokens\": [\"a\"], \"tags\": [\"PER\"]}\n");
        assert!(e.contains("found the tag \"PER\""), "{e}");
        let e = err("{\"words\": [\"a\"], \"tags\": [\"O\"]}\n");
        assert!(
            e.ends_with(":1: expected a column `tokens`, found the columns tags, words"),
            "{e}"
        );
    }
}
