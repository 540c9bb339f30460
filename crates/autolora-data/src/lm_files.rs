//! Causal language-model data from the user's files, in the three layouts TRL and `datasets`
//! use: prompt/completion pairs (train on the completion), conversations as `messages` (a list
//! of `{role, content}`; train on the assistant's turns), or plain `text` (train on all of
//! it). A file's layout is read off its first row: `messages` if it has that column, else
//! prompt/completion if it has a prompt, else text.
//!
//! Every row is checked: a missing column lists the columns the row has, a message that is not
//! `{role, content}` with string values, an empty conversation and one without an assistant
//! turn (it would train on nothing) are errors naming the file and line.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::chat::{ASSISTANT, Message};
use crate::error::{Error, Result};
use crate::records::{Row, Rows, describe};

/// Which columns hold the texts of each layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LmColumns {
    /// The prompt of a pair (not trained on).
    pub prompt: String,
    /// The completion of a pair (trained on).
    pub completion: String,
    /// A conversation: a list of `{role, content}` objects.
    pub messages: String,
    /// Plain text (trained on).
    pub text: String,
}

impl Default for LmColumns {
    fn default() -> Self {
        LmColumns {
            prompt: "prompt".into(),
            completion: "completion".into(),
            messages: "messages".into(),
            text: "text".into(),
        }
    }
}

/// One training or evaluation example.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LmExample {
    /// Trained on the completion only; the completion follows the prompt as written (no
    /// separator is added).
    Pair {
        /// The context.
        prompt: String,
        /// What the model learns to write after it.
        completion: String,
    },
    /// Rendered with the model's chat template; trained on the assistant's turns.
    Chat(Vec<Message>),
    /// Trained on every token.
    Text(String),
}

/// An example and the line it was read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LmRow {
    /// The example.
    pub example: LmExample,
    /// 1-based line (Parquet: row) of the file.
    pub line: usize,
}

/// The rows of one file.
#[derive(Debug, Clone)]
pub struct LmFile {
    /// The file read.
    pub path: PathBuf,
    /// The rows kept, in file order.
    pub rows: Vec<LmRow>,
}

