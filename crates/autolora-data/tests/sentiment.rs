//! The Rotten-Tomatoes snippets: the project's fixture and the real file.

use std::path::PathBuf;

use autolora_data::assets;
use autolora_data::example::Label;
use autolora_data::sentiment::{RottenTomatoes, SentimentTask};

fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../datasets/fixtures/rotten_tomatoes")
}

#[test]
fn fixture_reads_with_crlf_and_no_final_newline() -> anyhow::Result<()> {
    let data = RottenTomatoes::read_dir(&fixture_dir())?;
    assert_eq!(data.snippets.len(), 5);
    assert_eq!(
        data.snippets[4].text,
        "It wants to be clever more than it wants to be good."
    );
    assert_eq!(data.snippets[1].score, -3.1);
    let binary = data.split(SentimentTask::Binary);
    assert_eq!(binary.dropped(), 1);
    let all: Vec<_> = [&binary.train, &binary.dev, &binary.test]
        .iter()
        .flat_map(|s| s.examples.iter())
        .map(|e| (e.line, e.label))
        .collect();
    assert_eq!(all.len(), 4);
    for (line, label) in all {
        let expected = if matches!(line, 1 | 4) { 1 } else { 0 };
        assert_eq!(label, Label::Class(expected), "line {line}");
    }
    Ok(())
}

#[test]
fn real_snippets_have_the_documented_sizes() -> anyhow::Result<()> {
    let data = RottenTomatoes::read_dir(&assets::fetch(assets::ROTTEN_TOMATOES)?)?;
    assert_eq!(data.snippets.len(), 10_605);
    let regression = data.split(SentimentTask::Regression);
    let sizes = |s: &autolora_data::sentiment::SentimentSplits| {
        (
            s.train.examples.len(),
            s.dev.examples.len(),
            s.test.examples.len(),
        )
    };
    assert_eq!(sizes(&regression), (8_483, 1_061, 1_061));
    let binary = data.split(SentimentTask::Binary);
    assert_eq!(binary.dropped(), 37);
    assert_eq!(sizes(&binary), (8_457, 1_057, 1_054));
    // The split is a pure function of the file.
    let again = data.split(SentimentTask::Binary);
    assert_eq!(again.dev.examples, binary.dev.examples);
    Ok(())
}
