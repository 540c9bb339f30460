#!/usr/bin/env python3
"""The PyTorch side of `cargo xtask bench`: the same steps as `autolora bench`, in PyTorch eager.

Modes (one per process, so each one's peak RSS is its own):

* ``plain``: one LoRA training step with Hugging Face ``transformers``
  (``BertForTokenClassification``) and ``peft`` (r = 8, alpha 16, dropout 0.1 on query and
  value, the classifier trained too), AdamW.
* ``fd``: one AutoLoRA search step the way the authors' code takes it: deep copies of the whole
  model state (frozen weights included) and of the inner optimizer's state, an inner Adam step
  on a training batch, validation gradients for the selection logits and the LoRA weights, the
  finite difference at w' +- eps v on the same training batch (eps = 0.01 / ||v||, no
  learning-rate factor), an outer Adam step on the logits, roll back, redo the inner step.
  The selective LoRA layer (softmax gate over k = 8 rank-1 components) is written here.
* ``fd-norollback``: the same without the snapshot, roll-back and redo.
* ``matmul``: this CPU's f32 matmul throughput through torch (the floor of the report).

The input is random token ids of shape batch x seq, all real tokens (attention mask all ones),
random labels for 9 classes on every token, drawn from ``torch.manual_seed(seed)`` in the same
order as ``autolora bench`` draws them. Prints one JSON object with the same fields as
``autolora bench``.
"""

import argparse
import copy
import json
import math
import os
import statistics
import sys
import time

import torch
from torch import nn


def rss_mib():
    """(VmRSS, VmHWM) of this process in MiB, from /proc/self/status."""
    values = {}
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(rest.split()[0]) / 1024.0
    return values.get("VmRSS", float("nan")), values.get("VmHWM", float("nan"))


def random_batch(vocab, batch, seq, labels):
    """Token ids in [1000, vocab) (ordinary word pieces; from 0 in vocabularies of 2000 or
    fewer), all attended, a label per token."""
    low = 1000 if vocab > 2000 else 0
    ids = torch.randint(low, vocab, (batch, seq), dtype=torch.long)
    label = torch.randint(0, labels, (batch, seq), dtype=torch.long)
    return {
        "input_ids": ids,
        "attention_mask": torch.ones_like(ids),
        "token_type_ids": torch.zeros_like(ids),
        "labels": label,
    }


def load_bert(model_dir, labels, attention):
    """BertForTokenClassification with the folder's config.json and model.safetensors weights
    (the classifier is freshly initialised)."""
    from safetensors.torch import load_file
    from transformers import AutoModelForTokenClassification, BertConfig

    config = BertConfig.from_json_file(os.path.join(model_dir, "config.json"))
    config.num_labels = labels
    model = AutoModelForTokenClassification.from_config(config, attn_implementation=attention)
    state = load_file(os.path.join(model_dir, "model.safetensors"))
    state = {k[len("bert."):] if k.startswith("bert.") else k: v for k, v in state.items()}
    missing, _unexpected = model.bert.load_state_dict(state, strict=False)
    # position_ids / token_type_ids are buffers some checkpoints omit; every weight must load.
    missing = [k for k in missing if not k.endswith(("position_ids", "token_type_ids"))]
    if missing:
        sys.exit(f"{model_dir}/model.safetensors lacks {missing}")
    for p in model.parameters():
        p.requires_grad_(False)
    return model


class SelectiveLoraLinear(nn.Module):
    """``y = W x + b + s * ((dropout(x) A^T) * softmax(beta)) B^T`` with W, b frozen,
    A kaiming-uniform, B zero, beta (the selection logits) at ones, s = alpha / k."""

    def __init__(self, base, k, alpha, dropout):
        super().__init__()
        self.base = base
        self.lora_A = nn.Parameter(torch.empty(k, base.in_features))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, k))
        self.beta = nn.Parameter(torch.ones(k))
        self.scaling = alpha / k
        self.dropout = nn.Dropout(dropout)

    def forward(self, x):
        gate = torch.softmax(self.beta, dim=-1)
        h = (self.dropout(x) @ self.lora_A.t()) * gate
        return self.base(x) + (h @ self.lora_B.t()) * self.scaling


def attach_selective_lora(model, k, alpha, dropout):
    """Replaces every layer's attention query and value by a selective LoRA layer; returns
    (LoRA weights + classifier, selection logits)."""
    for layer in model.bert.encoder.layer:
        attn = layer.attention.self
        attn.query = SelectiveLoraLinear(attn.query, k, alpha, dropout)
        attn.value = SelectiveLoraLinear(attn.value, k, alpha, dropout)
    for p in model.classifier.parameters():
        p.requires_grad_(True)
    weights, betas = [], []
    for name, p in model.named_parameters():
        if name.endswith(".beta"):
            betas.append(p)
        elif p.requires_grad:
            weights.append(p)
    return weights, betas


class PlainStep:
    """A PEFT LoRA training step."""

    passes = 1

    def __init__(self, model, args):
        from peft import LoraConfig, TaskType, get_peft_model

        config = LoraConfig(
            task_type=TaskType.TOKEN_CLS,
            r=8,
            lora_alpha=16,
            lora_dropout=0.1,
            target_modules=["query", "value"],
        )
        self.model = get_peft_model(model, config)
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        # `autolora train` defaults: AdamW, lr 5e-4, no weight decay.
        self.optimizer = torch.optim.AdamW(self.params, lr=5e-4, weight_decay=0.0)

    def __call__(self, train, _val):
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.model(**train).loss
        loss.backward()
        self.optimizer.step()
        return loss.item()


