//! Work done after extraction: writing a model's real config, building GLUE's MRPC split.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::path::Path;

use crate::atomic::write as write_atomically;
use crate::error::{Error, Result};
use crate::text::{numbered_lines, read_text};

/// Writes `config.json` into `dir`.
pub fn write_config(dir: &Path, config: &str) -> Result<()> {
    write_atomically(&dir.join("config.json"), config.as_bytes())
}

/// Splits the fields of a tab-separated line, requiring exactly `n` of them.
fn fields<'a>(path: &Path, line_no: usize, line: &'a str, n: usize) -> Result<Vec<&'a str>> {
    let fields: Vec<&str> = line.split('\t').collect();
    if fields.len() != n {
        return Err(Error::parse(
            path,
            line_no,
            format!("{n} tab-separated fields"),
            format!("{} fields", fields.len()),
        ));
    }
    Ok(fields)
}

/// Builds GLUE's MRPC files in `dir` from `msr_paraphrase_train.txt`, `msr_paraphrase_test.txt`
/// and `mrpc_dev_ids.tsv`, exactly as GLUE's `download_glue_data.py` does: the training
/// pairs whose ids are listed go to `dev.tsv`, the rest to `train.tsv` (both keep the Microsoft
/// header), and `test.tsv` gets an `index` column in place of the label.
pub fn mrpc_split(dir: &Path) -> Result<()> {
    let ids_path = dir.join("mrpc_dev_ids.tsv");
    let ids_text = read_text(&ids_path, "MRPC dev ids (id1<TAB>id2)")?;
    let mut dev_ids = HashSet::new();
    for (line_no, line) in numbered_lines(&ids_text) {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let f = fields(&ids_path, line_no, line, 2)?;
        dev_ids.insert((f[0].to_string(), f[1].to_string()));
    }

    let train_path = dir.join("msr_paraphrase_train.txt");
    let text = read_text(&train_path, "MSR paraphrase pairs")?;
    let mut lines = numbered_lines(&text);
    let (_, header) = lines.next().unwrap_or((1, ""));
    let mut train = format!("{header}\n");
    let mut dev = format!("{header}\n");
    for (line_no, line) in lines {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let f = fields(&train_path, line_no, line, 5)?;
        let out = if dev_ids.contains(&(f[1].to_string(), f[2].to_string())) {
            &mut dev
        } else {
            &mut train
        };
        out.push_str(&f.join("\t"));
        out.push('\n');
    }

    let test_path = dir.join("msr_paraphrase_test.txt");
    let text = read_text(&test_path, "MSR paraphrase pairs")?;
    let mut test = String::from("index\t#1 ID\t#2 ID\t#1 String\t#2 String\n");
    for (index, (line_no, line)) in numbered_lines(&text)
        .skip(1)
        .filter(|(_, l)| !l.trim().is_empty())
        .enumerate()
    {
        let f = fields(&test_path, line_no, line.trim(), 5)?;
        // Writing to a String cannot fail.
        let _ = writeln!(test, "{index}\t{}\t{}\t{}\t{}", f[1], f[2], f[3], f[4]);
    }

    write_atomically(&dir.join("train.tsv"), train.as_bytes())?;
    write_atomically(&dir.join("dev.tsv"), dev.as_bytes())?;
    write_atomically(&dir.join("test.tsv"), test.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mrpc_split_follows_the_glue_script() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let d = dir.path();
        let header = "Quality\t#1 ID\t#2 ID\t#1 String\t#2 String";
        std::fs::write(
            d.join("msr_paraphrase_train.txt"),
            format!(
                "\u{feff}{header}\r\n1\t10\t11\tA cat sat.\tA cat was sitting.\r\n0\t20\t21\tIt rained.\tThe sun shone.\r\n"
            ),
        )?;
        std::fs::write(
            d.join("msr_paraphrase_test.txt"),
            format!("{header}\r\n1\t30\t31\tOne.\tUno.\r\n"),
        )?;
        std::fs::write(d.join("mrpc_dev_ids.tsv"), "20\t21\n")?;
        mrpc_split(d)?;
        assert_eq!(
            std::fs::read_to_string(d.join("train.tsv"))?,
            format!("{header}\n1\t10\t11\tA cat sat.\tA cat was sitting.\n")
        );
        assert_eq!(
            std::fs::read_to_string(d.join("dev.tsv"))?,
            format!("{header}\n0\t20\t21\tIt rained.\tThe sun shone.\n")
        );
        assert_eq!(
            std::fs::read_to_string(d.join("test.tsv"))?,
            "index\t#1 ID\t#2 ID\t#1 String\t#2 String\n0\t30\t31\tOne.\tUno.\n"
        );
        Ok(())
    }
}
