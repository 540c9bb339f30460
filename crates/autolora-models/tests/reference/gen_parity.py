"""Builds the tiny random BERT, RoBERTa, GPT-2 and Llama checkpoints under ../fixtures and
their reference outputs from PyPI `transformers` (4.57.1) and `peft` (0.17.1) on `torch` 2.11.0.

Run from anywhere with the project's Python (optionally naming families: bert roberta gpt2 llama):
    python crates/autolora-models/tests/reference/gen_parity.py [FAMILY ...]

Every folder under fixtures/ is a Hugging Face model directory (config.json + safetensors)
or a PEFT adapter directory, plus `reference.safetensors` holding the inputs and the outputs
the Rust tests must reproduce (eval mode, eager attention, float32). Decoder fixtures also hold
generation references: greedy continuations with the logits of every step, and beam-search
continuations (`generate` with num_beams, length_penalty, no_repeat_ngram_size, an EOS token).
Everything is seeded, so rerunning rewrites identical files.
"""

import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import save_file
from transformers import (
    GPT2Config,
    GPT2ForSequenceClassification,
    GPT2ForTokenClassification,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    LlamaForSequenceClassification,
    LlamaForTokenClassification,
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
            if name.endswith(("LayerNorm.weight", "ln_1.weight", "ln_2.weight", "ln_f.weight", "norm.weight")):
                p.copy_(1.0 + 0.1 * noise)
            else:
                p.copy_(0.2 * noise)


def build(cls, config, seed):
    """`cls(config)` initialised after seeding torch with `seed`, then randomized from it."""
    torch.manual_seed(seed)
    model = cls(config)
    randomize(model, seed)
    return model


def padded_ids(pad_id, lengths, seq, seed):
    """Random ids in 3..64, one row per length, right-padded with `pad_id`; and the mask."""
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, 64, (len(lengths), seq), generator=gen)
    mask = torch.zeros(len(lengths), seq, dtype=torch.long)
    for row, n in enumerate(lengths):
        mask[row, :n] = 1
    return torch.where(mask.bool(), ids, torch.full_like(ids, pad_id)), mask


def inputs(pad_id, lengths, seq, seed, with_types):
    ids, mask = padded_ids(pad_id, lengths, seq, seed)
    types = torch.zeros_like(ids)
    if with_types:
        for row, n in enumerate(lengths):
            types[row, n // 2 : n] = 1
    return ids, mask, types


def causal_inputs(lengths, seq, seed):
    """Right-padded batch (pad id 0) with LM labels: the ids, -100 on padding."""
    ids, mask = padded_ids(0, lengths, seq, seed)
    labels = torch.where(mask.bool(), ids, torch.full_like(ids, -100))
    return ids, mask, labels


def save_model(model, name, **kw):
    folder = OUT / name
    shutil.rmtree(folder, ignore_errors=True)
    model.save_pretrained(folder, safe_serialization=True, **kw)
    return folder


def run(model, ids, mask, types=None, labels=None):
    """Eval-mode forward with hidden states; segment ids only for the encoders."""
    model.eval()
    extra = {} if labels is None else {"labels": labels}
    if types is not None:
        extra["token_type_ids"] = types
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=mask, output_hidden_states=True, **extra)


def forward_references(model, ids, mask, types=None, labels=None, hidden=True):
    """The inputs and what the Rust tests compare against: last hidden state (unless not
    `hidden`), logits, and with `labels` the labels and the loss."""
    out = run(model, ids, mask, types, labels)
    refs = dict(input_ids=ids, attention_mask=mask)
    if types is not None:
        refs["token_type_ids"] = types
    if hidden:
        refs["last_hidden_state"] = out.hidden_states[-1]
    refs["logits"] = out.logits
    if labels is not None:
        refs.update(labels=labels, loss=out.loss)
    return refs


def save_reference(folder, tensors):
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(folder / "reference.safetensors"))


def head_fixture(model, name, ids, mask, types=None, labels=None, hidden=True, **save_kw):
    """Saves `model` as fixture `name` with its forward references."""
    folder = save_model(model, name, **save_kw)
    save_reference(folder, forward_references(model, ids, mask, types, labels, hidden))


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


