//! Tokenization through the `tokenizers` crate.
//!
//! The tokenizer file comes from the model's folder (its `tokenizer.json`), passed in by the
//! caller; special tokens and the pad id come from it. Shipped tokenizer files may have padding
//! and truncation baked in (MiniLM's pads and truncates to 128): both are turned off here, since
//! batches are padded to their own longest example and truncation is counted explicitly.
//!
//! Word-level tags are aligned to the first sub-token of each word; the other sub-tokens and
//! the special tokens get [`IGNORE_INDEX`], which the loss skips. Pre-split words are encoded
//! as transformers encodes them with `is_split_into_words=True` (and `add_prefix_space=True`
//! for byte-level BPE, which it requires there).

use std::path::{Path, PathBuf};

use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::{Tokenizer, TruncationParams, TruncationStrategy};

use crate::conll::TaggedSentence;
use crate::error::{Error, Result};
use crate::example::{Label, TextExample};
use crate::labels::LabelSet;

/// Label of positions the loss must ignore (PyTorch's `ignore_index` default).
pub const IGNORE_INDEX: i64 = -100;

/// Pad tokens tried, in order, when the tokenizer file has no padding settings.
const PAD_TOKENS: &[&str] = &["[PAD]", "<pad>", "<|padding|>"];

/// The pad id a tokenizer names: its padding settings' id, else the id of a usual pad token
/// (`[PAD]`, `<pad>`, `<|padding|>`). `None` for tokenizers without one (GPT-2's, many
/// Llama files), which transformers' recipes pad with the end-of-text id.
pub fn pad_token(tokenizer: &Tokenizer) -> Option<u32> {
    match tokenizer.get_padding() {
        Some(padding) => Some(padding.pad_id),
        None => PAD_TOKENS.iter().find_map(|t| tokenizer.token_to_id(t)),
    }
}

/// A tokenizer with padding and truncation under this crate's control.
#[derive(Clone)]
pub struct TextTokenizer {
    path: PathBuf,
    /// For sentences and pairs.
    text: Limited,
    /// For pre-split words, where they need another pre-tokenizer (see [`words_pre_tokenizer`]).
    words: Option<Limited>,
    max_len: usize,
    pad_id: u32,
}

/// A tokenizer as is and truncating to the maximum length.
#[derive(Clone)]
struct Limited {
    /// Never truncates: used first, to see whether an example fits.
    full: Tokenizer,
    /// Truncates to `max_len` (longest-first for pairs): used for examples that do not fit.
    truncating: Tokenizer,
}

impl Limited {
    fn new(full: Tokenizer, max_len: usize) -> tokenizers::Result<Self> {
        let mut truncating = full.clone();
        truncating.with_truncation(Some(TruncationParams {
            max_length: max_len,
            strategy: TruncationStrategy::LongestFirst,
            stride: 0,
            ..TruncationParams::default()
        }))?;
        Ok(Limited { full, truncating })
    }
}

/// Byte-level BPE (RoBERTa, GPT-2) reads a word's leading space as part of it (`Ġword`, not
/// `word`, is the form words take in running text), and a pre-split word has none. Hence
/// transformers requires `add_prefix_space=True` for pre-tokenized input there, which turns it
/// on in the pre-tokenizer: every word, the first included, is encoded as if a space preceded
/// it. `None` where words need nothing (WordPiece, or byte-level that already adds the space).
fn words_pre_tokenizer(tokenizer: &Tokenizer) -> Option<PreTokenizerWrapper> {
    match tokenizer.get_pre_tokenizer() {
        Some(PreTokenizerWrapper::ByteLevel(byte_level)) if !byte_level.add_prefix_space => {
            let mut byte_level = *byte_level;
            byte_level.add_prefix_space = true;
            Some(byte_level.into())
        }
        _ => None,
    }
}

impl std::fmt::Debug for TextTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TextTokenizer")
            .field("path", &self.path)
            .field("max_len", &self.max_len)
            .field("pad_id", &self.pad_id)
            .finish()
    }
}

/// What an example becomes after tokenization.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    /// A class id.
    Class(i64),
    /// A regression score.
    Score(f32),
    /// One label per token ([`IGNORE_INDEX`] where the loss must not look).
    Tokens(Vec<i64>),
    /// No gold label.
    None,
}

