//! The E2E NLG challenge data (restaurant-domain data-to-text).
//!
//! The official files (`trainset.csv`, `devset.csv`, `testset_w_refs.csv`) are CSV with a
//! header `mr,ref`: a meaning representation such as
//! `name[The Eagle], eatType[coffee shop], food[French]` and one human reference text per row.
//! An MR has several references on consecutive rows; for evaluation they are grouped per MR
//! (in order of first appearance, as the challenge's `measure_scores.py` does), and every row
//! is one training pair.
//!
//! The model input is the MR linearised as `name : The Eagle | eatType : coffee shop | food :
//! French` (attributes in file order), the format of the LoRA paper's E2E experiments.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::records::{Format, Rows};

/// One meaning representation with all its references.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct E2eInstance {
    /// The MR as written in the file.
    pub mr: String,
    /// Its `(attribute, value)` pairs in file order.
    pub attributes: Vec<(String, String)>,
    /// The linearised MR (model input).
    pub input: String,
    /// Reference texts, in file order (empty for an inputs-only file).
    pub references: Vec<String>,
    /// Line of the MR's first row.
    pub line: usize,
}

/// An E2E file, grouped by MR.
#[derive(Debug, Clone)]
pub struct E2eSplit {
    /// The file read.
    pub path: PathBuf,
    /// One entry per distinct MR, in order of first appearance.
    pub instances: Vec<E2eInstance>,
    /// Number of data rows (MR-reference pairs).
    pub rows: usize,
}

impl E2eSplit {
    /// Every (input, reference) pair, one per row: the training data.
    pub fn pairs(&self) -> Vec<(&str, &str)> {
        self.instances
            .iter()
            .flat_map(|i| {
                i.references
                    .iter()
                    .map(move |r| (i.input.as_str(), r.as_str()))
            })
            .collect()
    }
}

/// Parses an MR `attr[value], attr[value], ...`.
pub fn parse_mr(mr: &str) -> std::result::Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    let mut rest = mr.trim();
    while !rest.is_empty() {
        let open = rest
            .find('[')
            .ok_or_else(|| format!("attr[value] at {rest:?}"))?;
        let close = rest[open..]
            .find(']')
            .map(|i| open + i)
            .ok_or_else(|| format!("a closing ']' after {:?}", &rest[..open]))?;
        let key = rest[..open].trim();
        if key.is_empty() {
            return Err(format!("an attribute name before '[' at {rest:?}"));
        }
        out.push((key.to_string(), rest[open + 1..close].trim().to_string()));
        rest = rest[close + 1..].trim_start();
        if let Some(after) = rest.strip_prefix(',') {
            rest = after.trim_start();
        } else if !rest.is_empty() {
            return Err(format!("',' between attributes, found {rest:?}"));
        }
    }
    if out.is_empty() {
        return Err("at least one attr[value]".to_string());
    }
    Ok(out)
}

/// The model input for an MR's attributes.
pub fn linearise(attributes: &[(String, String)]) -> String {
    attributes
        .iter()
        .map(|(k, v)| format!("{k} : {v}"))
        .collect::<Vec<_>>()
        .join(" | ")
}

/// Reads an E2E CSV file (header with `mr` and, except for inputs-only files, `ref`; any case)
/// through the one CSV reader of the user's files ([`Rows`]), so its rules on quotes, ragged
/// rows and encodings are theirs.
pub fn read_e2e(path: &Path) -> Result<E2eSplit> {
    let mut instances: Vec<E2eInstance> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut rows = 0;
    // The header's names of the `mr` and `ref` columns, found on the first row.
    let mut columns: Option<(String, Option<String>)> = None;
    for row in Rows::open_as(path, Format::Csv)? {
        let row = row?;
        let (mr_col, ref_col) = match &columns {
            Some(found) => found,
            None => {
                let named = |name: &str| {
                    row.columns()
                        .into_iter()
                        .find(|c| c.eq_ignore_ascii_case(name))
                        .map(str::to_string)
                };
                let mr = named("mr").ok_or_else(|| {
                    Error::parse(
                        path,
                        1,
                        "a header with an `mr` column",
                        format!("the columns {}", row.columns().join(", ")),
                    )
                })?;
                columns.insert((mr, named("ref")))
            }
        };
        let line = row.line;
        let mr = row.string(path, mr_col)?.trim().to_string();
        let attributes = parse_mr(&mr)
            .map_err(|expected| Error::parse(path, line, expected, format!("MR {mr:?}")))?;
        let reference = match ref_col {
            Some(c) => {
                let r = row.string(path, c)?.trim().to_string();
                if r.is_empty() {
                    return Err(Error::parse(
                        path,
                        line,
                        "a reference text in `ref`",
                        "an empty field",
                    ));
                }
                Some(r)
            }
            None => None,
        };
        rows += 1;
        let slot = *index.entry(mr.clone()).or_insert_with(|| {
            instances.push(E2eInstance {
                input: linearise(&attributes),
                mr,
                attributes,
                references: Vec::new(),
                line,
            });
            instances.len() - 1
        });
        if let Some(r) = reference {
            instances[slot].references.push(r);
        }
    }
    Ok(E2eSplit {
        path: path.to_path_buf(),
        instances,
        rows,
    })
}

/// File names of the official splits in the `e2e` asset folder.
pub const FILES: [(&str, &str); 3] = [
    ("train", "trainset.csv"),
    ("dev", "devset.csv"),
    ("test", "testset_w_refs.csv"),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mrs_parse_and_linearise() {
        let attrs = parse_mr("name[The Eagle], eatType[coffee shop], priceRange[£20-25]").unwrap();
        assert_eq!(attrs[2], ("priceRange".to_string(), "£20-25".to_string()));
        assert_eq!(
            linearise(&attrs),
            "name : The Eagle | eatType : coffee shop | priceRange : £20-25"
        );
        assert!(parse_mr("name[The Eagle").is_err());
        assert!(parse_mr("name[A] food[B]").is_err());
        assert!(parse_mr("").is_err());
    }
}
