"""Builds the tiny random BERT and RoBERTa checkpoints under ../fixtures and their reference
outputs from PyPI `transformers` (4.57.1) and `peft` (0.17.1) on `torch` 2.11.0.

Run from anywhere with the project's Python:
    python crates/autolora-models/tests/reference/gen_parity.py

Every folder under fixtures/ is a Hugging Face model directory (config.json + safetensors)
or a PEFT adapter directory, plus `reference.safetensors` holding the inputs and the outputs
the Rust tests must reproduce (eval mode, eager attention, float32). Everything is seeded,
so rerunning rewrites identical files.
"""

import json
import shutil
from pathlib import Path

import torch
from peft import LoraConfig, get_peft_model
from safetensors.torch import save_file
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    BertForTokenClassification,
    BertModel,
    RobertaConfig,
    RobertaForSequenceClassification,
    RobertaForTokenClassification,
)

OUT = Path(__file__).resolve().parent.parent / "fixtures"

COMMON = dict(
    vocab_size=64,
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=37,
    hidden_act="gelu",
    layer_norm_eps=1e-12,
    attn_implementation="eager",
)


def bert_config(**kw):
    return BertConfig(max_position_embeddings=40, type_vocab_size=2, pad_token_id=0, **COMMON, **kw)


def roberta_config(**kw):
    return RobertaConfig(
        max_position_embeddings=42, type_vocab_size=1, pad_token_id=1, bos_token_id=0, eos_token_id=2, **COMMON, **kw
    )


def randomize(model, seed):
    """Replaces the (tiny, near-trivial) default init by O(0.2) values everywhere, layer-norm
    scales around 1, so that every weight visibly matters in the outputs."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=gen)
            if name.endswith("LayerNorm.weight"):
                p.copy_(1.0 + 0.1 * noise)
            else:
                p.copy_(0.2 * noise)


def inputs(pad_id, lengths, seq, seed, with_types):
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, 64, (len(lengths), seq), generator=gen)
    mask = torch.zeros(len(lengths), seq, dtype=torch.long)
    for row, n in enumerate(lengths):
        mask[row, :n] = 1
    ids = torch.where(mask.bool(), ids, torch.full_like(ids, pad_id))
    types = torch.zeros_like(ids)
    if with_types:
        for row, n in enumerate(lengths):
            types[row, n // 2 : n] = 1
    return ids, mask, types


def save_model(model, name, **kw):
    folder = OUT / name
    shutil.rmtree(folder, ignore_errors=True)
    model.save_pretrained(folder, safe_serialization=True, **kw)
    return folder


def run(model, ids, mask, types, labels=None):
    model.eval()
    extra = {} if labels is None else {"labels": labels}
    with torch.no_grad():
        out = model(input_ids=ids, attention_mask=mask, token_type_ids=types, output_hidden_states=True, **extra)
    return out


def save_reference(folder, tensors):
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(folder / "reference.safetensors"))


def token_labels(mask, num_labels, seed):
    gen = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, num_labels, mask.shape, generator=gen)
    return torch.where(mask.bool(), labels, torch.full_like(labels, -100))


def perturb_lora(model, seed):
    """PEFT initialises lora_B at zero (no visible effect); draw non-zero factors and move the
    saved head copy away from the base checkpoint's head, so the references depend on both."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name or "lora_A" in name:
                p.copy_(0.3 * torch.randn(p.shape, generator=gen))
            elif "modules_to_save" in name:
                p.add_(0.1 * torch.randn(p.shape, generator=gen))


def lora_fixture(base, name, ids, mask, types, seed):
    config = LoraConfig(
        r=4,
        lora_alpha=8,
        lora_dropout=0.0,
        target_modules=["query", "value"],
        rank_pattern={"encoder.layer.1.attention.self.value": 2},
        alpha_pattern={"encoder.layer.0.attention.self.query": 16},
        task_type="SEQ_CLS",
    )
    torch.manual_seed(seed)
    peft_model = get_peft_model(base, config)
    perturb_lora(peft_model, seed)
    out = run(peft_model, ids, mask, types)
    folder = OUT / name
    shutil.rmtree(folder, ignore_errors=True)
    peft_model.save_pretrained(folder)
    (folder / "README.md").unlink()  # PEFT's generated model-card template
    save_reference(
        folder,
        dict(
            input_ids=ids,
            attention_mask=mask,
            token_type_ids=types,
            last_hidden_state=out.hidden_states[-1],
            logits=out.logits,
        ),
    )