impl LmFile {
    /// The rows at `indices`, in that order (a held-out development set).
    pub fn select(&self, indices: &[usize]) -> LmFile {
        LmFile {
            path: self.path.clone(),
            rows: indices.iter().map(|&i| self.rows[i].clone()).collect(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    Pair,
    Chat,
    Text,
}

/// Reads the rows of `path` whose 0-based index `keep` accepts.
pub fn read_lm_file(
    path: &Path,
    columns: &LmColumns,
    mut keep: impl FnMut(usize) -> bool,
) -> Result<LmFile> {
    let mut rows = Vec::new();
    let mut layout = None;
    for (index, row) in Rows::open(path)?.enumerate() {
        let row = row?;
        let layout = *layout.get_or_insert_with(|| {
            if row.get(&columns.messages).is_some() {
                Layout::Chat
            } else if row.get(&columns.prompt).is_some() {
                Layout::Pair
            } else {
                Layout::Text
            }
        });
        if !keep(index) {
            continue;
        }
        let example = match layout {
            Layout::Pair => LmExample::Pair {
                prompt: row.string(path, &columns.prompt)?,
                completion: row.string(path, &columns.completion)?,
            },
            Layout::Chat => LmExample::Chat(messages(path, &row, &columns.messages)?),
            Layout::Text => LmExample::Text(row.string(path, &columns.text)?),
        };
        rows.push(LmRow {
            example,
            line: row.line,
        });
    }
    Ok(LmFile {
        path: path.to_path_buf(),
        rows,
    })
}

/// A training conversation: a [`conversation`] with an assistant turn to train on.
fn messages(path: &Path, row: &Row, column: &str) -> Result<Vec<Message>> {
    let out = conversation(path, row, column)?;
    if !out.iter().any(|m| m.role == ASSISTANT) {
        return Err(Error::parse(
            path,
            row.line,
            format!("a conversation with at least one `{ASSISTANT}` turn to train on"),
            format!(
                "the roles {}",
                out.iter()
                    .map(|m| m.role.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    }
    Ok(out)
}

/// The non-empty list of `{role, content}` messages in `column` (a CSV cell holds it as JSON
/// text).
pub(crate) fn conversation(path: &Path, row: &Row, column: &str) -> Result<Vec<Message>> {
    let expected = format!("a list of {{\"role\", \"content\"}} objects in `{column}`");
    let wrong = |found: String| Error::parse(path, row.line, expected.clone(), found);
    let value = row.require(path, column)?;
    // A CSV cell holds the list as JSON text.
    let value = match value {
        Value::String(s) => {
            serde_json::from_str(&s).map_err(|_| wrong(format!("the text {s:?}")))?
        }
        other => other,
    };
    let Value::Array(items) = value else {
        return Err(wrong(describe(&value)));
    };
    let mut out = Vec::with_capacity(items.len());
    for (k, item) in items.iter().enumerate() {
        let field = |name: &str| match item.get(name) {
            Some(Value::String(s)) => Ok(s.clone()),
            Some(other) => Err(wrong(format!(
                "message {}: `{name}` is {}",
                k + 1,
                describe(other)
            ))),
            None => Err(wrong(format!(
                "message {}: {} without `{name}`",
                k + 1,
                describe(item)
            ))),
        };
        out.push(Message {
            role: field("role")?,
            content: field("content")?,
        });
    }
    if out.is_empty() {
        return Err(wrong("an empty list".into()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::records::test_file as file;

    fn read(path: &Path) -> Result<LmFile> {
        read_lm_file(path, &LmColumns::default(), |_| true)
    }

    #[test]
    fn each_layout_is_read_from_its_columns() -> Result<()> {
        let dir = tempfile::tempdir().unwrap();
        let pairs = file(&dir, "p.csv", "prompt,completion\n\"Q: hi\nA:\", hello\n");
        assert_eq!(
            read(&pairs)?.rows[0].example,
            LmExample::Pair {
                prompt: "Q: hi\nA:".into(),
                completion: " hello".into()
            }
        );
        let chats = file(
            &dir,
            "c.jsonl",
            r#"{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}], "id": 3}"#,
        );
        let LmExample::Chat(turns) = &read(&chats)?.rows[0].example else {
            panic!("a conversation expected");
        };
        assert_eq!(
            (turns[1].role.as_str(), turns[1].content.as_str()),
            ("assistant", "yo")
        );
        let text = file(
            &dir,
            "t.jsonl",
            "{\"text\": \"plain\"}\n{\"text\": \"more\"}\n",
        );
        let rows = read_lm_file(&text, &LmColumns::default(), |i| i == 1)?.rows;
        assert_eq!(
            rows,
            [LmRow {
                example: LmExample::Text("more".into()),
                line: 2
            }]
        );
        Ok(())
    }

    #[test]
    fn bad_conversations_name_their_line() {
        let dir = tempfile::tempdir().unwrap();
        let cases = [
            (r#"{"messages": []}"#, "an empty list"),
            (
                r#"{"messages": [{"role": "user", "content": "hi"}]}"#,
                "the roles user",
            ),
            (r#"{"messages": [{"role": "user"}]}"#, "without `content`"),
            (
                r#"{"messages": [{"role": "user", "content": 3}]}"#,
                "`content` is the number 3",
            ),
            (r#"{"messages": "hi"}"#, "the text \"hi\""),
            (r#"{"prompt": "x"}"#, "a column `completion`"),
        ];
        for (k, (line, wanted)) in cases.iter().enumerate() {
            let ok = r#"{"messages": [{"role": "assistant", "content": "a"}]}"#;
            let ok = if line.contains("prompt") {
                r#"{"prompt": "a", "completion": "b"}"#
            } else {
                ok
            };
            let path = file(&dir, &format!("{k}.jsonl"), &format!("{ok}\n{line}\n"));
            let err = read(&path).unwrap_err().to_string();
            assert!(err.contains(&format!("{k}.jsonl:2:")), "{err}");
            assert!(err.contains(wanted), "{wanted:?} not in {err}");
        }
    }
}
