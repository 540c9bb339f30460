//! Unlabelled rows to predict on, streamed from any format [`records`](crate::records) reads:
//! the texts of a sentence task, the words of a tagging task or what a causal language model
//! continues, from the columns the task was trained with. Labels, tags and completions are not
//! read, so a file with them and one without read the same. Bad rows are errors naming the
//! file and line, as in training files.

use std::path::{Path, PathBuf};

use crate::chat::ASSISTANT;
use crate::error::{Error, Result};
use crate::lm_files::{LmColumns, LmExample, conversation};
use crate::records::{Row, Rows};
use crate::tag_files::{TagColumns, strings};
use crate::text_files::{TEXT_PAIR, TextColumns};

/// The columns of the task's kind.
#[derive(Debug, Clone)]
pub enum InputColumns {
    /// A sentence task's text (and second text).
    Text(TextColumns),
    /// A tagging task's words (`tokens`; the tag column is not read).
    Words(TagColumns),
    /// A causal-LM task's prompt, conversation or text.
    Lm(LmColumns),
}

/// One row's input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// A text, or a pair of texts.
    Text {
        /// The text.
        text_a: String,
        /// The second text of a pair.
        text_b: Option<String>,
    },
    /// The words of a sentence.
    Words(Vec<String>),
    /// What a causal LM continues: a pair's prompt (as [`LmExample::Pair`] with an empty
    /// completion), a conversation up to its last assistant turn when it has one (else whole),
    /// or a text.
    Prompt(LmExample),
}

/// An input and the line it was read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputRow {
    /// The input.
    pub input: Input,
    /// 1-based line (Parquet: row) of the file.
    pub line: usize,
}

/// The rows of `path`, read one at a time.
pub fn read_inputs(path: &Path, columns: &InputColumns) -> Result<Inputs> {
    Ok(Inputs {
        path: path.to_path_buf(),
        rows: Rows::open(path)?,
        columns: columns.clone(),
        pair: None,
        lm_layout: None,
    })
}

/// The streaming reader [`read_inputs`] returns.
pub struct Inputs {
    path: PathBuf,
    rows: Rows,
    columns: InputColumns,
    /// The second-text column, decided on the first row.
    pair: Option<Option<String>>,
    /// The causal-LM layout (the column read), decided on the first row.
    lm_layout: Option<String>,
}

impl Inputs {
    fn input(&mut self, row: &Row) -> Result<Input> {
        let path = self.path.as_path();
        match &self.columns {
            InputColumns::Text(columns) => {
                let pair = self.pair.get_or_insert_with(|| match &columns.text_pair {
                    Some(column) => Some(column.clone()),
                    None => row.get(TEXT_PAIR).map(|_| TEXT_PAIR.to_string()),
                });
                Ok(Input::Text {
                    text_a: row.string(path, &columns.text)?,
                    text_b: match pair {
                        Some(column) => Some(row.string(path, column)?),
                        None => None,
                    },
                })
            }
            InputColumns::Words(columns) => {
                let words = strings(path, row, &columns.tokens, None)?;
                if words.is_empty() {
                    return Err(Error::parse(
                        path,
                        row.line,
                        format!("at least one word in `{}`", columns.tokens),
                        "an empty list",
                    ));
                }
                Ok(Input::Words(words))
            }
            InputColumns::Lm(columns) => {
                let layout = self.lm_layout.get_or_insert_with(|| {
                    [&columns.messages, &columns.prompt]
                        .into_iter()
                        .find(|c| row.get(c).is_some())
                        .unwrap_or(&columns.text)
                        .clone()
                });
                let example = if *layout == columns.messages {
                    let mut messages = conversation(path, row, layout)?;
                    if let Some(last) = messages.iter().rposition(|m| m.role == ASSISTANT) {
                        messages.truncate(last);
                    }
                    LmExample::Chat(messages)
                } else if *layout == columns.prompt {
                    LmExample::Pair {
                        prompt: row.string(path, layout)?,
                        completion: String::new(),
                    }
                } else {
                    LmExample::Text(row.string(path, layout)?)
                };
                Ok(Input::Prompt(example))
            }
        }
    }
}

impl Iterator for Inputs {
    type Item = Result<InputRow>;

    fn next(&mut self) -> Option<Self::Item> {
        let row = match self.rows.next()? {
            Ok(row) => row,
            Err(e) => return Some(Err(e)),
        };
        Some(self.input(&row).map(|input| InputRow {
            input,
            line: row.line,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::test_file as file;

    fn read(path: &Path, columns: InputColumns) -> Result<Vec<InputRow>> {
        read_inputs(path, &columns)?.collect()
    }

    #[test]
    fn inputs_read_the_trained_columns_and_nothing_else() -> Result<()> {
        let dir = tempfile::tempdir().unwrap();
        let texts = file(&dir, "a.csv", "text,text_pair,label\nhi,there,\nyo,you,x\n");
        let rows = read(&texts, InputColumns::Text(TextColumns::default()))?;
        assert_eq!(rows.len(), 2);
        assert_eq!(
            rows[1].input,
            Input::Text {
                text_a: "yo".into(),
                text_b: Some("you".into())
            }
        );
        assert_eq!(rows[1].line, 3);

        let words = file(
            &dir,
            "w.jsonl",
            "{\"tokens\": [\"Anna\", \"left\"]}\n{\"tokens\": []}\n",
        );
        let err = read(&words, InputColumns::Words(TagColumns::default())).unwrap_err();
        assert!(err.to_string().contains("w.jsonl:2"), "{err}");

        let chats = file(
            &dir,
            "c.jsonl",
            "{\"messages\": [{\"role\": \"user\", \"content\": \"q\"}, \
             {\"role\": \"assistant\", \"content\": \"a\"}]}\n\
             {\"messages\": [{\"role\": \"user\", \"content\": \"r\"}]}\n",
        );
        let rows = read(&chats, InputColumns::Lm(LmColumns::default()))?;
        for (row, content) in rows.iter().zip(["q", "r"]) {
            let Input::Prompt(LmExample::Chat(messages)) = &row.input else {
                panic!("a conversation expected");
            };
            assert_eq!(messages.len(), 1);
            assert_eq!(messages[0].content, content);
        }
        Ok(())
    }
}
