//! Tokenization with the real MiniLM `tokenizer.json` (fetched into the asset cache).

use autolora_data::assets;
use autolora_data::batch::{BatchConfig, Labels, batches, collate, training_plan};
use autolora_data::conll::Conll2003;
use autolora_data::tokenize::{IGNORE_INDEX, Target, TextTokenizer};

fn tokenizer(max_len: usize) -> anyhow::Result<TextTokenizer> {
    let dir = assets::fetch(assets::MINILM)?;
    Ok(TextTokenizer::from_file(
        &dir.join("tokenizer.json"),
        max_len,
    )?)
}

#[test]
fn baked_in_padding_is_off_and_specials_come_from_the_file() -> anyhow::Result<()> {
    let tok = tokenizer(128)?;
    assert_eq!(tok.pad_id(), 0);
    let e = tok.encode_text("hello world", None)?;
    // [CLS] hello world [SEP]; the shipped file would pad this to 128.
    assert_eq!(e.input_ids, [101, 7592, 2088, 102]);
    assert!(!e.truncated);
    let pair = tok.encode_text("hello", Some("world"))?;
    assert_eq!(pair.input_ids, [101, 7592, 102, 2088, 102]);
    assert_eq!(pair.token_type_ids, [0, 0, 0, 1, 1]);
    Ok(())
}

#[test]
fn truncation_is_counted_and_respects_the_limit() -> anyhow::Result<()> {
    let tok = tokenizer(8)?;
    let long = "one two three four five six seven eight nine ten";
    let e = tok.encode_text(long, Some("and a second sentence here"))?;
    assert!(e.truncated);
    assert_eq!(e.len(), 8);
    assert_eq!(e.input_ids.first(), Some(&101));
    assert_eq!(e.input_ids.last(), Some(&102));
    Ok(())
}

#[test]
fn tags_go_to_the_first_sub_token() -> anyhow::Result<()> {
    let tok = tokenizer(128)?;
    let words: Vec<String> = ["Obama", "visited", "Tegucigalpa", "."]
        .iter()
        .map(|w| w.to_string())
        .collect();
    let e = tok.encode_words(&words, &[7, 0, 1, 0])?;
    assert!(e.cut_tags.is_empty());
    let Target::Tokens(labels) = &e.target else {
        panic!("expected token labels");
    };
    // Every word's label appears exactly once, in order, at its first sub-token.
    let kept: Vec<i64> = labels
        .iter()
        .copied()
        .filter(|&l| l != IGNORE_INDEX)
        .collect();
    assert_eq!(kept, [7, 0, 1, 0]);
    assert_eq!(labels[0], IGNORE_INDEX, "[CLS]");
    assert_eq!(*labels.last().unwrap(), IGNORE_INDEX, "[SEP]");
    assert!(e.len() > 6, "Tegucigalpa splits into several word pieces");
    Ok(())
}

#[test]
fn conll_train_encodes_and_batches() -> anyhow::Result<()> {
    let tok = tokenizer(128)?;
    let data = Conll2003::read(&assets::fetch(assets::CONLL2003)?)?;
    let labels = data.label_set();
    let set = tok.encode_tagged(&data.train.path, &data.train.sentences, &labels)?;
    assert_eq!(set.examples.len(), 14_041);
    println!(
        "CoNLL-2003 train at 128 tokens: {} sentences truncated, {} words lost their tag",
        set.truncated, set.truncated_words
    );
    let plan = training_plan(&set, &BatchConfig::new(32, 0), 0)?;
    let all = batches(&set, &plan, tok.pad_id())?;
    assert_eq!(all.iter().map(|b| b.batch_size).sum::<usize>(), 14_041);
    let b = collate(&set.examples, &plan[0], tok.pad_id())?;
    assert_eq!(b.input_ids.len(), b.batch_size * b.seq_len);
    assert!(matches!(b.labels, Labels::Tokens(ref l) if l.len() == b.input_ids.len()));
    Ok(())
}
