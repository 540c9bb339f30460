//! Label vocabularies: string labels to class ids and back.

use std::collections::HashMap;
use std::path::Path;

use crate::error::{Error, Result};

/// An ordered set of string labels; a label's id is its position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelSet {
    labels: Vec<String>,
    index: HashMap<String, usize>,
}

impl LabelSet {
    /// A label set in the given order (duplicates are kept once, at their first position).
    pub fn new<I, S>(labels: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut set = LabelSet {
            labels: Vec::new(),
            index: HashMap::new(),
        };
        for label in labels {
            let label = label.into();
            if !set.index.contains_key(&label) {
                set.index.insert(label.clone(), set.labels.len());
                set.labels.push(label);
            }
        }
        set
    }

    /// The tag set of a tagging data set in a stable order: `O` first, then the entity types
    /// sorted by name, each as `B-` then `I-`.
    pub fn from_tags<'a, I>(tags: I) -> Self
    where
        I: IntoIterator<Item = &'a str>,
    {
        let mut types: Vec<&str> = tags
            .into_iter()
            .filter_map(|t| t.get(2..).filter(|_| t.len() > 2))
            .collect();
        types.sort_unstable();
        types.dedup();
        let mut labels = vec!["O".to_string()];
        for ty in types {
            labels.push(format!("B-{ty}"));
            labels.push(format!("I-{ty}"));
        }
        LabelSet::new(labels)
    }

    /// Number of labels.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there are no labels.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The labels in id order.
    pub fn labels(&self) -> &[String] {
        &self.labels
    }

    /// The id of `label`, if known.
    pub fn get(&self, label: &str) -> Option<usize> {
        self.index.get(label).copied()
    }

    /// The id of `label`, or an error naming the file and line it came from.
    pub fn id_at(&self, label: &str, path: &Path, line: usize) -> Result<usize> {
        self.get(label).ok_or_else(|| {
            Error::parse(
                path,
                line,
                format!("a label in {{{}}}", self.labels.join(", ")),
                format!("{label:?}"),
            )
        })
    }

    /// The label with id `id`.
    pub fn name(&self, id: usize) -> Option<&str> {
        self.labels.get(id).map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_sets_are_ordered_and_unknown_labels_name_the_line() {
        let set = LabelSet::from_tags(["I-PER", "O", "B-LOC", "B-PER"]);
        assert_eq!(set.labels(), ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]);
        assert_eq!(set.get("I-PER"), Some(4));
        let err = set.id_at("B-XYZ", Path::new("f.txt"), 7).unwrap_err();
        assert!(
            err.to_string().starts_with("f.txt:7: expected a label in"),
            "{err}"
        );
    }
}