def peft_fixture(base, name, config, seed, ids, mask, types=None, prompt=None):
    """Wraps `base` in a PEFT LoRA model with perturbed factors and saves the adapter as
    fixture `name` with its forward references, and with `prompt` its generation references
    (the cache path with LoRA active)."""
    # Imported here, not at the top: gen_parity_v5.py reuses this module's helpers under
    # transformers 5, in an environment without peft.
    from peft import get_peft_model

    torch.manual_seed(seed)
    peft_model = get_peft_model(base, config)
    perturb_lora(peft_model, seed)
    refs = forward_references(peft_model, ids, mask, types)
    folder = OUT / name
    shutil.rmtree(folder, ignore_errors=True)
    peft_model.save_pretrained(folder)
    (folder / "README.md").unlink()  # PEFT's generated model-card template
    if prompt is not None:
        print(name)
        refs.update(generation_references(peft_model, prompt, 6, BEAMS))
    save_reference(folder, refs)


def lora_config(task_type, targets, rank_pattern, **kw):
    from peft import LoraConfig

    return LoraConfig(
        r=4,
        lora_alpha=8,
        lora_dropout=0.0,
        target_modules=targets,
        rank_pattern=rank_pattern,
        task_type=task_type,
        **kw,
    )


def encoder_lora_fixture(base, name, ids, mask, types, seed):
    config = lora_config(
        "SEQ_CLS",
        ["query", "value"],
        {"encoder.layer.1.attention.self.value": 2},
        alpha_pattern={"encoder.layer.0.attention.self.query": 16},
    )
    peft_fixture(base, name, config, seed, ids, mask, types)


def bert():
    ids, mask, types = inputs(0, [7, 5, 3], 7, seed=1, with_types=True)

    base = build(BertModel, bert_config(), 10)
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

    seq = build(BertForSequenceClassification, bert_config(num_labels=3), 11)
    head_fixture(seq, "bert-tiny-seqcls", ids, mask, types, torch.tensor([2, 0, 1]))
    encoder_lora_fixture(seq, "bert-tiny-seqcls-lora", ids, mask, types, seed=12)

    reg = build(BertForSequenceClassification, bert_config(num_labels=1, problem_type="regression"), 13)
    head_fixture(reg, "bert-tiny-regression", ids, mask, types, torch.tensor([0.5, -1.0, 2.0]), hidden=False)

    tok = build(BertForTokenClassification, bert_config(num_labels=5), 14)
    # Sharded on purpose: exercises model.safetensors.index.json.
    head_fixture(tok, "bert-tiny-tokcls", ids, mask, types, token_labels(mask, 5, seed=15), max_shard_size="40KB")


def roberta():
    ids, mask, types = inputs(1, [7, 4, 6], 7, seed=2, with_types=False)

    seq = build(RobertaForSequenceClassification, roberta_config(num_labels=3), 20)
    head_fixture(seq, "roberta-tiny-seqcls", ids, mask, types, torch.tensor([1, 2, 0]))
    encoder_lora_fixture(seq, "roberta-tiny-seqcls-lora", ids, mask, types, seed=21)

    tok = build(RobertaForTokenClassification, roberta_config(num_labels=4), 22)
    head_fixture(tok, "roberta-tiny-tokcls", ids, mask, types, token_labels(mask, 4, seed=23))


def beam_search(model, prompt, mask, settings, eos):
    """The best beam's new tokens up to and including the first EOS."""
    with torch.no_grad():
        beam = model.generate(
            prompt,
            attention_mask=mask,
            max_new_tokens=settings["max_new_tokens"],
            do_sample=False,
            num_beams=settings["num_beams"],
            length_penalty=settings["length_penalty"],
            no_repeat_ngram_size=settings["no_repeat_ngram_size"],
            early_stopping=False,
            eos_token_id=eos,
            pad_token_id=0,
        )
    ids = beam[0, prompt.shape[1] :]
    # Trailing fill after EOS is not part of the hypothesis.
    hits = (ids == eos).nonzero()
    if len(hits):
        ids = ids[: int(hits[0]) + 1]
    return ids


def generation_references(model, prompt, steps, beams):
    """Greedy steps (ids and per-step logits, no EOS) and a beam search whose EOS token is one
    the greedy run produced, so that stopping at EOS is exercised."""
    model.eval()
    mask = torch.ones_like(prompt)
    with torch.no_grad():
        greedy = model.generate(
            prompt,
            attention_mask=mask,
            max_new_tokens=steps,
            do_sample=False,
            num_beams=1,
            eos_token_id=None,
            pad_token_id=0,
            output_logits=True,
            return_dict_in_generate=True,
        )
    greedy_ids = greedy.sequences[0, prompt.shape[1] :]
    eos = int(greedy_ids[2])
    beam_ids = beam_search(model, prompt, mask, beams, eos)
    # The LoRA paper's E2E protocol: 10 beams, length penalty 0.9, no repeated 4-gram.
    e2e_ids = beam_search(model, prompt, mask, E2E, eos)
    print(f"  greedy {greedy_ids.tolist()}, beam (eos {eos}) {beam_ids.tolist()}, e2e {e2e_ids.tolist()}")
    return dict(
        gen_e2e=e2e_ids,
        gen_prompt=prompt,
        gen_greedy=greedy_ids,
        gen_greedy_logits=torch.stack([l[0] for l in greedy.logits]),
        gen_beam=beam_ids,
        gen_beam_settings=torch.tensor(
            [beams["num_beams"], beams["max_new_tokens"], beams["no_repeat_ngram_size"], eos]
        ),
        gen_beam_length_penalty=torch.tensor(beams["length_penalty"], dtype=torch.float64),
    )