class RecipeSearchStep:
    """The authors' search step (module docs); ``rollback=False`` keeps the look-ahead step."""

    def __init__(self, model, args, rollback):
        self.model = model
        self.weights, self.betas = attach_selective_lora(model, k=8, alpha=16.0, dropout=0.1)
        self.inner = torch.optim.Adam(self.weights, lr=3e-4)
        self.outer = torch.optim.Adam(self.betas, lr=1e-2, betas=(0.5, 0.999))
        self.rollback = rollback
        self.passes = 5 if rollback else 4
        self.beta_keys = {n for n, _ in model.named_parameters() if n.endswith(".beta")}

    def loss(self, batch):
        return self.model(**batch).loss

    def inner_step(self, train):
        self.inner.zero_grad(set_to_none=True)
        loss = self.loss(train)
        loss.backward()
        self.inner.step()
        return loss

    def __call__(self, train, val):
        if self.rollback:
            # The whole model state (frozen weights included) and the optimizer state.
            model_state = copy.deepcopy(self.model.state_dict())
            inner_state = copy.deepcopy(self.inner.state_dict())
        loss = self.inner_step(train)

        val_loss = self.loss(val)
        grads = torch.autograd.grad(val_loss, self.betas + self.weights)
        direct, v = grads[: len(self.betas)], grads[len(self.betas):]
        eps = 0.01 / torch.cat([g.reshape(-1) for g in v]).norm()
        with torch.no_grad():
            for p, g in zip(self.weights, v):
                p.add_(g * eps)
        g_plus = torch.autograd.grad(self.loss(train), self.betas)
        with torch.no_grad():
            for p, g in zip(self.weights, v):
                p.sub_(g * (2 * eps))
        g_minus = torch.autograd.grad(self.loss(train), self.betas)
        with torch.no_grad():
            for p, g in zip(self.weights, v):
                p.add_(g * eps)
        for beta, d, gp, gm in zip(self.betas, direct, g_plus, g_minus):
            beta.grad = d - (gp - gm) / (2 * eps)
        self.outer.step()
        self.outer.zero_grad(set_to_none=True)

        if self.rollback:
            # Everything back but the selection logits, which keep their outer step.
            restored = {k: t for k, t in model_state.items() if k not in self.beta_keys}
            self.model.load_state_dict(restored, strict=False)
            self.inner.load_state_dict(inner_state)
            loss = self.inner_step(train)
        return loss.item()


def matmul_throughput(threads, n=2048, repeats=10):
    """GFLOP/s of an n x n x n f32 matmul and of the model's largest matmul shape
    (2048 tokens x 384 -> 1536), medians over `repeats` timed calls after warm-up."""
    def rate(m, k, nn_, reps):
        a, b = torch.randn(m, k), torch.randn(k, nn_)
        for _ in range(3):
            torch.mm(a, b)
        times = []
        for _ in range(reps):
            start = time.perf_counter()
            torch.mm(a, b)
            times.append(time.perf_counter() - start)
        return 2.0 * m * k * nn_ / statistics.median(times) / 1e9

    return {
        "implementation": "torch",
        "mode": "matmul",
        "threads": threads,
        "square_n": n,
        "square_gflops": rate(n, n, n, repeats),
        "model_shape": [2048, 384, 1536],
        "model_shape_gflops": rate(2048, 384, 1536, repeats * 3),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mode", choices=["plain", "fd", "fd-norollback", "matmul"], default="plain")
    parser.add_argument("--model-dir", help="Hugging Face BERT folder (config.json, model.safetensors)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--seq", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--labels", type=int, default=9)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--attention", choices=["sdpa", "eager"], default="sdpa")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    if args.mode == "matmul":
        print(json.dumps(matmul_throughput(args.threads)))
        return
    if not args.model_dir:
        sys.exit("--model-dir is required")

    with open(os.path.join(args.model_dir, "config.json"), encoding="utf-8") as f:
        vocab = json.load(f)["vocab_size"]
    # Drawn first, in the same order as `autolora bench`, so both sides see the same tokens.
    torch.manual_seed(args.seed)
    train = random_batch(vocab, args.batch, args.seq, args.labels)
    val = random_batch(vocab, args.batch, args.seq, args.labels)
    model = load_bert(args.model_dir, args.labels, args.attention)
    model.train()
    torch.manual_seed(args.seed)
    if args.mode == "plain":
        step = PlainStep(model, args)
    else:
        step = RecipeSearchStep(model, args, rollback=args.mode == "fd")
    trainable = sum(p.numel() for p in step.model.parameters() if p.requires_grad)
    rss_loaded, _ = rss_mib()

    times, last_loss = [], float("nan")
    for i in range(args.warmup + args.steps):
        start = time.perf_counter()
        last_loss = step(train, val)
        elapsed = time.perf_counter() - start
        if i >= args.warmup:
            times.append(elapsed)
    rss_now, peak = rss_mib()
    median = statistics.median(times)
    tokens = args.batch * args.seq
    print(json.dumps({
        "implementation": "torch",
        "mode": args.mode,
        "attention": args.attention,
        "batch": args.batch,
        "seq": args.seq,
        "threads": torch.get_num_threads(),
        "warmup": args.warmup,
        "steps": args.steps,
        "step_seconds": times,
        "median_step_seconds": median,
        "min_step_seconds": min(times),
        "tokens_per_step": tokens,
        "tokens_per_second": tokens / median,
        "passes": step.passes,
        "trainable_params": trainable,
        "final_loss": last_loss,
        "rss_after_load_mib": rss_loaded,
        "rss_end_mib": rss_now,
        "peak_rss_mib": peak,
        "torch": torch.__version__,
    }))


if __name__ == "__main__":
    main()
