//! Rows of a data file in the formats people bring their own data in: CSV and TSV (a header
//! row, quoted fields that may span lines; read by the `csv` crate), JSON Lines (one JSON
//! object per line, as `datasets` writes them), Parquet (what the Hugging Face Hub stores;
//! the `parquet` crate's row API, snappy-compressed or uncompressed files) and CoNLL-style
//! column files (one word per line, the tag in the last column, a blank line between
//! sentences; each sentence a row with the lists `tokens` and `tags`). The format follows the
//! file's extension ([`Format::of`]) or is given ([`Rows::open_as`]): CoNLL-2003's own files
//! end in `.txt`.
//!
//! A [`Row`] is a set of named fields ([`serde_json::Value`]s; a CSV field is a string; a
//! Parquet list a JSON list, a struct an object) with the line it starts on (for Parquet the
//! row's 1-based number in the file, row groups counted through; errors name its row group and
//! its row there too), so every later error can name the file and line. Rows are read one at a time: a caller that keeps a subset holds
//! only that subset in memory, whatever the file's size.
//!
//! Bad input is an error naming the file and line: a CSV row with more or fewer fields than
//! the header, a quoted field that is never closed, a JSON line that is not an object, invalid
//! UTF-8, and a file without a single row.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use serde_json::{Map, Value};

use crate::error::{Error, Result};

/// The formats [`Rows::open`] reads, by extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `.csv`: comma-separated, header row.
    Csv,
    /// `.tsv`: tab-separated, header row, quoting as in CSV (what pandas writes).
    Tsv,
    /// `.jsonl` or `.ndjson`: one JSON object per line.
    JsonLines,
    /// `.parquet`.
    Parquet,
    /// `.conll`, `.iob`, `.iob1`, `.iob2`, `.bio` or `.bioes`: a CoNLL-style column file
    /// ([`crate::conll`]), one row per sentence with the columns `tokens` (the first column)
    /// and `tags` (the last).
    Conll,
}

impl Format {
    /// The format of `path`, by its extension.
    pub fn of(path: &Path) -> Result<Format> {
        let extension = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        match extension.as_deref() {
            Some("csv") => Ok(Format::Csv),
            Some("tsv") => Ok(Format::Tsv),
            Some("jsonl" | "ndjson") => Ok(Format::JsonLines),
            Some("parquet") => Ok(Format::Parquet),
            Some("conll" | "iob" | "iob1" | "iob2" | "bio" | "bioes") => Ok(Format::Conll),
            other => Err(Error::invalid(
                format!("data file {}", path.display()),
                "a file ending in .csv, .tsv, .jsonl, .ndjson, .parquet or (CoNLL columns) \
                 .conll, .iob, .iob1, .iob2, .bio, .bioes",
                match other {
                    Some(e) => format!("the extension .{e}"),
                    None => "no extension".to_string(),
                },
            )),
        }
    }
}

/// One row of a data file.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// 1-based line the row starts on.
    pub line: usize,
    fields: Fields,
}

#[derive(Debug, Clone, PartialEq)]
enum Fields {
    /// A CSV or TSV record and its file's header.
    Table {
        header: Rc<[String]>,
        values: Vec<String>,
    },
    /// A JSON Lines object.
    Object(Map<String, Value>),
}

impl Row {
    /// The field `column`, if the row has it (a CSV field as a string).
    pub fn get(&self, column: &str) -> Option<Value> {
        match &self.fields {
            Fields::Table { header, values } => header
                .iter()
                .position(|h| h == column)
                .map(|i| Value::String(values[i].clone())),
            Fields::Object(map) => map.get(column).cloned(),
        }
    }

    /// The field `column`, or an error at the row's line listing the columns it has.
    pub fn require(&self, path: &Path, column: &str) -> Result<Value> {
        self.get(column).ok_or_else(|| {
            Error::parse(
                path,
                self.line,
                format!("a column `{column}`"),
                format!("the columns {}", self.columns().join(", ")),
            )
        })
    }

    /// The string in `column`, or an error naming what the column holds instead.
    pub fn string(&self, path: &Path, column: &str) -> Result<String> {
        match self.require(path, column)? {
            Value::String(s) => Ok(s),
            other => Err(Error::parse(
                path,
                self.line,
                format!("a string in `{column}`"),
                describe(&other),
            )),
        }
    }