BEAMS = dict(num_beams=4, max_new_tokens=10, length_penalty=0.9, no_repeat_ngram_size=2)
E2E = dict(num_beams=10, max_new_tokens=16, length_penalty=0.9, no_repeat_ngram_size=4)


def causal_fixture(model, name, ids, mask, labels, prompt):
    folder = save_model(model, name)
    refs = forward_references(model, ids, mask, labels=labels)
    print(name)
    refs.update(generation_references(model, prompt, 6, BEAMS))
    save_reference(folder, refs)


def causal_lora_fixture(base, name, targets, rank_pattern, ids, mask, prompt, seed, fan_in_fan_out=False):
    config = lora_config("CAUSAL_LM", targets, rank_pattern, fan_in_fan_out=fan_in_fan_out)
    peft_fixture(base, name, config, seed, ids, mask, prompt=prompt)


def token_fixture(model, name, ids, mask, seed):
    head_fixture(model, name, ids, mask, labels=token_labels(mask, model.config.num_labels, seed))


def gpt2():
    ids, mask, labels = causal_inputs([7, 5, 3], 7, seed=3)
    prompt = torch.tensor([[5, 17, 42, 8, 23]])
    common = dict(
        vocab_size=64,
        n_positions=32,
        n_embd=32,
        n_layer=2,
        n_head=4,
        n_inner=37,
        activation_function="gelu_new",
        layer_norm_epsilon=1e-5,
        bos_token_id=1,
        eos_token_id=2,
        attn_implementation="eager",
    )

    lm = build(GPT2LMHeadModel, GPT2Config(**common), 30)
    causal_fixture(lm, "gpt2-tiny-lm", ids, mask, labels, prompt)
    causal_lora_fixture(
        lm, "gpt2-tiny-lm-lora", ["c_attn"], {"h.1.attn.c_attn": 2}, ids, mask, prompt, seed=31, fan_in_fan_out=True
    )

    seq = build(GPT2ForSequenceClassification, GPT2Config(num_labels=3, pad_token_id=0, **common), 32)
    head_fixture(seq, "gpt2-tiny-seqcls", ids, mask, labels=torch.tensor([2, 0, 1]))

    tok = build(GPT2ForTokenClassification, GPT2Config(num_labels=4, **common), 33)
    token_fixture(tok, "gpt2-tiny-tokcls", ids, mask, seed=34)


def tiny_decoder(**fields):
    """The sizes the tiny Llama-family fixtures share (2 layers, hidden 32, vocabulary 64), with
    eager attention, plus `fields`."""
    return dict(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=2,
        max_position_embeddings=64,
        rms_norm_eps=1e-6,
        bos_token_id=1,
        eos_token_id=2,
        attn_implementation="eager",
        **fields,
    )


def llama():
    ids, mask, labels = causal_inputs([7, 6, 4], 7, seed=4)
    prompt = torch.tensor([[9, 31, 4, 50, 12]])
    common = tiny_decoder()

    # Grouped-query attention (4 query heads share 2 key/value heads), separate LM head.
    gqa = build(
        LlamaForCausalLM,
        LlamaConfig(num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=False, rope_theta=10000.0, **common),
        40,
    )
    causal_fixture(gqa, "llama-tiny-gqa", ids, mask, labels, prompt)
    causal_lora_fixture(
        gqa,
        "llama-tiny-gqa-lora",
        ["q_proj", "v_proj"],
        {"layers.1.self_attn.v_proj": 2},
        ids,
        mask,
        prompt,
        seed=41,
    )

    # Tied embeddings, one key/value head, explicit head_dim, q/k/v/o biases and Llama-3
    # rotary scaling.
    tied = build(
        LlamaForCausalLM,
        LlamaConfig(
            num_attention_heads=2,
            num_key_value_heads=1,
            head_dim=16,
            tie_word_embeddings=True,
            attention_bias=True,
            rope_theta=500000.0,
            rope_scaling=dict(
                rope_type="llama3",
                factor=8.0,
                low_freq_factor=1.0,
                high_freq_factor=4.0,
                original_max_position_embeddings=16,
            ),
            **common,
        ),
        42,
    )
    causal_fixture(tied, "llama-tiny-tied", ids, mask, labels, prompt)

    seq = build(
        LlamaForSequenceClassification,
        LlamaConfig(num_attention_heads=4, num_key_value_heads=2, num_labels=3, pad_token_id=0, **common),
        43,
    )
    head_fixture(seq, "llama-tiny-seqcls", ids, mask, labels=torch.tensor([1, 2, 0]))

    tok = build(
        LlamaForTokenClassification,
        LlamaConfig(num_attention_heads=4, num_key_value_heads=2, num_labels=4, **common),
        44,
    )
    token_fixture(tok, "llama-tiny-tokcls", ids, mask, seed=45)


