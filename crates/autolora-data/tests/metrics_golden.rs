//! Our metrics against scikit-learn, SciPy and seqeval on the committed inputs of
//! `reference/metrics.json` (written by `reference/gen_metrics.py`), to 1e-6.

mod common;

use autolora_data::metrics;
use common::{assert_close, json_close, reference_dir, reference_python};
use serde_json::Value;

const TOL: f64 = 1e-6;

fn fixture() -> anyhow::Result<Value> {
    let text = std::fs::read_to_string(reference_dir().join("metrics.json"))?;
    Ok(serde_json::from_str(&text)?)
}

fn usizes(v: &Value) -> Vec<usize> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as usize)
        .collect()
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

fn tags(v: &Value) -> Vec<Vec<String>> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| {
            s.as_array()
                .unwrap()
                .iter()
                .map(|t| t.as_str().unwrap().to_string())
                .collect()
        })
        .collect()
}

#[test]
fn classification_matches_scikit_learn() -> anyhow::Result<()> {
    let f = fixture()?;
    for case in f["classification"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let (gold, pred) = (usizes(&case["gold"]), usizes(&case["pred"]));
        let ours = metrics::accuracy(&pred, &gold)?;
        assert_close(
            &format!("{name} accuracy"),
            ours,
            case["accuracy"].as_f64().unwrap(),
            TOL,
        );
        let ours = metrics::matthews_corrcoef(&pred, &gold)?;
        assert_close(
            &format!("{name} matthews"),
            ours,
            case["matthews"].as_f64().unwrap(),
            TOL,
        );
        if let Some(reference) = case["f1_pos1"].as_f64() {
            let ours = metrics::f1_binary(&pred, &gold, 1)?;
            assert_close(&format!("{name} f1"), ours, reference, TOL);
        }
    }
    Ok(())
}

#[test]
fn correlations_match_scipy() -> anyhow::Result<()> {
    let f = fixture()?;
    for case in f["regression"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let (x, y) = (floats(&case["x"]), floats(&case["y"]));
        let reference = case["pearson"].as_f64().unwrap();
        assert_close(
            &format!("{name} pearson"),
            metrics::pearson(&x, &y)?,
            reference,
            TOL,
        );
        let reference = case["spearman"].as_f64().unwrap();
        assert_close(
            &format!("{name} spearman"),
            metrics::spearman(&x, &y)?,
            reference,
            TOL,
        );
    }
    Ok(())
}

#[test]
fn entity_scores_match_seqeval() -> anyhow::Result<()> {
    let f = fixture()?;
    for case in f["tagging"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let strict = metrics::entity_scores_in(
            metrics::EntityMode::StrictIob2,
            &tags(&case["pred"]),
            &tags(&case["gold"]),
        )?;
        for (key, ours) in [
            ("precision", strict.overall.precision),
            ("recall", strict.overall.recall),
            ("f1", strict.overall.f1),
        ] {
            let reference = case["strict"][key].as_f64().unwrap();
            assert_close(&format!("{name} strict {key}"), ours, reference, TOL);
        }
        let scores = metrics::entity_scores(&tags(&case["pred"]), &tags(&case["gold"]))?;
        for (key, ours) in [
            ("precision", scores.overall.precision),
            ("recall", scores.overall.recall),
            ("f1", scores.overall.f1),
        ] {
            assert_close(
                &format!("{name} {key}"),
                ours,
                case[key].as_f64().unwrap(),
                TOL,
            );
        }
        let reference = case["per_type"].as_object().unwrap();
        // seqeval reports only types with gold entities.
        for (ty, r) in reference {
            let ours = scores.per_type[ty];
            assert_close(
                &format!("{name} {ty} p"),
                ours.precision,
                r["precision"].as_f64().unwrap(),
                TOL,
            );
            assert_close(
                &format!("{name} {ty} r"),
                ours.recall,
                r["recall"].as_f64().unwrap(),
                TOL,
            );
            assert_close(
                &format!("{name} {ty} f1"),
                ours.f1,
                r["f1"].as_f64().unwrap(),
                TOL,
            );
            assert_eq!(
                ours.gold as u64,
                r["gold"].as_u64().unwrap(),
                "{name} {ty} support"
            );
        }
    }
    Ok(())
}

/// The committed fixture is what the script writes (when the reference venv is installed).
#[test]
fn fixture_is_reproducible() -> anyhow::Result<()> {
    let Some(python) = reference_python() else {
        return Ok(());
    };
    let out = tempfile::tempdir()?;
    let path = out.path().join("metrics.json");
    let status = std::process::Command::new(python)
        .arg(reference_dir().join("gen_metrics.py"))
        .arg(&path)
        .status()?;
    assert!(status.success(), "gen_metrics.py failed");
    let fresh: Value = serde_json::from_str(&std::fs::read_to_string(&path)?)?;
    let mut committed = fixture()?;
    // Versions may legitimately differ; the numbers must not.
    committed["versions"] = fresh["versions"].clone();
    json_close("metrics.json", &fresh, &committed, 1e-12);
    Ok(())
}
