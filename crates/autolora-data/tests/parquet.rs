//! Parquet files written by pyarrow (`tests/reference/gen_parquet.py`) read exactly as their
//! JSON Lines twins: every row's fields, and the text and tagged files built on them.

mod common;

use std::path::PathBuf;

use autolora_data::records::{Format, Rows};
use autolora_data::tag_files::{TagColumns, read_tagged_file};
use autolora_data::text_files::{TextColumns, read_text_file};
use serde_json::Value;

fn fixture(name: &str) -> PathBuf {
    common::reference_dir().join("parquet").join(name)
}

/// A row as read: its number and its (column, value) pairs.
type Fields = (usize, Vec<(String, Value)>);

/// Every row of a file, columns sorted by name.
fn rows(name: &str) -> anyhow::Result<Vec<Fields>> {
    let mut out = Vec::new();
    for row in Rows::open(&fixture(name))? {
        let row = row?;
        let fields = row
            .columns()
            .iter()
            .map(|c| (c.to_string(), row.get(c).unwrap_or(Value::Null)))
            .collect();
        out.push((row.line, fields));
    }
    Ok(out)
}

#[test]
fn pyarrow_files_hold_the_rows_of_their_json_lines_twins() -> anyhow::Result<()> {
    let classify = rows("classify.jsonl")?;
    assert_eq!(classify.len(), 7);
    // Three row groups (3 + 3 + 1 rows) read as one run of rows.
    assert_eq!(rows("classify.parquet")?, classify);
    assert_eq!(rows("uncompressed.parquet")?, classify);
    let tagged = rows("tagged.jsonl")?;
    assert_eq!(rows("tagged.parquet")?, tagged);
    let tokens = tagged[1].1.iter().find(|(c, _)| c == "tokens");
    assert_eq!(
        tokens.map(|(_, v)| v),
        Some(&serde_json::json!(["maria", "costa", "left"]))
    );
    Ok(())
}

#[test]
fn text_and_tagged_files_read_the_same_from_either_format() -> anyhow::Result<()> {
    let columns = TextColumns::default();
    let from_parquet = read_text_file(&fixture("classify.parquet"), &columns, |i| i != 2)?;
    let from_jsonl = read_text_file(&fixture("classify.jsonl"), &columns, |i| i != 2)?;
    assert_eq!(from_parquet.examples, from_jsonl.examples);
    assert_eq!(from_parquet.examples.len(), 6);
    assert_eq!(
        from_parquet.examples[2].text_b.as_deref(),
        Some("lines\nand tabs\t")
    );
    assert_eq!(from_parquet.class_names(), ["neg", "pos"]);

    let names: Vec<String> = ["O", "B-PER", "I-PER", "B-LOC"].map(String::from).to_vec();
    let by_name = TagColumns::default();
    let by_id = TagColumns {
        tags: "ner_ids".into(),
        ..TagColumns::default()
    };
    for columns in [&by_name, &by_id] {
        let read = |name: &str| {
            let path = fixture(name);
            read_tagged_file(&path, Format::of(&path)?, columns, Some(&names), |_| true)
        };
        let (parquet, jsonl) = (read("tagged.parquet")?, read("tagged.jsonl")?);
        assert_eq!(parquet.sentences, jsonl.sentences);
        assert_eq!(
            parquet.sentences[0].tags,
            ["B-PER", "O", "B-PER", "O", "B-LOC"]
        );
    }
    Ok(())
}

#[test]
fn a_codec_left_out_is_named_with_the_fix() {
    let path = fixture("zstd.parquet");
    let err = Rows::open(&path)
        .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
        .expect_err("zstd is not built in")
        .to_string();
    assert!(err.contains("zstd.parquet"), "{err}");
    assert!(err.contains("snappy"), "{err}");
}

#[test]
fn a_missing_column_lists_the_parquet_columns() {
    let columns = TextColumns {
        text: "sentence".into(),
        ..TextColumns::default()
    };
    let err = read_text_file(&fixture("classify.parquet"), &columns, |_| true)
        .expect_err("no such column")
        .to_string();
    assert!(err.contains("classify.parquet: row 1"), "{err}");
    assert!(err.contains("text_pair"), "{err}");
}

#[test]
fn an_error_in_a_later_row_group_names_the_group_and_its_row() {
    // classify.parquet has row groups of 3, 3 and 1 rows; its 5th row is the 2nd of group 2.
    let columns = TextColumns {
        label: "grade".into(),
        ..TextColumns::default()
    };
    let err = read_text_file(&fixture("classify.parquet"), &columns, |i| i >= 4)
        .expect_err("no such column")
        .to_string();
    assert!(
        err.contains("classify.parquet: row 5 (row group 2 of 3, its row 2)"),
        "{err}"
    );
}
