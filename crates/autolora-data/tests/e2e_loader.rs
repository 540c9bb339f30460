//! The E2E loader on the project's fixture files (official CSV layout, project-written text).

use std::path::PathBuf;

use autolora_data::Error;
use autolora_data::e2e::read_e2e;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../datasets/fixtures/e2e")
        .join(name)
}

#[test]
fn references_are_grouped_per_mr() -> anyhow::Result<()> {
    let dev = read_e2e(&fixture("devset.csv"))?;
    assert_eq!(dev.rows, 5);
    assert_eq!(dev.instances.len(), 2);
    assert_eq!(dev.instances[0].references.len(), 3);
    assert_eq!(
        dev.instances[0].input,
        "name : The Copper Kettle | eatType : pub | food : Italian | area : riverside"
    );
    let blue = &dev.instances[1];
    assert_eq!(blue.attributes[2].0, "customer rating");
    assert_eq!(blue.line, 5);
    // CSV quoting: doubled quotes inside a quoted field.
    assert!(blue.references[1].ends_with("prices of \"£20-25\"."));
    assert_eq!(dev.pairs().len(), 5);
    Ok(())
}

#[test]
fn multi_line_references_and_inputs_only_files() -> anyhow::Result<()> {
    let train = read_e2e(&fixture("trainset.csv"))?;
    assert_eq!(train.rows, 3);
    assert!(train.instances[0].references[1].contains('\n'));
    // The record after a two-line field starts on line 5.
    assert_eq!(train.instances[1].line, 5);
    let test = read_e2e(&fixture("testset.csv"))?;
    assert_eq!(test.instances.len(), 2);
    assert!(test.instances.iter().all(|i| i.references.is_empty()));
    Ok(())
}

#[test]
fn bad_input_names_file_line_and_expectation() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, body: &[u8]| {
        let p = dir.path().join(name);
        std::fs::write(&p, body).unwrap();
        p
    };
    let p = write(
        "mr.csv",
        b"mr,ref\n\"name[A], food[B]\",ok\n\"name[A] food[B]\",bad\n",
    );
    let err = read_e2e(&p).unwrap_err().to_string();
    assert!(
        err.contains("mr.csv:3: expected ',' between attributes"),
        "{err}"
    );
    let p = write("cols.csv", b"mr,ref\n\"name[A]\",ok,extra\n");
    let err = read_e2e(&p).unwrap_err().to_string();
    assert!(
        err.contains("cols.csv:2: expected 2 fields, as the header has, found 3 fields"),
        "{err}"
    );
    // An unterminated quote: alone, it would run to the end of the file; before more rows, to
    // the next row's opening quote.
    let p = write("open.csv", b"mr,ref\n\"name[A], food[B],ok\n");
    let err = read_e2e(&p).unwrap_err().to_string();
    assert!(
        err.contains("open.csv:2: expected the quoted field opened on line 2 to be closed, found the end of the file"),
        "{err}"
    );
    let p = write(
        "open2.csv",
        b"mr,ref\n\"name[A]\",ok\n\"name[B], food[C],bad\n\"name[D]\",fine\n\"name[E]\",fine\n",
    );
    let err = read_e2e(&p).unwrap_err().to_string();
    assert!(
        err.contains("open2.csv:3: expected the quoted field opened on line 3"),
        "{err}"
    );
    let p = write("header.csv", b"meaning,text\n\"name[A]\",ok\n");
    let err = read_e2e(&p).unwrap_err().to_string();
    assert!(
        err.contains("header.csv:1: expected a header with an `mr` column"),
        "{err}"
    );
    let p = write("utf8.csv", b"mr,ref\n\"name[A]\",caf\xe9\n");
    assert!(matches!(read_e2e(&p), Err(Error::BadUtf8 { line: 2, .. })));
    let p = write("empty.csv", b"mr,ref\n");
    assert!(matches!(read_e2e(&p), Err(Error::EmptyFile { .. })));
    let p = write("noref.csv", b"mr,ref\n\"name[A]\",\n");
    let err = read_e2e(&p).unwrap_err().to_string();
    assert!(
        err.contains("noref.csv:2: expected a reference text"),
        "{err}"
    );
    assert!(read_e2e(&dir.path().join("missing.csv")).is_err());
}