    /// The row's column names: a CSV header's in its order, a JSON object's alphabetically.
    pub fn columns(&self) -> Vec<&str> {
        match &self.fields {
            Fields::Table { header, .. } => header.iter().map(String::as_str).collect(),
            Fields::Object(map) => map.keys().map(String::as_str).collect(),
        }
    }
}

/// The rows of one file, in file order; see the module docs.
pub struct Rows {
    path: PathBuf,
    source: Source,
    rows: usize,
    done: bool,
}

enum Source {
    Table {
        reader: csv::StringRecordsIntoIter<File>,
        header: Rc<[String]>,
    },
    Lines {
        reader: BufReader<File>,
        line: usize,
    },
    Parquet {
        rows: parquet::record::reader::RowIter<'static>,
        row: usize,
    },
    Columns(crate::conll::ColumnSentences),
}

impl Rows {
    /// Opens `path` in the format of its extension ([`Format::of`]).
    pub fn open(path: &Path) -> Result<Rows> {
        Self::open_as(path, Format::of(path)?)
    }

    /// Opens `path` as a `format` file, whatever its extension.
    pub fn open_as(path: &Path, format: Format) -> Result<Rows> {
        let source = match format {
            Format::Csv | Format::Tsv => {
                let delimiter = if format == Format::Csv { b',' } else { b'\t' };
                check_quotes(path, delimiter)?;
                let file = File::open(path).map_err(|e| Error::io(path, e))?;
                let mut reader = csv::ReaderBuilder::new()
                    .delimiter(delimiter)
                    .has_headers(true)
                    .flexible(true)
                    .from_reader(file);
                let header: Rc<[String]> = reader
                    .headers()
                    .map_err(|e| csv_error(path, e))?
                    .iter()
                    .map(|h| h.trim().to_string())
                    .collect();
                if header.iter().all(String::is_empty) {
                    return Err(Error::EmptyFile {
                        path: path.to_path_buf(),
                        expected: "a header row naming the columns, then one row per example"
                            .into(),
                    });
                }
                if let Some(dup) = header
                    .iter()
                    .enumerate()
                    .find(|(i, h)| header[..*i].contains(h))
                {
                    return Err(Error::parse(
                        path,
                        1,
                        "a header naming each column once",
                        format!("the column {:?} twice", dup.1),
                    ));
                }
                Source::Table {
                    reader: reader.into_records(),
                    header,
                }
            }
            Format::JsonLines => Source::Lines {
                reader: BufReader::new(File::open(path).map_err(|e| Error::io(path, e))?),
                line: 0,
            },
            Format::Parquet => {
                let file = File::open(path).map_err(|e| Error::io(path, e))?;
                let reader = parquet::file::serialized_reader::SerializedFileReader::new(file)
                    .map_err(|e| parquet_error(path, 0, e))?;
                Source::Parquet {
                    rows: reader.into_iter(),
                    row: 0,
                }
            }
            Format::Conll => Source::Columns(crate::conll::ColumnSentences::open(path, None)?),
        };
        Ok(Rows {
            path: path.to_path_buf(),
            source,
            rows: 0,
            done: false,
        })
    }

