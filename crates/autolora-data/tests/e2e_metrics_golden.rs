//! E2E metrics against sacreBLEU, NLTK and pycocoevalcap on the committed inputs of
//! `reference/e2e_metrics.json` (written by `reference/gen_e2e_metrics.py`), to 1e-6.
//!
//! NIST is compared with NLTK's `corpus_nist`, which is known to differ from mteval-v13a's
//! NIST (the E2E challenge's script): see `autolora_data::metrics::corpus_nist`.

mod common;

use autolora_data::metrics::{
    Meteor, cider, coco_tokenize, corpus_bleu, corpus_nist, e2e_scores, rouge_l, tokenize_13a,
};
use common::{assert_close, json_close, reference_dir, reference_python};
use serde_json::Value;

const TOL: f64 = 1e-6;

struct Fixture {
    json: Value,
    hyps: Vec<String>,
    refs: Vec<Vec<String>>,
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

fn fixture() -> anyhow::Result<Fixture> {
    let json: Value = serde_json::from_str(&std::fs::read_to_string(
        reference_dir().join("e2e_metrics.json"),
    )?)?;
    let hyps = strings(&json["hypotheses"]);
    let refs = json["references"]
        .as_array()
        .unwrap()
        .iter()
        .map(strings)
        .collect();
    Ok(Fixture { json, hyps, refs })
}

#[test]
fn tokenizers_match_13a_and_ptb() -> anyhow::Result<()> {
    let f = fixture()?;
    for (sentence, tokens) in f.json["tokens_13a"].as_object().unwrap() {
        assert_eq!(
            tokenize_13a(sentence),
            strings(tokens),
            "13a of {sentence:?}"
        );
    }
    for (hyp, ptb) in f.hyps.iter().zip(strings(&f.json["ptb_hypotheses"])) {
        assert_eq!(coco_tokenize(hyp), ptb, "PTB of {hyp:?}");
    }
    for (refs, ptb) in f
        .refs
        .iter()
        .zip(f.json["ptb_references"].as_array().unwrap())
    {
        for (r, p) in refs.iter().zip(strings(ptb)) {
            assert_eq!(coco_tokenize(r), p, "PTB of {r:?}");
        }
    }
    Ok(())
}

#[test]
fn bleu_matches_sacrebleu() -> anyhow::Result<()> {
    let f = fixture()?;
    let bleu = corpus_bleu(&f.hyps, &f.refs, false)?;
    assert_close("BLEU", bleu.score, f.json["bleu"].as_f64().unwrap(), TOL);
    for (i, p) in f.json["bleu_precisions"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
    {
        assert_close(
            &format!("BLEU p{}", i + 1),
            bleu.precisions[i],
            p.as_f64().unwrap(),
            TOL,
        );
    }
    let lower = corpus_bleu(&f.hyps, &f.refs, true)?;
    assert_close(
        "BLEU lowercased",
        lower.score,
        f.json["bleu_lowercase"].as_f64().unwrap(),
        TOL,
    );
    assert!(lower.score > bleu.score, "the fixture has case differences");
    Ok(())
}

#[test]
fn nist_matches_nltk() -> anyhow::Result<()> {
    let f = fixture()?;
    let nist = corpus_nist(&f.hyps, &f.refs, 5, false)?;
    assert_close(
        "NIST (NLTK)",
        nist,
        f.json["nist_nltk"].as_f64().unwrap(),
        TOL,
    );
    Ok(())
}

#[test]
fn rouge_l_and_cider_match_pycocoevalcap() -> anyhow::Result<()> {
    let f = fixture()?;
    // On the Java tokenizer's output: checks the metrics alone.
    let hyps = strings(&f.json["ptb_hypotheses"]);
    let refs: Vec<Vec<String>> = f.json["ptb_references"]
        .as_array()
        .unwrap()
        .iter()
        .map(strings)
        .collect();
    assert_close(
        "ROUGE-L",
        rouge_l(&hyps, &refs)?,
        f.json["rouge_l"].as_f64().unwrap(),
        TOL,
    );
    assert_close(
        "CIDEr",
        cider(&hyps, &refs)?,
        f.json["cider"].as_f64().unwrap(),
        TOL,
    );
    // Through our tokenizer: the whole E2E report.
    let meteor = Meteor::locate();
    let scores = e2e_scores(&f.hyps, &f.refs, meteor.as_ref())?;
    assert_close(
        "report BLEU",
        scores.bleu,
        f.json["bleu"].as_f64().unwrap() / 100.0,
        TOL,
    );
    assert_close(
        "report ROUGE-L",
        scores.rouge_l,
        f.json["rouge_l"].as_f64().unwrap(),
        TOL,
    );
    assert_close(
        "report CIDEr",
        scores.cider,
        f.json["cider"].as_f64().unwrap(),
        TOL,
    );
    match scores.meteor {
        Some(m) => assert_close("METEOR", m, f.json["meteor"].as_f64().unwrap(), TOL),
        None => println!("METEOR unavailable here (java or meteor-1.5.jar missing): not compared"),
    }
    println!("{scores}");
    Ok(())
}

/// The committed fixture is what the script writes (needs the reference venv and Java).
#[test]
fn fixture_is_reproducible() -> anyhow::Result<()> {
    let Some(python) = reference_python() else {
        return Ok(());
    };
    if Meteor::locate().is_none() {
        println!("skipping: java or meteor-1.5.jar missing, pycocoevalcap cannot run");
        return Ok(());
    }
    let out = tempfile::tempdir()?;
    let path = out.path().join("e2e_metrics.json");
    let status = std::process::Command::new(python)
        .arg(reference_dir().join("gen_e2e_metrics.py"))
        .arg(&path)
        .status()?;
    assert!(status.success(), "gen_e2e_metrics.py failed");
    let fresh: Value = serde_json::from_str(&std::fs::read_to_string(&path)?)?;
    let mut committed = fixture()?.json;
    committed["versions"] = fresh["versions"].clone();
    json_close("e2e_metrics.json", &fresh, &committed, 1e-12);
    Ok(())
}
