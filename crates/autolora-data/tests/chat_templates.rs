//! Chat templates rendered as transformers renders them, and the assistant tokens trained on
//! as `return_assistant_tokens_mask` marks them (reference: tests/reference/gen_chat_templates.py).

mod common;

use std::path::PathBuf;

use autolora_data::chat::{ChatTemplate, Message};
use autolora_data::lm_encode::LmEncoder;
use autolora_data::lm_files::{LmExample, LmFile, LmRow};
use autolora_data::tokenize::{IGNORE_INDEX, Target};
use serde_json::Value;
use tokenizers::Tokenizer;

fn reference() -> anyhow::Result<Value> {
    let path = common::reference_dir().join("chat_templates.json");
    Ok(serde_json::from_str(&std::fs::read_to_string(path)?)?)
}

fn messages(value: &Value) -> Vec<Message> {
    value
        .as_array()
        .expect("a list of messages")
        .iter()
        .map(|m| Message {
            role: m["role"].as_str().unwrap().to_string(),
            content: m["content"].as_str().unwrap().to_string(),
        })
        .collect()
}

#[test]
fn conversations_render_and_mask_as_transformers_does() -> anyhow::Result<()> {
    let reference = reference()?;
    let tokenizer = Tokenizer::from_file(common::reference_dir().join("tiny-chat/tokenizer.json"))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let (bos, eos) = (
        reference["bos_token"].as_str().unwrap(),
        reference["eos_token"].as_str().unwrap(),
    );
    let cases = reference["cases"].as_array().unwrap();
    let mut masked = 0;
    for case in cases {
        let name = case["template"].as_str().unwrap();
        let conversation = case["conversation"].as_str().unwrap();
        let what = format!("{name} on {conversation}");
        let template = ChatTemplate::new(
            reference["templates"][name].as_str().unwrap(),
            name,
            bos,
            eos,
        )?;
        let turns = messages(&reference["conversations"][conversation]);
        if let Some(error) = case.get("error") {
            let ours = template.render(&turns, false).expect_err(&what).to_string();
            assert!(ours.contains(error.as_str().unwrap()), "{what}: {ours}");
            continue;
        }
        let text = template.render(&turns, false)?;
        assert_eq!(text, case["text"].as_str().unwrap(), "{what}");
        let Some(mask) = case.get("assistant_masks") else {
            continue;
        };
        let encoder = LmEncoder {
            tokenizer: &tokenizer,
            eos: tokenizer.token_to_id(eos).unwrap(),
            max_length: 512,
            template: Some(&template),
        };
        let file = LmFile {
            path: PathBuf::from("chat.jsonl"),
            rows: vec![LmRow {
                example: LmExample::Chat(turns),
                line: 1,
            }],
        };
        let set = encoder.encode_file(&file)?;
        let example = &set.examples[0];
        let ids: Vec<u64> = example.input_ids.iter().map(|&i| u64::from(i)).collect();
        let want_ids: Vec<u64> = serde_json::from_value(case["input_ids"].clone())?;
        assert_eq!(ids, want_ids, "{what}: token ids");
        let Target::Tokens(labels) = &example.target else {
            panic!("token labels expected");
        };
        let ours: Vec<u64> = labels
            .iter()
            .map(|&l| u64::from(l != IGNORE_INDEX))
            .collect();
        let want: Vec<u64> = serde_json::from_value(mask.clone())?;
        assert_eq!(ours, want, "{what}: assistant mask");
        masked += 1;
    }
    assert_eq!(masked, 2, "both generation-block cases compared");
    Ok(())
}