    fn next_row(&mut self) -> Result<Option<Row>> {
        let path = &self.path;
        match &mut self.source {
            Source::Table { reader, header } => {
                let Some(record) = reader.next() else {
                    return Ok(None);
                };
                let record = record.map_err(|e| csv_error(path, e))?;
                let line = record.position().map_or(0, |p| p.line() as usize);
                if record.len() != header.len() {
                    return Err(Error::parse(
                        path,
                        line,
                        format!("{} fields, as the header has", header.len()),
                        format!("{} fields", record.len()),
                    ));
                }
                Ok(Some(Row {
                    line,
                    fields: Fields::Table {
                        header: header.clone(),
                        values: record.iter().map(str::to_string).collect(),
                    },
                }))
            }
            Source::Parquet { rows, row } => {
                let Some(record) = rows.next() else {
                    return Ok(None);
                };
                *row += 1;
                let record = record.map_err(|e| parquet_error(path, *row, e))?;
                let map = record
                    .get_column_iter()
                    .map(|(name, field)| (name.clone(), parquet_value(field)))
                    .collect();
                Ok(Some(Row {
                    line: *row,
                    fields: Fields::Object(map),
                }))
            }
            Source::Columns(sentences) => {
                let Some(sentence) = sentences.next().transpose()? else {
                    return Ok(None);
                };
                let list = |items: Vec<String>| {
                    Value::Array(items.into_iter().map(Value::String).collect())
                };
                let mut map = Map::new();
                map.insert("tokens".into(), list(sentence.tokens));
                map.insert("tags".into(), list(sentence.tags));
                Ok(Some(Row {
                    line: sentence.line,
                    fields: Fields::Object(map),
                }))
            }
            Source::Lines { reader, line } => loop {
                let mut bytes = Vec::new();
                if reader
                    .read_until(b'\n', &mut bytes)
                    .map_err(|e| Error::io(path.as_path(), e))?
                    == 0
                {
                    return Ok(None);
                }
                *line += 1;
                let text = String::from_utf8(bytes).map_err(|_| Error::BadUtf8 {
                    path: path.clone(),
                    line: *line,
                })?;
                let text = match *line {
                    1 => text.trim_start_matches('\u{feff}'),
                    _ => text.as_str(),
                };
                if text.trim().is_empty() {
                    continue;
                }
                let value: Value = serde_json::from_str(text).map_err(|e| {
                    Error::parse(path, *line, "a JSON object", format!("invalid JSON ({e})"))
                })?;
                let Value::Object(map) = value else {
                    return Err(Error::parse(path, *line, "a JSON object", describe(&value)));
                };
                return Ok(Some(Row {
                    line: *line,
                    fields: Fields::Object(map),
                }));
            },
        }
    }
}

impl Iterator for Rows {
    type Item = Result<Row>;

