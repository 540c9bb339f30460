"""Loads an adapter exported by `autolora` with PyPI `peft` + `transformers` on top of the same
base model (or, with ADAPTER_DIR `none`, a merged model exported by `autolora export --merged`)
and prints the token-classification logits for the given token ids as JSON.

usage: peft_roundtrip.py MODEL_DIR ADAPTER_DIR|none NUM_LABELS ID [ID ...]
"""
import json
import sys

import torch
from peft import PeftModel
from transformers import AutoModelForTokenClassification

model_dir, adapter_dir, num_labels = sys.argv[1], sys.argv[2], int(sys.argv[3])
ids = torch.tensor([[int(i) for i in sys.argv[4:]]])
base = AutoModelForTokenClassification.from_pretrained(model_dir, num_labels=num_labels)
model = (base if adapter_dir == "none" else PeftModel.from_pretrained(base, adapter_dir)).eval()
with torch.no_grad():
    logits = model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits
print(json.dumps(logits[0].tolist()))