def qwen_mistral():
    """Qwen2 (q/k/v biases, no o bias), Qwen3 (RMSNorm on each query and key head, head_dim
    apart from hidden_size / heads) and Mistral (a sliding window shorter than the inputs and
    the generated sequences, so the windowed mask matters), plus a Qwen2 whose second layer
    alone slides (use_sliding_window, max_window_layers = 1), a Qwen2 sequence classifier, a Qwen3
    token classifier and a windowed Mistral sequence classifier: transformers 4.57.1's masks."""
    from transformers import (
        MistralConfig,
        MistralForCausalLM,
        MistralForSequenceClassification,
        Qwen2Config,
        Qwen2ForCausalLM,
        Qwen2ForSequenceClassification,
        Qwen3Config,
        Qwen3ForCausalLM,
        Qwen3ForTokenClassification,
    )

    ids, mask, labels = causal_inputs([7, 6, 4], 7, seed=5)
    prompt = torch.tensor([[9, 31, 4, 50, 12]])
    common = tiny_decoder(num_attention_heads=4, num_key_value_heads=2, rope_theta=10000.0)
    qwen2 = build(Qwen2ForCausalLM, Qwen2Config(tie_word_embeddings=False, **common), 50)
    causal_fixture(qwen2, "qwen2-tiny", ids, mask, labels, prompt)
    sliding = build(
        Qwen2ForCausalLM,
        Qwen2Config(tie_word_embeddings=True, use_sliding_window=True, sliding_window=3, max_window_layers=1, **common),
        51,
    )
    assert sliding.config.layer_types == ["full_attention", "sliding_attention"], sliding.config.layer_types
    causal_fixture(sliding, "qwen2-tiny-sliding", ids, mask, labels, prompt)
    seq = build(Qwen2ForSequenceClassification, Qwen2Config(num_labels=3, pad_token_id=0, **common), 52)
    head_fixture(seq, "qwen2-tiny-seqcls", ids, mask, labels=torch.tensor([1, 2, 0]))
    qwen3 = build(Qwen3ForCausalLM, Qwen3Config(head_dim=16, tie_word_embeddings=True, **common), 53)
    causal_fixture(qwen3, "qwen3-tiny", ids, mask, labels, prompt)
    mistral = build(MistralForCausalLM, MistralConfig(sliding_window=3, tie_word_embeddings=False, **common), 54)
    causal_fixture(mistral, "mistral-tiny", ids, mask, labels, prompt)
    qwen3_tok = build(Qwen3ForTokenClassification, Qwen3Config(head_dim=16, num_labels=4, **common), 59)
    token_fixture(qwen3_tok, "qwen3-tiny-tokcls", ids, mask, seed=60)
    mistral_seq = build(MistralForSequenceClassification, MistralConfig(sliding_window=3, num_labels=3, pad_token_id=0, **common), 61)
    head_fixture(mistral_seq, "mistral-tiny-seqcls", ids, mask, labels=torch.tensor([0, 2, 1]))


FAMILIES = dict(bert=bert, roberta=roberta, gpt2=gpt2, llama=llama, qwen=qwen_mistral)

if __name__ == "__main__":
    import sys

    torch.set_num_threads(1)
    OUT.mkdir(parents=True, exist_ok=True)
    for family in sys.argv[1:] or list(FAMILIES):
        FAMILIES[family]()
    for folder in sorted(OUT.iterdir()):
        size = sum(f.stat().st_size for f in folder.iterdir())
        print(f"{folder.name}: {sorted(f.name for f in folder.iterdir())} ({size} bytes)")
    print(json.dumps({"transformers": __import__("transformers").__version__, "torch": torch.__version__}))
