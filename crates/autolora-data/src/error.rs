//! The crate's error type.
//!
//! Every error about user data names the file, the line (1-based) when there is one, what was
//! expected and what was found, so a bad row can be fixed without reading our code.

use std::path::PathBuf;

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong while fetching, reading, tokenizing or scoring data.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be opened, read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A line of a data file does not have the expected shape.
    #[error("{}: expected {expected}, found {found}", at(path, *line, *row_group))]
    Parse {
        /// The data file.
        path: PathBuf,
        /// 1-based line number (for CSV files: the record's first line; for Parquet files
        /// the row's number in the file, counted from 1 through all row groups, as pandas'
        /// and `datasets`' indices count from 0; 0: the file as a whole).
        line: usize,
        /// Parquet files: where the row lies, as (row group, row within it, row groups in
        /// the file), all counted from 1; `None` for other files.
        row_group: Option<(usize, usize, usize)>,
        /// What the format requires at this place.
        expected: String,
        /// What the file holds instead.
        found: String,
    },
    /// A data file holds no data at all.
    #[error("{path}: the file is empty, expected {expected}")]
    EmptyFile {
        /// The data file.
        path: PathBuf,
        /// What the file should hold.
        expected: String,
    },
    /// A data file is not valid UTF-8.
    #[error("{path}:{line}: expected UTF-8 text, found an invalid byte sequence")]
    BadUtf8 {
        /// The data file.
        path: PathBuf,
        /// 1-based line number of the first invalid byte.
        line: usize,
    },
    /// A name that is not in the asset registry.
    #[error("unknown asset {name:?}; known assets: {known}")]
    UnknownAsset {
        /// The name asked for.
        name: String,
        /// The registry's names, comma separated.
        known: String,
    },
    /// The server could not be reached at all (no network, DNS failure, refused connection).
    #[error(
        "cannot reach {url} (offline, or this host is blocked here? fetch on a machine that \
         reaches it and copy its cache folder into AUTOLORA_CACHE): {source}"
    )]
    Offline {
        /// The address asked for.
        url: String,
        /// The transport error.
        #[source]
        source: Box<ureq::Error>,
    },
    /// The server answered, but not with what we needed.
    #[error("download of {url} failed: {source}")]
    Http {
        /// The address asked for.
        url: String,
        /// The HTTP error.
        #[source]
        source: Box<ureq::Error>,
    },
    /// A registry's answer did not hold the file we asked for.
    #[error("{url}: expected {expected}, found {found}")]
    Registry {
        /// The registry address asked.
        url: String,
        /// What the answer should have held.
        expected: String,
        /// What it held instead.
        found: String,
    },
    /// A downloaded archive does not have the pinned or recorded hash.
    #[error(
        "{path}: sha256 mismatch, expected {expected}, found {found} (the file was removed; run the download again)"
    )]
    HashMismatch {
        /// The archive (already deleted when this error is returned).
        path: PathBuf,
        /// The pinned or recorded hash.
        expected: String,
        /// The hash of what was downloaded.
        found: String,
    },
    /// A zip archive could not be read.
    #[error("{path}: {source}")]
    Zip {
        /// The archive.
        path: PathBuf,
        /// The zip error.
        #[source]
        source: zip::result::ZipError,
    },
    /// An archive does not contain a member the registry expects.
    #[error("{archive}: expected a member named {member}, found {found}")]
    MissingMember {
        /// The archive.
        archive: PathBuf,
        /// The member's path (matched as a path suffix).
        member: String,
        /// What matched instead ("none" or the ambiguous candidates).
        found: String,
    },
    /// The `tokenizers` crate rejected a tokenizer file or an input.
    #[error("tokenizer {path}: {source}")]
    Tokenizer {
        /// The tokenizer.json file.
        path: PathBuf,
        /// The tokenizer's error.
        #[source]
        source: tokenizers::Error,
    },
    /// A JSON document could not be parsed.
    #[error("{path}: expected {expected}: {source}")]
    Json {
        /// The file or address.
        path: PathBuf,
        /// What the document should hold.
        expected: String,
        /// The parser's error.
        #[source]
        source: serde_json::Error,
    },
    /// Arguments that do not fit together (lengths, empty inputs, out-of-range settings).
    #[error("{what}: expected {expected}, found {found}")]
    InvalidInput {
        /// What was checked.
        what: String,
        /// What was required.
        expected: String,
        /// What was given.
        found: String,
    },
}

/// `path:line` for text files, `path: row N (row group G of K, its row R)` for Parquet files
/// (which have no lines).
fn at(path: &std::path::Path, line: usize, row_group: Option<(usize, usize, usize)>) -> String {
    let parquet = path.extension().is_some_and(|e| e == "parquet");
    match (parquet, line, row_group) {
        (_, 0, _) => path.display().to_string(),
        (true, row, Some((group, within, groups))) => format!(
            "{}: row {row} (row group {group} of {groups}, its row {within})",
            path.display()
        ),
        (true, row, None) => format!("{}: row {row}", path.display()),
        (false, line, _) => format!("{}:{line}", path.display()),
    }
}

impl Error {
    /// Wraps an I/O error with the path it concerns.
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// A parse error at `path:line` (for a Parquet file: its row `line`, located in its row
    /// group by the file's footer).
    pub(crate) fn parse(
        path: impl Into<PathBuf>,
        line: usize,
        expected: impl Into<String>,
        found: impl Into<String>,
    ) -> Self {
        let path = path.into();
        Error::Parse {
            row_group: crate::records::parquet_row_group(&path, line),
            path,
            line,
            expected: expected.into(),
            found: found.into(),
        }
    }

    /// An argument error.
    pub(crate) fn invalid(
        what: impl Into<String>,
        expected: impl Into<String>,
        found: impl Into<String>,
    ) -> Self {
        Error::InvalidInput {
            what: what.into(),
            expected: expected.into(),
            found: found.into(),
        }
    }
}