/// One tokenized example.
#[derive(Debug, Clone, PartialEq)]
pub struct Encoded {
    /// Token ids, special tokens included.
    pub input_ids: Vec<u32>,
    /// Segment ids (0 for the first text, 1 for the second of a pair).
    pub token_type_ids: Vec<u32>,
    /// Gold target.
    pub target: Target,
    /// Whether the example was cut to the maximum length.
    pub truncated: bool,
    /// Tag ids of the words truncation cut (the end of a tagged sentence), in order; empty
    /// when nothing was cut and for untagged examples. Kept so evaluation scores them as
    /// missed, as conlleval and seqeval on the whole sentence do.
    pub cut_tags: Vec<i64>,
}

impl Encoded {
    /// Number of tokens.
    pub fn len(&self) -> usize {
        self.input_ids.len()
    }

    /// Whether there are no tokens.
    pub fn is_empty(&self) -> bool {
        self.input_ids.is_empty()
    }
}

/// A tokenized data set.
#[derive(Debug, Clone, PartialEq)]
pub struct EncodedSet {
    /// The examples, in input order.
    pub examples: Vec<Encoded>,
    /// How many examples were truncated to the maximum length.
    pub truncated: usize,
    /// Words whose tag was lost by truncation (tagging only; excluded from the loss, and
    /// counted so evaluation can report them).
    pub truncated_words: usize,
}

impl TextTokenizer {
    /// Loads `tokenizer.json`, turns its own padding and truncation off, and truncates to
    /// `max_len` tokens (special tokens included). The pad id is the file's (see
    /// [`pad_token`]); a tokenizer without one is an error (build it with
    /// [`TextTokenizer::new`] and the pad id of your choice).
    pub fn from_file(path: &Path, max_len: usize) -> Result<Self> {
        if !path.exists() {
            return Err(Error::io(
                path,
                std::io::Error::new(std::io::ErrorKind::NotFound, "tokenizer file not found"),
            ));
        }
        let full = Tokenizer::from_file(path).map_err(|source| Error::Tokenizer {
            path: path.to_path_buf(),
            source,
        })?;
        let pad_id = pad_token(&full).ok_or_else(|| {
            Error::invalid(
                format!("tokenizer {}", path.display()),
                format!("padding settings or one of the tokens {PAD_TOKENS:?}"),
                "neither (give a pad id to TextTokenizer::new)",
            )
        })?;
        Self::new(full, path, max_len, pad_id)
    }

    /// Wraps `tokenizer` (read from `origin`, named in errors), turns its own padding and
    /// truncation off, truncates to `max_len` tokens and pads batches with `pad_id`.
    pub fn new(mut full: Tokenizer, origin: &Path, max_len: usize, pad_id: u32) -> Result<Self> {
        let tokenizer_error = |source| Error::Tokenizer {
            path: origin.to_path_buf(),
            source,
        };
        if max_len < 4 {
            return Err(Error::invalid(
                "maximum length",
                "at least 4 tokens",
                max_len.to_string(),
            ));
        }
        full.with_padding(None);
        full.with_truncation(None).map_err(tokenizer_error)?;
        let words = match words_pre_tokenizer(&full) {
            Some(pre_tokenizer) => {
                let mut words = full.clone();
                words.with_pre_tokenizer(Some(pre_tokenizer));
                Some(Limited::new(words, max_len).map_err(tokenizer_error)?)
            }
            None => None,
        };
        Ok(TextTokenizer {
            path: origin.to_path_buf(),
            text: Limited::new(full, max_len).map_err(tokenizer_error)?,
            words,
            max_len,
            pad_id,
        })
    }

    /// The id used to pad batches.
    pub fn pad_id(&self) -> u32 {
        self.pad_id
    }

    /// The maximum number of tokens per example.
    pub fn max_len(&self) -> usize {
        self.max_len
    }

    /// The underlying tokenizer (no padding, no truncation).
    pub fn inner(&self) -> &Tokenizer {
        &self.text.full
    }

    fn encode<'s, E>(&self, tokenizer: &Limited, input: E) -> Result<(tokenizers::Encoding, bool)>
    where
        E: Into<tokenizers::EncodeInput<'s>> + Clone,
    {
        let err = |source| Error::Tokenizer {
            path: self.path.clone(),
            source,
        };
        let encoding = tokenizer.full.encode(input.clone(), true).map_err(err)?;
        if encoding.len() <= self.max_len {
            return Ok((encoding, false));
        }
        let encoding = tokenizer.truncating.encode(input, true).map_err(err)?;
        Ok((encoding, true))
    }

