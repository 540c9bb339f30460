//! Reading whole text files with errors that name the file and line.

use std::path::Path;

use crate::error::{Error, Result};

/// Reads `path` as UTF-8 text.
///
/// Fails with [`Error::Io`] when the file is missing or unreadable, [`Error::BadUtf8`] (with the
/// line of the first bad byte) when it is not UTF-8, and [`Error::EmptyFile`] when it holds
/// nothing but whitespace; `expected` describes the content for that message.
pub fn read_text(path: &Path, expected: &str) -> Result<String> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let text = match String::from_utf8(bytes) {
        Ok(text) => text,
        Err(e) => {
            let valid = e.utf8_error().valid_up_to();
            let line = 1 + e.as_bytes()[..valid]
                .iter()
                .filter(|&&b| b == b'\n')
                .count();
            return Err(Error::BadUtf8 {
                path: path.to_path_buf(),
                line,
            });
        }
    };
    // A UTF-8 byte-order mark is not data (some Microsoft-made files start with one).
    let text = match text.strip_prefix('\u{feff}') {
        Some(rest) => rest.to_string(),
        None => text,
    };
    if text.trim().is_empty() {
        return Err(Error::EmptyFile {
            path: path.to_path_buf(),
            expected: expected.to_string(),
        });
    }
    Ok(text)
}

/// Splits text into `(line number, line)` pairs, 1-based, accepting LF and CRLF endings.
pub fn numbered_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.split('\n')
        .enumerate()
        .map(|(i, line)| (i + 1, line.strip_suffix('\r').unwrap_or(line)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_line_of_bad_utf8() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.txt");
        std::fs::write(&path, b"ok\nok\nbad \xff here\n").unwrap();
        match read_text(&path, "text") {
            Err(Error::BadUtf8 { line, .. }) => assert_eq!(line, 3),
            other => panic!("expected BadUtf8, got {other:?}"),
        }
    }

    #[test]
    fn empty_and_missing_files_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.txt");
        std::fs::write(&empty, "\n \n").unwrap();
        assert!(matches!(
            read_text(&empty, "rows"),
            Err(Error::EmptyFile { .. })
        ));
        let missing = dir.path().join("missing.txt");
        let err = read_text(&missing, "rows").unwrap_err();
        assert!(matches!(err, Error::Io { .. }));
        assert!(err.to_string().contains("missing.txt"));
    }

    #[test]
    fn crlf_lines_are_stripped() {
        let lines: Vec<_> = numbered_lines("a\r\nb\nc").collect();
        assert_eq!(lines, vec![(1, "a"), (2, "b"), (3, "c")]);
    }
}
