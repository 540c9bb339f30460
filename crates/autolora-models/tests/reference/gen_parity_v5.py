"""Builds tiny random checkpoints saved by PyPI `transformers` 5 (5.25.0, on `torch` 2.11.0)
under ../fixtures, with their reference outputs, because its `config.json` dialect differs
from 4.x: the rotary settings are one `rope_parameters` object (`rope_theta`, `rope_type`
and the type's fields) where 4.x wrote `rope_theta` and `rope_scaling`, BERT has no
`position_embedding_type` but writes `is_decoder`, and the sliding-window decoders (Qwen2,
Mistral) are checked under 5's masks. GPT-2's keys are the same as in 4.x.

The fixtures are committed, so the Rust tests need no transformers 5. To rebuild them, in a
separate environment (the project's has transformers 4.57.1):
    python3 -m venv /tmp/tf5 && /tmp/tf5/bin/pip install torch==2.11.0 transformers==5.25.0 safetensors
    /tmp/tf5/bin/python crates/autolora-models/tests/reference/gen_parity_v5.py

The helpers, inputs and reference contents are gen_parity.py's; everything is seeded, so
rerunning rewrites identical files.
"""

import json

import torch
import transformers
from transformers import BertConfig, BertForSequenceClassification, LlamaConfig, LlamaForCausalLM

from gen_parity import OUT, bert_config, build, causal_fixture, causal_inputs, head_fixture, inputs, tiny_decoder


def llama():
    """Untied head, grouped-query attention, rope theta 500000 with Llama-3 scaling."""
    ids, mask, labels = causal_inputs([7, 6, 4], 7, seed=4)
    prompt = torch.tensor([[9, 31, 4, 50, 12]])
    config = LlamaConfig(
        **tiny_decoder(num_attention_heads=4, num_key_value_heads=2),
        tie_word_embeddings=False,
        rope_parameters=dict(
            rope_type="llama3",
            rope_theta=500000.0,
            factor=8.0,
            low_freq_factor=1.0,
            high_freq_factor=4.0,
            original_max_position_embeddings=16,
        ),
    )
    causal_fixture(build(LlamaForCausalLM, config, 55), "llama-tiny-tf5", ids, mask, labels, prompt)


def qwen_mistral():
    """Qwen2 whose second layer alone slides (window 3, shorter than the inputs), Qwen3 (per-head
    q/k norms, head_dim apart) and Mistral (window 3), saved in 5's dialect."""
    from transformers import MistralConfig, MistralForCausalLM, Qwen2Config, Qwen2ForCausalLM, Qwen3Config, Qwen3ForCausalLM

    ids, mask, labels = causal_inputs([7, 6, 4], 7, seed=5)
    prompt = torch.tensor([[9, 31, 4, 50, 12]])
    common = tiny_decoder(
        num_attention_heads=4,
        num_key_value_heads=2,
        rope_parameters=dict(rope_type="default", rope_theta=20000.0),
    )
    qwen2 = Qwen2Config(tie_word_embeddings=True, use_sliding_window=True, sliding_window=3, max_window_layers=1, **common)
    assert qwen2.layer_types == ["full_attention", "sliding_attention"], qwen2.layer_types
    causal_fixture(build(Qwen2ForCausalLM, qwen2, 56), "qwen2-tiny-tf5", ids, mask, labels, prompt)
    qwen3 = Qwen3Config(head_dim=16, tie_word_embeddings=False, **common)
    causal_fixture(build(Qwen3ForCausalLM, qwen3, 57), "qwen3-tiny-tf5", ids, mask, labels, prompt)
    mistral = MistralConfig(sliding_window=3, tie_word_embeddings=False, **common)
    causal_fixture(build(MistralForCausalLM, mistral, 58), "mistral-tiny-tf5", ids, mask, labels, prompt)


def bert():
    ids, mask, types = inputs(0, [7, 5, 3], 7, seed=1, with_types=True)
    seq = build(BertForSequenceClassification, bert_config(num_labels=3), 51)
    head_fixture(seq, "bert-tiny-tf5-seqcls", ids, mask, types, torch.tensor([2, 0, 1]))


if __name__ == "__main__":
    assert transformers.__version__.startswith("5."), f"needs transformers 5, found {transformers.__version__}"
    torch.set_num_threads(1)
    llama()
    bert()
    qwen_mistral()
    for name in ["llama-tiny-tf5", "bert-tiny-tf5-seqcls", "qwen2-tiny-tf5", "qwen3-tiny-tf5", "mistral-tiny-tf5"]:
        folder = OUT / name
        size = sum(f.stat().st_size for f in folder.iterdir())
        print(f"{name}: {sorted(f.name for f in folder.iterdir())} ({size} bytes)")
    print(json.dumps({"transformers": transformers.__version__, "torch": torch.__version__}))
