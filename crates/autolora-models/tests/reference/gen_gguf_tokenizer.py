"""A tiny byte-level BPE vocabulary as a Qwen2 GGUF file would carry it
(`tokenizer.ggml.pre = "qwen2"`), with the ids PyPI `transformers` (4.57.1) gives through its own
Qwen2 tokenizer built from the same vocabulary and merges (`Qwen2TokenizerFast`, whose split regex
is transformers' `PRETOKENIZE_REGEX`, not ours).

    python crates/autolora-models/tests/reference/gen_gguf_tokenizer.py

Writes ../fixtures/gguf-tokenizer/qwen2.gguf (tokenizer metadata only, no tensors) and
reference.json (each text with its ids, special tokens not added). The vocabulary is trained by
the `tokenizers` package on CORPUS, so that merges span letters, digits, spaces and newlines;
everything is deterministic, so rerunning rewrites identical files.
"""

import json
import tempfile
from pathlib import Path

import gguf
from tokenizers import Tokenizer, models, pre_tokenizers, trainers
from transformers import Qwen2TokenizerFast

OUT = Path(__file__).resolve().parent.parent / "fixtures" / "gguf-tokenizer"

CORPUS = [
    "The year 2024 had 366 days; 1999 had 365.",
    "It's what they'll say: we've done it, I'm sure, they're right, he'd agree.",
    "def add(a, b):\n    return a + b\n\n\nprint(add(12, 345))",
    "Prices rose 12.5% to $1,234,567 in Q3    (up from   9%).",
    "Ünïcödé wörds, naïve café, 東京 2020!\r\n\r\nDone.",
] * 4

TEXTS = [
    "In 2024 the price was 12345 dollars.",
    "It's fine, they'll see: WE'VE won, I'M here.",
    "def f(x):\n    return x  +  1\n\n\n\nend",
    "tabs\tand   spaces   \n  lines\r\n\r\nagain",
    "naïve café 東京 3.14159",
    "<|endoftext|>after the end",
]

SPECIAL = "<|endoftext|>"


def train_vocabulary():
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(
        vocab_size=420,
        min_frequency=2,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS, trainer)
    data = json.loads(tok.to_str())["model"]
    vocab = data["vocab"]
    merges = [m if isinstance(m, str) else " ".join(m) for m in data["merges"]]
    return vocab, merges


def main():
    vocab, merges = train_vocabulary()
    with tempfile.TemporaryDirectory() as tmp:
        vocab_file, merges_file = Path(tmp) / "vocab.json", Path(tmp) / "merges.txt"
        vocab_file.write_text(json.dumps(vocab, ensure_ascii=False))
        merges_file.write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
        theirs = Qwen2TokenizerFast(
            vocab_file=str(vocab_file),
            merges_file=str(merges_file),
            unk_token=None,
            bos_token=None,
            eos_token=SPECIAL,
            pad_token=SPECIAL,
        )
    special_id = theirs.convert_tokens_to_ids(SPECIAL)
    assert special_id == len(vocab), (special_id, len(vocab))
    tokens = [None] * len(vocab)
    for token, i in vocab.items():
        tokens[i] = token
    tokens.append(SPECIAL)
    types = [1] * len(vocab) + [3]

    OUT.mkdir(parents=True, exist_ok=True)
    writer = gguf.GGUFWriter(str(OUT / "qwen2.gguf"), "qwen2")
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("qwen2")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    writer.add_eos_token_id(special_id)
    writer.add_add_bos_token(False)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()

    cases = [
        {"text": t, "ids": theirs(t, add_special_tokens=False)["input_ids"]} for t in TEXTS
    ]
    (OUT / "reference.json").write_text(json.dumps({"cases": cases}, ensure_ascii=False, indent=1) + "\n")
    print(f"{len(tokens)} tokens, {len(merges)} merges, {len(cases)} cases -> {OUT}")


if __name__ == "__main__":
    main()