    /// Tokenizes a sentence or a sentence pair.
    pub fn encode_text(&self, text_a: &str, text_b: Option<&str>) -> Result<Encoded> {
        let (encoding, truncated) = match text_b {
            Some(b) => self.encode(&self.text, (text_a, b))?,
            None => self.encode(&self.text, text_a)?,
        };
        Ok(Encoded {
            input_ids: encoding.get_ids().to_vec(),
            token_type_ids: encoding.get_type_ids().to_vec(),
            target: Target::None,
            truncated,
            cut_tags: Vec::new(),
        })
    }

    /// Tokenizes pre-split words and aligns one label per word to the first sub-token of each
    /// word; the labels of the words truncation cut go to [`Encoded::cut_tags`].
    pub fn encode_words(&self, words: &[String], word_labels: &[i64]) -> Result<Encoded> {
        if words.len() != word_labels.len() {
            return Err(Error::invalid(
                "tagged sentence",
                format!("one label per word ({} words)", words.len()),
                format!("{} labels", word_labels.len()),
            ));
        }
        let tokenizer = self.words.as_ref().unwrap_or(&self.text);
        let (encoding, truncated) = self.encode(tokenizer, words)?;
        let mut labels = Vec::with_capacity(encoding.len());
        let mut previous = None;
        for &word in encoding.get_word_ids() {
            labels.push(match word {
                Some(w) if previous != Some(w) => word_labels[w as usize],
                _ => IGNORE_INDEX,
            });
            previous = word;
        }
        // Truncation cuts the end: the words after the last one encoded.
        let kept = encoding
            .get_word_ids()
            .iter()
            .flatten()
            .max()
            .map_or(0, |&w| w as usize + 1);
        Ok(Encoded {
            input_ids: encoding.get_ids().to_vec(),
            token_type_ids: encoding.get_type_ids().to_vec(),
            target: Target::Tokens(labels),
            truncated,
            cut_tags: word_labels[kept..].to_vec(),
        })
    }

    /// Tokenizes sentence(-pair) examples.
    pub fn encode_examples(&self, examples: &[TextExample]) -> Result<EncodedSet> {
        let mut out = Vec::with_capacity(examples.len());
        let mut truncated = 0;
        for example in examples {
            let mut encoded = self.encode_text(&example.text_a, example.text_b.as_deref())?;
            encoded.target = match example.label {
                Label::Class(c) => Target::Class(c as i64),
                Label::Score(s) => Target::Score(s),
                Label::Unlabeled => Target::None,
            };
            truncated += usize::from(encoded.truncated);
            out.push(encoded);
        }
        report_truncation(&self.path, truncated, out.len(), self.max_len);
        Ok(EncodedSet {
            examples: out,
            truncated,
            truncated_words: 0,
        })
    }

    /// Tokenizes tagged sentences, mapping tags to ids with `labels` (an unknown tag is an
    /// error naming the sentence's line).
    pub fn encode_tagged(
        &self,
        source: &Path,
        sentences: &[TaggedSentence],
        labels: &LabelSet,
    ) -> Result<EncodedSet> {
        let mut out = Vec::with_capacity(sentences.len());
        let mut truncated = 0;
        let mut truncated_words = 0;
        for sentence in sentences {
            let ids = sentence
                .tags
                .iter()
                .enumerate()
                .map(|(k, tag)| {
                    labels
                        .id_at(tag, source, sentence.line + k)
                        .map(|id| id as i64)
                })
                .collect::<Result<Vec<i64>>>()?;
            let encoded = self.encode_words(&sentence.tokens, &ids)?;
            truncated += usize::from(encoded.truncated);
            truncated_words += encoded.cut_tags.len();
            out.push(encoded);
        }
        report_truncation(&self.path, truncated, out.len(), self.max_len);
        Ok(EncodedSet {
            examples: out,
            truncated,
            truncated_words,
        })
    }
}

fn report_truncation(path: &Path, truncated: usize, total: usize, max_len: usize) {
    if truncated > 0 {
        tracing::warn!(
            tokenizer = %path.display(),
            truncated,
            total,
            max_len,
            "examples truncated to the maximum length"
        );
    }
}
