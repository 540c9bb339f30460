"""Loads an adapter exported by autolora-models into Hugging Face PEFT and writes the logits.

    python check_peft_export.py BASE_MODEL_DIR ADAPTER_DIR INPUTS.safetensors OUT.safetensors [TASK]

TASK is `seq-cls` (default: BASE_MODEL_DIR is a sequence-classification checkpoint) or
`causal-lm` (a causal language model: GPT-2, Llama). INPUTS holds input_ids, attention_mask
and, where the model has segments, token_type_ids; OUT receives `logits` (eval mode, eager
attention, f32).
"""

import sys

import torch
from peft import PeftModel
from safetensors.torch import load_file, save_file
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

base_dir, adapter_dir, inputs_path, out_path = sys.argv[1:5]
task = sys.argv[5] if len(sys.argv) > 5 else "seq-cls"
auto = {"seq-cls": AutoModelForSequenceClassification, "causal-lm": AutoModelForCausalLM}[task]
torch.manual_seed(0)
base = auto.from_pretrained(base_dir, attn_implementation="eager")
model = PeftModel.from_pretrained(base, adapter_dir)
model.eval()
inputs = load_file(inputs_path)
with torch.no_grad():
    extra = {"token_type_ids": inputs["token_type_ids"]} if "token_type_ids" in inputs else {}
    out = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"], **extra)
save_file({"logits": out.logits.contiguous()}, out_path)
