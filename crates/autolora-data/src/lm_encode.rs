//! Causal-LM examples as token ids and labels: the labels are the ids of the tokens trained on
//! and [`IGNORE_INDEX`] elsewhere (the model shifts them by one inside its loss).
//!
//! - A prompt/completion pair is `prompt` (with the tokenizer's own special tokens, e.g.
//!   Llama's BOS) then `completion` and the end-of-text token, tokenized apart, as TRL's
//!   trainer does; only the completion and its end are trained on.
//! - Plain text is the text (with its special tokens) and the end-of-text token, all trained.
//! - A conversation is the chat template's rendering, tokenized without added special tokens
//!   (the template writes them, as `apply_chat_template` assumes); a token is trained on when
//!   its text overlaps an assistant turn, as transformers' `return_assistant_tokens_mask`
//!   marks every token holding a character of a generation block.
//!
//! Examples longer than the maximum length are cut and counted; one whose cut leaves nothing
//! to train on is an error naming its line.

use std::path::Path;

use tokenizers::Tokenizer;

use crate::chat::{ASSISTANT, ChatTemplate};
use crate::error::{Error, Result};
use crate::lm_files::{LmExample, LmFile, LmRow};
use crate::tokenize::{Encoded, EncodedSet, IGNORE_INDEX, Target};

/// An input error of one row, placed at its file and line.
fn at_row(e: Error, path: &Path, line: usize) -> Error {
    match e {
        Error::InvalidInput {
            what,
            expected,
            found,
        } => Error::parse(path, line, expected, format!("{found} ({what})")),
        other => other,
    }
}

/// Tokenizes causal-LM examples.
pub struct LmEncoder<'a> {
    /// The model's tokenizer (its own padding and truncation off).
    pub tokenizer: &'a Tokenizer,
    /// The end-of-text id appended to pairs and texts.
    pub eos: u32,
    /// Tokens per example.
    pub max_length: usize,
    /// The chat template, for conversations.
    pub template: Option<&'a ChatTemplate>,
}

