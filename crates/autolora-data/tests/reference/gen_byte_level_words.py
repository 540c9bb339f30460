"""Writes tiny-roberta/ and byte_level_words.json: how transformers tokenizes pre-split words
with a byte-level BPE tokenizer (RoBERTa's setup), for tests/tokenize_byte_level.rs.

* tiny-roberta/: a byte-level BPE tokenizer.json laid out as RoBERTa's (`<s>` = 0, `<pad>`,
  `</s>`, `<unk>`, `<mask>`; ByteLevel pre-tokenizer without a prefix space; RobertaProcessing),
  trained on the project-written sentences below, and a tokenizer_config.json that makes
  AutoTokenizer load it as RobertaTokenizerFast.
* byte_level_words.json: per case, the words, the ids of
  `AutoTokenizer.from_pretrained(dir, add_prefix_space=True)(words, is_split_into_words=True)`
  (with `truncation=True, max_length=N` where the case has one), and the labels of
  transformers' token-classification recipe with word i labelled i: first sub-token of each
  word, -100 elsewhere; and, for comparison, the ids of a sentence as plain text with the
  tokenizer as shipped (no prefix space: a text's first word has none).

Run with the project's reference venv (`cargo xtask setup` installs it):

    ~/.cache/autolora/python/torch-2.11.0/bin/python gen_byte_level_words.py
"""

import json
import os
from importlib.metadata import version

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import AutoTokenizer

HERE = os.path.dirname(os.path.abspath(__file__))
TOKENIZER = os.path.join(HERE, "tiny-roberta")
SPECIALS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]

# Training text: capitalised words, punctuation and non-ASCII letters, so that some words are
# single tokens only in their leading-space form ("ĠMüller") and others split into pieces.
CORPUS = [
    "EU rejects German call to boycott British lamb .",
    "Peter Blackburn visited São Paulo and Zürich in May .",
    "Müller scored twice , said the coach of 1. FC Köln .",
    '"We are happy," Zoë Moreau told Reuters in Montréal on Monday.',
    "The naïve café owner in Straße 12 sued Acme Corp (Oslo) — again!",
]

CASES = [
    {"words": ["EU", "rejects", "German", "call", "to", "boycott", "British", "lamb", "."]},
    {"words": ["Müller", "scored", "in", "São", "Paulo", "—", "2:1", "!"]},
    {"words": ['"', "Hello", ",", "Zoë", '"', "(", "AP", ")", "said"]},
    {"words": ["naïve", "café", "Straße", "東京", "Köln", "."]},
    {"words": ["Peter"]},
    {"words": ["Peter", "Blackburn", "visited", "Zürich", "."], "max_length": 6},
]
TEXTS = ["EU rejects German call to boycott British lamb .", "Müller scored in São Paulo!"]


def write_tokenizer():
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=420, special_tokens=SPECIALS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS, trainer)
    tok.post_processor = processors.RobertaProcessing(
        ("</s>", tok.token_to_id("</s>")), ("<s>", tok.token_to_id("<s>")),
        trim_offsets=True, add_prefix_space=False)
    os.makedirs(TOKENIZER, exist_ok=True)
    tok.save(os.path.join(TOKENIZER, "tokenizer.json"))
    config = {
        "tokenizer_class": "RobertaTokenizer",
        "bos_token": "<s>", "eos_token": "</s>", "sep_token": "</s>", "cls_token": "<s>",
        "unk_token": "<unk>", "pad_token": "<pad>", "mask_token": "<mask>",
        "add_prefix_space": False, "model_max_length": 512,
    }
    with open(os.path.join(TOKENIZER, "tokenizer_config.json"), "w") as f:
        json.dump(config, f, indent=1)


def first_sub_token_labels(encoding):
    labels, previous = [], None
    for word in encoding.word_ids():
        labels.append(word if word is not None and word != previous else -100)
        previous = word
    return labels


def main():
    write_tokenizer()
    tok = AutoTokenizer.from_pretrained(TOKENIZER, add_prefix_space=True)
    assert type(tok).__name__ == "RobertaTokenizerFast", type(tok)
    cases = []
    for case in CASES:
        limit = {"truncation": True, "max_length": case["max_length"]} if "max_length" in case else {}
        enc = tok(case["words"], is_split_into_words=True, **limit)
        cases.append({**case, "input_ids": enc["input_ids"],
                      "tokens": tok.convert_ids_to_tokens(enc["input_ids"]),
                      "labels": first_sub_token_labels(enc)})
    plain = AutoTokenizer.from_pretrained(TOKENIZER)
    texts = [{"text": t, "input_ids": plain(t)["input_ids"]} for t in TEXTS]
    out = {
        "versions": {p: version(p) for p in ["transformers", "tokenizers"]},
        "cases": cases,
        "texts": texts,
    }
    with open(os.path.join(HERE, "byte_level_words.json"), "w") as f:
        json.dump(out, f, indent=1, ensure_ascii=False)
        f.write("\n")


if __name__ == "__main__":
    main()
