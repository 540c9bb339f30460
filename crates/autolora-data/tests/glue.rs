//! GLUE loaders on the project's fixture files (official layout, project-written text).

use std::path::PathBuf;

use autolora_data::Error;
use autolora_data::example::{Label, TaskKind};
use autolora_data::glue::{GlueFile, GlueOptions, GlueTask};

fn dir(task: GlueTask) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../datasets/fixtures/glue")
        .join(task.name())
}

fn read(
    task: GlueTask,
    file: GlueFile,
) -> autolora_data::Result<autolora_data::example::TextSplit> {
    task.read(&dir(task), file, GlueOptions::default())
}

#[test]
fn every_task_reads_train_eval_and_test() -> anyhow::Result<()> {
    // (task, train rows, rows per eval file, test rows)
    let expected: [(GlueTask, usize, &[usize], usize); 8] = [
        (GlueTask::Cola, 4, &[2], 2),
        (GlueTask::Sst2, 3, &[2], 1),
        (GlueTask::Mrpc, 2, &[2], 1),
        (GlueTask::Qqp, 2, &[2], 1),
        (GlueTask::Stsb, 2, &[3], 1),
        (GlueTask::Mnli, 3, &[1, 2], 1),
        (GlueTask::Qnli, 2, &[1], 1),
        (GlueTask::Rte, 2, &[1], 1),
    ];
    for (task, train, evals, test) in expected {
        let t = read(task, GlueFile::Train)?;
        assert_eq!(t.examples.len(), train, "{} train", task.name());
        assert!(t.skipped.is_empty());
        for (file, &n) in task.eval_files().iter().zip(evals) {
            assert_eq!(
                read(task, *file)?.examples.len(),
                n,
                "{} {file:?}",
                task.name()
            );
        }
        let t = read(task, GlueFile::Test)?;
        assert_eq!(t.examples.len(), test, "{} test", task.name());
        assert!(t.examples.iter().all(|e| e.label == Label::Unlabeled));
        assert!(
            t.examples
                .iter()
                .all(|e| e.text_b.is_some() == task.is_pair())
        );
    }
    Ok(())
}

#[test]
fn columns_and_labels_land_in_the_right_fields() -> anyhow::Result<()> {
    // CoLA: no header, sentence in column 4, quotes kept as text.
    let cola = read(GlueTask::Cola, GlueFile::Train)?;
    assert_eq!(
        cola.examples[2].text_a,
        "She has \"always\" liked quiet mornings."
    );
    assert_eq!(cola.examples[1].label, Label::Class(0));
    assert_eq!(cola.examples[0].line, 1);
    // MNLI dev has 16 columns; the gold label is the last one.
    let mm = read(GlueTask::Mnli, GlueFile::DevMismatched)?;
    assert_eq!(
        mm.examples[0].text_b.as_deref(),
        Some("The shop never opens.")
    );
    assert_eq!(mm.examples[0].label, Label::Class(0)); // contradiction
    assert_eq!(mm.examples[1].label, Label::Class(2)); // neutral
    // STS-B: regression on the last column.
    let sts = read(GlueTask::Stsb, GlueFile::Dev)?;
    assert_eq!(sts.examples[0].label, Label::Score(3.8));
    assert_eq!(GlueTask::Stsb.kind(), TaskKind::Regression);
    // QQP: question pair and is_duplicate.
    let qqp = read(GlueTask::Qqp, GlueFile::Train)?;
    assert_eq!(qqp.examples[0].text_a, "How do I bake bread at home?");
    assert_eq!(qqp.examples[0].label, Label::Class(1));
    // RTE / QNLI: entailment is class 0.
    let rte = read(GlueTask::Rte, GlueFile::Train)?;
    assert_eq!(rte.examples[1].label, Label::Class(1));
    Ok(())
}

#[test]
fn task_metrics_follow_glue() -> anyhow::Result<()> {
    let scores = GlueTask::Mrpc.score_classes(&[1, 0, 1, 1], &[1, 0, 0, 1])?;
    assert_eq!(scores[0], ("accuracy", 0.75));
    assert!((scores[1].1 - 0.8).abs() < 1e-12);
    assert_eq!(
        GlueTask::Cola.score_classes(&[1, 0], &[1, 0])?[0],
        ("matthews", 1.0)
    );
    assert!(GlueTask::Stsb.score_classes(&[1], &[1]).is_err());
    let sts = GlueTask::Stsb.score_regression(&[1.0, 2.0, 3.0], &[1.5, 2.5, 4.0])?;
    assert_eq!(sts[0].0, "pearson");
    Ok(())
}

fn temp_task_dir(file: &str, body: &[u8]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(file), body).unwrap();
    dir
}

#[test]
fn bad_input_names_file_line_and_expectation() {
    let opts = GlueOptions::default();
    // Wrong column count.
    let d = temp_task_dir(
        "train.tsv",
        b"index\tsentence1\tsentence2\tlabel\n0\ta\tb\tentailment\n1\tonly two\n",
    );
    let err = GlueTask::Rte
        .read(d.path(), GlueFile::Train, opts)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("train.tsv:3: expected 4 tab-separated columns, found 2 columns"),
        "{err}"
    );
    // Lenient mode skips the row and records it.
    let lenient = GlueTask::Rte
        .read(d.path(), GlueFile::Train, GlueOptions { lenient: true })
        .unwrap();
    assert_eq!(lenient.examples.len(), 1);
    assert_eq!(lenient.skipped.len(), 1);
    assert_eq!(lenient.skipped[0].line, 3);
    // Unknown label.
    let d = temp_task_dir("train.tsv", b"sentence\tlabel\ngood\t2\n");
    let err = GlueTask::Sst2
        .read(d.path(), GlueFile::Train, opts)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("train.tsv:2: expected a SST-2 label in {0, 1}, found \"2\""),
        "{err}"
    );
    // Bad UTF-8.
    let d = temp_task_dir("train.tsv", b"sentence\tlabel\nok\t1\nbad \xfe\t0\n");
    let err = GlueTask::Sst2
        .read(d.path(), GlueFile::Train, opts)
        .unwrap_err();
    assert!(matches!(err, Error::BadUtf8 { line: 3, .. }), "{err}");
    // Empty file, header only, missing file.
    let d = temp_task_dir("train.tsv", b"");
    let err = GlueTask::Sst2
        .read(d.path(), GlueFile::Train, opts)
        .unwrap_err();
    assert!(matches!(err, Error::EmptyFile { .. }), "{err}");
    let d = temp_task_dir("train.tsv", b"sentence\tlabel\n");
    let err = GlueTask::Sst2
        .read(d.path(), GlueFile::Train, opts)
        .unwrap_err();
    assert!(matches!(err, Error::EmptyFile { .. }), "{err}");
    let err = GlueTask::Sst2
        .read(d.path(), GlueFile::Dev, opts)
        .unwrap_err()
        .to_string();
    assert!(err.contains("dev.tsv"), "{err}");
    // A bad STS-B score.
    let row = "0\tg\tf\ty\to\ts1\ts2\tA\tB\tfive\n";
    let body = format!(
        "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore\n{row}"
    );
    let d = temp_task_dir("train.tsv", body.as_bytes());
    let err = GlueTask::Stsb
        .read(d.path(), GlueFile::Train, opts)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("train.tsv:2: expected a similarity score"),
        "{err}"
    );
}
