"""Loads a merged model folder written by `autolora export --merged` with PyPI `transformers`
alone, as the class its config.json names (`LlamaForCausalLM`, `BertForTokenClassification`,
...), in float32 with eager attention, and prints as JSON what loading reported (the
checkpoint keys the class lacks or has that the checkpoint lacks, shape mismatches) and the
logits for the given token ids (one sequence, no padding).

usage: merged_check.py MERGED_DIR ID [ID ...]
"""
import json
import sys

import torch
import transformers

merged_dir = sys.argv[1]
ids = torch.tensor([[int(i) for i in sys.argv[2:]]])
config = transformers.AutoConfig.from_pretrained(merged_dir)
cls = getattr(transformers, config.architectures[0])
model, info = cls.from_pretrained(
    merged_dir, torch_dtype=torch.float32, attn_implementation="eager", output_loading_info=True
)
model.eval()
with torch.no_grad():
    logits = model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits
print(
    json.dumps(
        dict(
            missing=sorted(info["missing_keys"]),
            unexpected=sorted(info["unexpected_keys"]),
            mismatched=[str(m) for m in info["mismatched_keys"]],
            logits=logits[0].reshape(-1).tolist(),
        )
    )
)
