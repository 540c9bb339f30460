//! `cargo xtask own-data`: the user's-own-files path shown on real data. Writes the real assets
//! as a user would bring them (CoNLL-2003 as JSON Lines of tokens and tags; the Rotten-Tomatoes
//! sentences as CSV and as Parquet with string labels; a chat file of the same sentences for
//! SmolLM2-135M-Instruct), runs `autolora run` on each run file of `xtask/own-data/`, and prints
//! the scores each run recorded.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use anyhow::{Context, Result};
use autolora_data::conll::{Conll2003, TaggedFile};
use autolora_data::example::{Label, TextSplit};
use autolora_data::sentiment::{RottenTomatoes, SentimentTask};
use parquet::basic::Compression;
use parquet::data_type::{ByteArray, ByteArrayType};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::parser::parse_message_type;
use serde_json::{Value, json};

use crate::provision;

/// The runs, in order: run file (in `xtask/own-data/`), what it shows.
const RUNS: &[(&str, &str)] = &[
    (
        "tagging.toml",
        "token-classification, CoNLL-2003 as JSON Lines",
    ),
    (
        "sentiment-csv.toml",
        "text-classification, sentences as CSV",
    ),
    (
        "sentiment-parquet.toml",
        "text-classification, the same as Parquet",
    ),
    (
        "chat.toml",
        "causal-lm, conversations on SmolLM2-135M-Instruct (GGUF)",
    ),
];

/// Few steps on small subsets: the whole path in a few minutes.
const SMOKE_OVERRIDES: &[&str] = &[
    "task.train_limit=200",
    "task.eval_limit=40",
    "search.steps=4",
    "train.steps=4",
];

/// The question each chat row asks about its sentence.
const QUESTION: &str = "Is this movie review positive or negative? Answer with one word.";

/// Writes the files into `runs/own-data/data/` and runs every run file (`smoke`: a few steps).
pub fn run(cli: &Path, smoke: bool) -> Result<()> {
    let root = provision::repo_root();
    let data = root.join("runs/own-data/data");
    write_files(&data)?;
    let mut table = Vec::new();
    for (file, what) in RUNS {
        let config = root.join("xtask/own-data").join(file);
        println!("== {what}: {}", config.display());
        let mut cmd = Command::new(cli);
        cmd.current_dir(&root)
            .args(["run", "--config"])
            .arg(&config);
        if smoke {
            for item in SMOKE_OVERRIDES {
                cmd.args(["--set", item]);
            }
            let out = format!(
                "run.out_dir=\"runs/own-data/smoke/{}\"",
                file.trim_end_matches(".toml")
            );
            cmd.args(["--set", &out]);
        }
        provision::run(&mut cmd)?;
        table.push((what, out_dir(&root, &config, smoke)?));
    }
    println!("\nscores (summary.json of each run):");
    for (what, dir) in table {
        let summary: Value = serde_json::from_str(
            &std::fs::read_to_string(dir.join("summary.json"))
                .with_context(|| format!("reading {}", dir.join("summary.json").display()))?,
        )?;
        println!("{what}:");
        for entry in ["autolora", "baseline"] {
            let Some(splits) = summary[entry]["scores"].as_object() else {
                continue;
            };
            let splits: Vec<String> = splits
                .iter()
                .map(|(split, metrics)| {
                    let metrics = metrics.as_object().into_iter().flatten();
                    let values: Vec<String> = metrics
                        .map(|(k, v)| format!("{k} {:.4}", v.as_f64().unwrap_or(f64::NAN)))
                        .collect();
                    format!("{split}: {}", values.join(", "))
                })
                .collect();
            let label = summary[entry]["label"].as_str().unwrap_or(entry);
            println!("  {label:<10} {}", splits.join(" | "));
        }
    }
    Ok(())
}

/// The run directory a run file names (`run.out_dir`), or the smoke run's.
fn out_dir(root: &Path, config: &Path, smoke: bool) -> Result<PathBuf> {
    if smoke {
        let name = config.file_stem().unwrap_or_default().to_string_lossy();
        return Ok(root.join("runs/own-data/smoke").join(name.as_ref()));
    }
    let text = std::fs::read_to_string(config)?;
    let value: toml::Value = toml::from_str(&text)?;
    let dir = value["run"]["out_dir"]
        .as_str()
        .with_context(|| format!("{} sets no run.out_dir", config.display()))?;
    Ok(root.join(dir))
}