def bert():
    ids, mask, types = inputs(0, [7, 5, 3], 7, seed=1, with_types=True)

    torch.manual_seed(10)
    base = BertModel(bert_config())
    randomize(base, 10)
    folder = save_model(base, "bert-tiny")
    out = run(base, ids, mask, types)
    save_reference(
        folder,
        dict(
            input_ids=ids,
            attention_mask=mask,
            token_type_ids=types,
            last_hidden_state=out.last_hidden_state,
            pooler_output=out.pooler_output,
        ),
    )

    torch.manual_seed(11)
    seq = BertForSequenceClassification(bert_config(num_labels=3))
    randomize(seq, 11)
    folder = save_model(seq, "bert-tiny-seqcls")
    labels = torch.tensor([2, 0, 1])
    out = run(seq, ids, mask, types, labels)
    save_reference(
        folder,
        dict(
            input_ids=ids,
            attention_mask=mask,
            token_type_ids=types,
            last_hidden_state=out.hidden_states[-1],
            logits=out.logits,
            labels=labels,
            loss=out.loss,
        ),
    )
    lora_fixture(seq, "bert-tiny-seqcls-lora", ids, mask, types, seed=12)

    torch.manual_seed(13)
    reg = BertForSequenceClassification(bert_config(num_labels=1, problem_type="regression"))
    randomize(reg, 13)
    folder = save_model(reg, "bert-tiny-regression")
    labels = torch.tensor([0.5, -1.0, 2.0])
    out = run(reg, ids, mask, types, labels)
    save_reference(
        folder,
        dict(input_ids=ids, attention_mask=mask, token_type_ids=types, logits=out.logits, labels=labels, loss=out.loss),
    )

    torch.manual_seed(14)
    tok = BertForTokenClassification(bert_config(num_labels=5))
    randomize(tok, 14)
    # Sharded on purpose: exercises model.safetensors.index.json.
    folder = save_model(tok, "bert-tiny-tokcls", max_shard_size="40KB")
    labels = token_labels(mask, 5, seed=15)
    out = run(tok, ids, mask, types, labels)
    save_reference(
        folder,
        dict(
            input_ids=ids,
            attention_mask=mask,
            token_type_ids=types,
            last_hidden_state=out.hidden_states[-1],
            logits=out.logits,
            labels=labels,
            loss=out.loss,
        ),
    )


def roberta():
    ids, mask, types = inputs(1, [7, 4, 6], 7, seed=2, with_types=False)

    torch.manual_seed(20)
    seq = RobertaForSequenceClassification(roberta_config(num_labels=3))
    randomize(seq, 20)
    folder = save_model(seq, "roberta-tiny-seqcls")
    labels = torch.tensor([1, 2, 0])
    out = run(seq, ids, mask, types, labels)
    save_reference(
        folder,
        dict(
            input_ids=ids,
            attention_mask=mask,
            token_type_ids=types,
            last_hidden_state=out.hidden_states[-1],
            logits=out.logits,
            labels=labels,
            loss=out.loss,
        ),
    )
    lora_fixture(seq, "roberta-tiny-seqcls-lora", ids, mask, types, seed=21)

    torch.manual_seed(22)
    tok = RobertaForTokenClassification(roberta_config(num_labels=4))
    randomize(tok, 22)
    folder = save_model(tok, "roberta-tiny-tokcls")
    labels = token_labels(mask, 4, seed=23)
    out = run(tok, ids, mask, types, labels)
    save_reference(
        folder,
        dict(
            input_ids=ids,
            attention_mask=mask,
            token_type_ids=types,
            last_hidden_state=out.hidden_states[-1],
            logits=out.logits,
            labels=labels,
            loss=out.loss,
        ),
    )


if __name__ == "__main__":
    torch.set_num_threads(1)
    OUT.mkdir(parents=True, exist_ok=True)
    bert()
    roberta()
    for folder in sorted(OUT.iterdir()):
        size = sum(f.stat().st_size for f in folder.iterdir())
        print(f"{folder.name}: {sorted(f.name for f in folder.iterdir())} ({size} bytes)")
    print(json.dumps({"transformers": __import__("transformers").__version__, "torch": torch.__version__}))
