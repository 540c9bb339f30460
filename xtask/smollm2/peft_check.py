"""Loads the adapter of the SmolLM2 run (xtask/smollm2/sentiment.toml) with PyPI `peft` on the same
GGUF file loaded by `transformers` (which dequantizes through the `gguf` package), classifies
Rotten-Tomatoes sentences one at a time and compares its class probabilities with those that
`autolora predict --run` wrote for the same sentences.

    python xtask/smollm2/peft_check.py sentences N OUT.jsonl
        writes the first N snippets without digits as {"text"} rows (the input of predict)
    python xtask/smollm2/peft_check.py compare RUN_DIR INPUT.jsonl OURS.jsonl
        prints the largest probability difference and the label agreement; fails above 1e-4

Sentences with digits are left out: transformers' GGUF tokenizer conversion ignores the file's
`tokenizer.ggml.pre` ("smollm"), which splits numbers into single digits, so only digit-free
text is tokenized the same way by both.
"""

import json
import os
import re
import sys
from pathlib import Path

TOLERANCE = 1e-4
NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


def asset(name):
    cache = Path(os.environ.get("AUTOLORA_CACHE", Path.home() / ".cache" / "autolora"))
    return cache / "assets" / name


def sentences(n, out):
    rows = []
    for line in (asset("rotten-tomatoes") / "movieReviewSnippets_GroundTruth.txt").open(encoding="utf-8"):
        text = line.rstrip("\n").split("\t")[2]
        if not re.search(r"\d", text):
            rows.append({"text": text})
        if len(rows) == n:
            break
    Path(out).write_text("".join(json.dumps(r) + "\n" for r in rows))


def compare(run_dir, inputs, ours_path):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    torch.set_num_threads(2)
    labels = json.loads((Path(run_dir) / "labels.json").read_text())
    base_dir = asset("smollm2-135m")
    tokenizer = AutoTokenizer.from_pretrained(base_dir, gguf_file=NAME)
    base = AutoModelForSequenceClassification.from_pretrained(
        base_dir, gguf_file=NAME, num_labels=len(labels), dtype=torch.float32
    )
    model = PeftModel.from_pretrained(base, Path(run_dir) / "adapter").eval()
    texts = [json.loads(l)["text"] for l in Path(inputs).read_text().splitlines()]
    ours = [json.loads(l) for l in Path(ours_path).read_text().splitlines()]
    assert len(ours) == len(texts), (len(ours), len(texts))
    worst, agree = 0.0, 0
    with torch.no_grad():
        for text, mine in zip(texts, ours):
            ids = torch.tensor([tokenizer(text, add_special_tokens=False)["input_ids"]])
            probs = model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits[0].softmax(-1)
            theirs = {label: probs[i].item() for i, label in enumerate(labels)}
            worst = max(worst, max(abs(theirs[k] - mine["probabilities"][k]) for k in labels))
            agree += max(theirs, key=theirs.get) == mine["label"]
    report = {"sentences": len(texts), "max_prob_diff": worst, "same_label": agree}
    print(json.dumps(report))
    if worst > TOLERANCE:
        sys.exit(f"PEFT's probabilities differ from ours by {worst:.2e} (tolerance {TOLERANCE})")


if __name__ == "__main__":
    if sys.argv[1] == "sentences":
        sentences(int(sys.argv[2]), sys.argv[3])
    else:
        compare(*sys.argv[2:5])