impl LmEncoder<'_> {
    /// Every row of `file`, encoded.
    pub fn encode_file(&self, file: &LmFile) -> Result<EncodedSet> {
        let mut examples = Vec::with_capacity(file.rows.len());
        for row in &file.rows {
            let (ids, labels) = self
                .tokens(&row.example)
                .map_err(|e| at_row(e, &file.path, row.line))?;
            let cut = ids.len() > self.max_length;
            let keep = ids.len().min(self.max_length);
            // The first label is never predicted (nothing precedes it).
            if labels
                .get(1..keep)
                .unwrap_or(&[])
                .iter()
                .all(|&l| l == IGNORE_INDEX)
            {
                return Err(Error::parse(
                    &file.path,
                    row.line,
                    format!(
                        "an example with tokens to train on within task.max_length = {}",
                        self.max_length
                    ),
                    format!(
                        "{} tokens, the first one trained on at position {}",
                        ids.len(),
                        labels
                            .iter()
                            .position(|&l| l != IGNORE_INDEX)
                            .map_or(0, |p| p + 1)
                    ),
                ));
            }
            examples.push(Encoded {
                input_ids: ids[..keep].to_vec(),
                token_type_ids: vec![0; keep],
                target: Target::Tokens(labels[..keep].to_vec()),
                truncated: cut,
                cut_tags: Vec::new(),
            });
        }
        let truncated = examples.iter().filter(|e| e.truncated).count();
        Ok(EncodedSet {
            examples,
            truncated,
            truncated_words: 0,
        })
    }

    /// What an answer to `row` is decoded from, and the answer it is scored against: a pair's
    /// prompt and completion; a conversation up to its last assistant turn and that turn's
    /// content (see [`LmEncoder::prompt`]). Plain text has no prompt: an error naming the file
    /// and line.
    pub fn answer_prompt(&self, path: &Path, row: &LmRow) -> Result<(Vec<u32>, String)> {
        let at = |e: Error| at_row(e, path, row.line);
        match &row.example {
            LmExample::Pair { prompt, completion } => {
                let prompt = LmExample::Pair {
                    prompt: prompt.clone(),
                    completion: String::new(),
                };
                Ok((self.prompt(&prompt).map_err(at)?, completion.clone()))
            }
            LmExample::Chat(messages) => {
                let last = messages
                    .iter()
                    .rposition(|m| m.role == ASSISTANT)
                    .ok_or_else(|| {
                        Error::parse(
                            path,
                            row.line,
                            "a conversation with an assistant turn",
                            "none",
                        )
                    })?;
                let before = LmExample::Chat(messages[..last].to_vec());
                Ok((
                    self.prompt(&before).map_err(at)?,
                    messages[last].content.clone(),
                ))
            }
            LmExample::Text(_) => Err(Error::parse(
                path,
                row.line,
                "a prompt to decode an answer from (prompt/completion or messages)",
                "plain text",
            )),
        }
    }

    /// The ids a model continues from: a pair's prompt or a text (with the tokenizer's special
    /// tokens; a pair's completion is not read), or a conversation rendered with the
    /// generation prompt (the template writes the special tokens).
    pub fn prompt(&self, example: &LmExample) -> Result<Vec<u32>> {
        match example {
            LmExample::Pair { prompt: text, .. } | LmExample::Text(text) => self.ids(text, true),
            LmExample::Chat(messages) => {
                let text = self.template()?.render(messages, true)?;
                self.ids(&text, false)
            }
        }
    }

    /// The chat template a conversation needs.
    fn template(&self) -> Result<&ChatTemplate> {
        self.template.ok_or_else(|| {
            Error::invalid(
                "a conversation (`messages`)",
                "a model with a chat template (tokenizer_config.json's `chat_template`, \
                 chat_template.jinja, or a GGUF file's tokenizer.chat_template)",
                "a model without one",
            )
        })
    }

    /// The encoding of `text`: ids and byte offsets.
    fn encode(&self, text: &str, special: bool) -> Result<tokenizers::Encoding> {
        self.tokenizer
            .encode(text, special)
            .map_err(|e| Error::invalid("tokenizing", "text the tokenizer accepts", e.to_string()))
    }

    fn ids(&self, text: &str, special: bool) -> Result<Vec<u32>> {
        Ok(self.encode(text, special)?.get_ids().to_vec())
    }

    /// An example's ids and labels, before truncation.
    fn tokens(&self, example: &LmExample) -> Result<(Vec<u32>, Vec<i64>)> {
        let trained = |ids: &[u32]| ids.iter().map(|&i| i64::from(i)).collect::<Vec<_>>();
        match example {
            LmExample::Text(text) => {
                let mut ids = self.ids(text, true)?;
                ids.push(self.eos);
                let labels = trained(&ids);
                Ok((ids, labels))
            }
            LmExample::Pair { prompt, completion } => {
                let mut ids = self.ids(prompt, true)?;
                let mut rest = self.ids(completion, false)?;
                rest.push(self.eos);
                let mut labels = vec![IGNORE_INDEX; ids.len()];
                labels.extend(trained(&rest));
                ids.extend(rest);
                Ok((ids, labels))
            }
            LmExample::Chat(messages) => {
                let template = self.template()?;
                let rendered = template.render_with_spans(messages)?;
                let encoding = self.encode(&rendered.text, false)?;
                let ids = encoding.get_ids().to_vec();
                let labels = ids
                    .iter()
                    .zip(encoding.get_offsets())
                    .map(|(&id, &(start, end))| {
                        let inside = rendered
                            .assistant
                            .iter()
                            .any(|span| start < span.end && end > span.start);
                        if inside { i64::from(id) } else { IGNORE_INDEX }
                    })
                    .collect();
                Ok((ids, labels))
            }
        }
    }
}