    /// The next row; after the last, an [`Error::EmptyFile`] if there was none.
    fn next(&mut self) -> Option<Result<Row>> {
        if self.done {
            return None;
        }
        match self.next_row() {
            Ok(Some(row)) => {
                self.rows += 1;
                Some(Ok(row))
            }
            Ok(None) => {
                self.done = true;
                (self.rows == 0).then(|| {
                    Err(Error::EmptyFile {
                        path: self.path.clone(),
                        expected: "at least one row".into(),
                    })
                })
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

/// How many rows the `format` file `path` has (every row is read and checked).
pub fn count(path: &Path, format: Format) -> Result<usize> {
    let mut rows = 0;
    for row in Rows::open_as(path, format)? {
        row?;
        rows += 1;
    }
    Ok(rows)
}

/// A JSON value in words, for "found ..." in an error.
pub fn describe(value: &Value) -> String {
    let shown = |v: &Value| {
        let text = v.to_string();
        match text.char_indices().nth(40) {
            Some((cut, _)) => format!("{}...", &text[..cut]),
            None => text,
        }
    };
    match value {
        Value::Null => "null".into(),
        Value::Bool(b) => format!("the boolean {b}"),
        Value::Number(n) => format!("the number {n}"),
        Value::String(_) => format!("the string {}", shown(value)),
        Value::Array(_) => format!("the list {}", shown(value)),
        Value::Object(_) => format!("the object {}", shown(value)),
    }
}

/// A Parquet value as JSON: numbers, strings and booleans as themselves, lists as lists,
/// structs and maps as objects, anything else (dates, bytes, decimals) as its text.
fn parquet_value(field: &parquet::record::Field) -> Value {
    use parquet::record::Field;
    match field {
        Field::Null => Value::Null,
        Field::Bool(b) => Value::Bool(*b),
        Field::Byte(n) => Value::from(*n),
        Field::Short(n) => Value::from(*n),
        Field::Int(n) => Value::from(*n),
        Field::Long(n) => Value::from(*n),
        Field::UByte(n) => Value::from(*n),
        Field::UShort(n) => Value::from(*n),
        Field::UInt(n) => Value::from(*n),
        Field::ULong(n) => Value::from(*n),
        Field::Float(x) => Value::from(*x),
        Field::Double(x) => Value::from(*x),
        Field::Str(s) => Value::String(s.clone()),
        Field::ListInternal(list) => {
            Value::Array(list.elements().iter().map(parquet_value).collect())
        }
        Field::Group(row) => Value::Object(
            row.get_column_iter()
                .map(|(name, field)| (name.clone(), parquet_value(field)))
                .collect(),
        ),
        Field::MapInternal(map) => Value::Object(
            map.entries()
                .iter()
                .map(|(key, value)| {
                    (
                        key.to_string().trim_matches('"').to_string(),
                        parquet_value(value),
                    )
                })
                .collect(),
        ),
        other => Value::String(other.to_string()),
    }
}

/// Where row `row` (1-based, counted through the file) of the Parquet file `path` lies: its
/// row group, its row within that group (both from 1) and the number of row groups. `None`
/// for other files, for row 0 (the file as a whole) and when the footer cannot be read.
pub(crate) fn parquet_row_group(path: &Path, row: usize) -> Option<(usize, usize, usize)> {
    use parquet::file::reader::FileReader;
    if row == 0 || Format::of(path).ok()? != Format::Parquet {
        return None;
    }
    let reader =
        parquet::file::serialized_reader::SerializedFileReader::new(File::open(path).ok()?).ok()?;
    let groups = reader.metadata().row_groups();
    let mut before = 0;
    for (index, group) in groups.iter().enumerate() {
        let rows = usize::try_from(group.num_rows()).ok()?;
        if row <= before + rows {
            return Some((index + 1, row - before, groups.len()));
        }
        before += rows;
    }
    None
}

/// A Parquet error at row `row` (0: the file's metadata).
fn parquet_error(path: &Path, row: usize, e: parquet::errors::ParquetError) -> Error {
    let found = e.to_string();
    let expected = if found.contains("Disabled feature") {
        "a Parquet file compressed with snappy, or not at all (what pyarrow and `datasets` \
         write by default); rewrite it with pyarrow's `compression=\"snappy\"`"
    } else {
        "a well-formed Parquet file"
    };
    Error::parse(path, row, expected, found)
}

fn csv_error(path: &Path, e: csv::Error) -> Error {
    let line = e.position().map_or(0, |p| p.line() as usize);
    match e.kind() {
        csv::ErrorKind::Utf8 { .. } => Error::BadUtf8 {
            path: path.to_path_buf(),
            line,
        },
        _ => Error::parse(path, line, "well-formed CSV", e.to_string()),
    }
}

/// Fails on a quoted field that is never closed. The `csv` crate reads one leniently to the
/// end of the file (or to the next quote, reporting a later line): a quoted field must end
/// with a quote followed by the delimiter, a line break or the end of the file. Quoted fields
/// may span lines; `""` inside one is a literal quote. Streams the file byte by byte.
pub fn check_quotes(path: &Path, delimiter: u8) -> Result<()> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let mut bytes = BufReader::new(file).bytes().peekable();
    let next = |bytes: &mut std::iter::Peekable<std::io::Bytes<BufReader<File>>>| {
        bytes.next().transpose().map_err(|e| Error::io(path, e))
    };
    let unterminated = |start: usize, found: String| {
        Error::parse(
            path,
            start,
            format!("the quoted field opened on line {start} to be closed"),
            found,
        )
    };
    let (mut line, mut at_field_start) = (1, true);
    while let Some(b) = next(&mut bytes)? {
        match b {
            b'"' if at_field_start => {
                let field_start = line;
                loop {
                    match next(&mut bytes)? {
                        None => {
                            return Err(unterminated(field_start, "the end of the file".into()));
                        }
                        Some(b'"') => match bytes.peek() {
                            Some(Ok(b'"')) => {
                                next(&mut bytes)?;
                            }
                            _ => break,
                        },
                        Some(b'\n') => line += 1,
                        Some(_) => {}
                    }
                }
                match bytes.peek().and_then(|b| b.as_ref().ok()).copied() {
                    None | Some(b'\n' | b'\r') => {}
                    Some(c) if c == delimiter => {}
                    Some(c) => {
                        return Err(unterminated(
                            field_start,
                            format!("a quote on line {line} followed by {:?}", c as char),
                        ));
                    }
                }
                at_field_start = false;
            }
            b'\n' => {
                line += 1;
                at_field_start = true;
            }
            b if b == delimiter => at_field_start = true,
            b'\r' => {}
            _ => at_field_start = false,
        }
    }
    Ok(())
}

/// Writes `text` to `dir/name`: the fixture files of this crate's unit tests.
#[cfg(test)]
pub(crate) fn test_file(dir: &tempfile::TempDir, name: &str, text: &str) -> PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[cfg(test)]
mod tests {
    use super::*;

    use super::test_file as file;

    fn read(path: &Path) -> Result<Vec<Row>> {
        Rows::open(path)?.collect()
    }

    #[test]
    fn csv_tsv_and_json_lines_give_the_same_rows() -> Result<()> {
        let dir = tempfile::tempdir().unwrap();
        let csv = file(
            &dir,
            "a.csv",
            "\u{feff}text,label\n\"a, quoted\nfield\",pos\nplain,neg\n",
        );
        let tsv = file(
            &dir,
            "a.tsv",
            "text\tlabel\n\"a, quoted\nfield\"\tpos\nplain\tneg\n",
        );
        let jsonl = file(
            &dir,
            "a.jsonl",
            "{\"text\": \"a, quoted\\nfield\", \"label\": \"pos\"}\n\n{\"text\": \"plain\", \"label\": \"neg\"}\n",
        );
        for path in [&csv, &tsv, &jsonl] {
            let rows = read(path)?;
            assert_eq!(rows.len(), 2, "{}", path.display());
            assert_eq!(rows[0].get("text"), Some(Value::from("a, quoted\nfield")));
            assert_eq!(rows[1].get("label"), Some(Value::from("neg")));
            assert_eq!(rows[0].get("missing"), None);
            let mut columns = rows[0].columns();
            columns.sort_unstable();
            assert_eq!(columns, ["label", "text"]);
        }
        // Lines are where rows start (the quoted field spans lines 2-3; JSON skips a blank).
        assert_eq!(read(&csv)?[1].line, 4);
        assert_eq!(read(&jsonl)?[1].line, 3);
        Ok(())
    }

    #[test]
    fn bad_input_names_the_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let err = |name: &str, text: &str| {
            let path = file(&dir, name, text);
            let e = read(&path).unwrap_err().to_string();
            let shown = path.display().to_string();
            assert!(e.starts_with(&shown), "{e}");
            e[shown.len()..].to_string()
        };
        let e = err("ragged.csv", "text,label\na,b\nc,d,e\n");
        assert!(e.starts_with(":3: expected 2 fields"), "{e}");
        let e = err("quote.csv", "text,label\na,b\n\"open,b\nc,d\n");
        assert!(
            e.starts_with(":3: expected the quoted field opened on line 3"),
            "{e}"
        );
        let e = err("quote.tsv", "text\tlabel\n\"x\"y\tb\n");
        assert!(e.contains("followed by 'y'"), "{e}");
        let e = err("array.jsonl", "{\"text\": \"a\"}\n[1, 2]\n");
        assert!(
            e.starts_with(":2: expected a JSON object, found the list [1,2]"),
            "{e}"
        );
        let e = err("broken.jsonl", "{\"text\": \"a\"\n");
        assert!(
            e.starts_with(":1: expected a JSON object, found invalid JSON"),
            "{e}"
        );
        let e = err("empty.jsonl", "\n \n");
        assert!(e.contains("the file is empty"), "{e}");
        let e = err("header-only.csv", "text,label\n");
        assert!(e.contains("the file is empty"), "{e}");
        let e = err("twice.csv", "text,text\na,b\n");
        assert!(e.contains("the column \"text\" twice"), "{e}");
        let path = dir.path().join("latin1.jsonl");
        std::fs::write(&path, b"{\"text\": \"a\"}\n{\"text\": \"caf\xe9\"}\n").unwrap();
        let e = read(&path).unwrap_err().to_string();
        assert!(
            e.ends_with(":2: expected UTF-8 text, found an invalid byte sequence"),
            "{e}"
        );
        let path = dir.path().join("latin1.csv");
        std::fs::write(&path, b"text\na\ncaf\xe9\n").unwrap();
        let e = read(&path).unwrap_err().to_string();
        assert!(
            e.ends_with(":3: expected UTF-8 text, found an invalid byte sequence"),
            "{e}"
        );
        let e = Format::of(Path::new("data.xlsx")).unwrap_err().to_string();
        assert!(e.contains("found the extension .xlsx"), "{e}");
    }
}