/// Every file the run files read, from the cached assets.
pub fn write_files(dir: &Path) -> Result<()> {
    let conll = Conll2003::read(&autolora_data::assets::fetch("conll2003")?)?;
    std::fs::create_dir_all(dir.join("conll"))?;
    for (name, file) in [
        ("train", &conll.train),
        ("dev", &conll.dev),
        ("test", &conll.test),
    ] {
        write_tagged(&dir.join(format!("conll/{name}.jsonl")), file)?;
    }
    let snippets = RottenTomatoes::read_dir(&autolora_data::assets::fetch("rotten-tomatoes")?)?;
    let splits = snippets.split(SentimentTask::Binary);
    std::fs::create_dir_all(dir.join("sentiment"))?;
    std::fs::create_dir_all(dir.join("chat"))?;
    for (name, split) in [
        ("train", &splits.train),
        ("dev", &splits.dev),
        ("test", &splits.test),
    ] {
        let rows = sentences(split)?;
        write_csv(&dir.join(format!("sentiment/{name}.csv")), &rows)?;
        write_parquet(&dir.join(format!("sentiment/{name}.parquet")), &rows)?;
        write_chat(&dir.join(format!("chat/{name}.jsonl")), &rows)?;
    }
    println!("own-data files written to {}", dir.display());
    Ok(())
}

/// (text, label name) of every example of a binary sentiment split.
fn sentences(split: &TextSplit) -> Result<Vec<(String, &'static str)>> {
    split
        .examples
        .iter()
        .map(|e| match e.label {
            Label::Class(c) => Ok((e.text_a.clone(), ["negative", "positive"][c])),
            _ => anyhow::bail!(
                "{}: a sentiment example without a class",
                split.path.display()
            ),
        })
        .collect()
}

fn write_lines(path: &Path, lines: impl Iterator<Item = Value>) -> Result<()> {
    let mut out = BufWriter::new(File::create(path)?);
    for line in lines {
        writeln!(out, "{line}")?;
    }
    out.flush()?;
    Ok(())
}

fn write_tagged(path: &Path, file: &TaggedFile) -> Result<()> {
    write_lines(
        path,
        file.sentences
            .iter()
            .map(|s| json!({"tokens": s.tokens, "tags": s.tags})),
    )
}

fn write_chat(path: &Path, rows: &[(String, &str)]) -> Result<()> {
    write_lines(
        path,
        rows.iter().map(|(text, label)| {
            json!({"messages": [
                {"role": "user", "content": format!("{QUESTION}\n\n{text}")},
                {"role": "assistant", "content": label},
            ]})
        }),
    )
}

fn write_csv(path: &Path, rows: &[(String, &str)]) -> Result<()> {
    let mut out = csv::Writer::from_path(path)?;
    out.write_record(["text", "label"])?;
    for (text, label) in rows {
        out.write_record([text.as_str(), label])?;
    }
    out.flush()?;
    Ok(())
}

/// Two string columns, snappy-compressed, one row group: the layout `datasets` writes.
fn write_parquet(path: &Path, rows: &[(String, &str)]) -> Result<()> {
    let schema = Arc::new(parse_message_type(
        "message sentiment { required binary text (STRING); required binary label (STRING); }",
    )?);
    let properties = Arc::new(
        WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .build(),
    );
    let mut writer = SerializedFileWriter::new(File::create(path)?, schema, properties)?;
    let mut group = writer.next_row_group()?;
    let columns: [Vec<ByteArray>; 2] = [
        rows.iter()
            .map(|(t, _)| ByteArray::from(t.as_str()))
            .collect(),
        rows.iter().map(|(_, l)| ByteArray::from(*l)).collect(),
    ];
    for values in columns {
        let mut column = group.next_column()?.context("the schema has two columns")?;
        column
            .typed::<ByteArrayType>()
            .write_batch(&values, None, None)?;
        column.close()?;
    }
    group.close()?;
    writer.close()?;
    Ok(())
}
