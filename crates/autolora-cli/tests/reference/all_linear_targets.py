"""Prints, as JSON, the modules PEFT's `target_modules = "all-linear"` adapts in a model folder,
with the task class's base-model prefix (`bert.`, `transformer.`, `model.`) removed, so they
compare with autolora's module paths.

usage: all_linear_targets.py MODEL_DIR seq-cls|causal-lm
"""
import json
import sys

from peft import LoraConfig, TaskType, get_peft_model
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

model_dir, kind = sys.argv[1], sys.argv[2]
if kind == "seq-cls":
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=2)
    task = TaskType.SEQ_CLS
else:
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    task = TaskType.CAUSAL_LM
peft = get_peft_model(model, LoraConfig(target_modules="all-linear", task_type=task, r=2))
prefix = model.base_model_prefix + "."
names = sorted(n[len(prefix):] if n.startswith(prefix) else n for n in peft.peft_config["default"].target_modules)
print(json.dumps(names))
