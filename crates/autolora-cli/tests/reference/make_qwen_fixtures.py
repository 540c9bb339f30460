"""Writes the tiny Qwen and Mistral fixtures of the export tests (seeded, reproducible):

* fixtures/tiny-qwen2/: a tiny random Qwen2ForCausalLM (hidden 32, 2 layers, 4 query heads
  sharing 2 key/value heads, q/k/v biases, a tied LM head, vocabulary 400);
* fixtures/tiny-qwen3/: a tiny random Qwen3ForCausalLM (the same sizes, head_dim 16 apart
  from hidden / heads, RMSNorm on each query and key head, an untied LM head);
* fixtures/tiny-mistral/: a tiny random MistralForCausalLM (the same sizes, a sliding window of
  3 tokens on every layer, an untied LM head);

each with the byte-level BPE tokenizer.json of fixtures/tiny-gpt2, as make_llama_fixtures.py
does for tiny-llama. Every weight, norms and biases included, is random.

    ~/.cache/autolora/python/torch-2.11.0/bin/python crates/autolora-cli/tests/reference/make_qwen_fixtures.py
"""
import shutil
from pathlib import Path

import torch
from transformers import MistralConfig, MistralForCausalLM, Qwen2Config, Qwen2ForCausalLM, Qwen3Config, Qwen3ForCausalLM

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
COMMON = dict(
    vocab_size=400,
    hidden_size=32,
    intermediate_size=48,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=128,
    rms_norm_eps=1e-6,
    rope_theta=10000.0,
    bos_token_id=0,
    eos_token_id=0,
)


def save(model, name):
    torch.manual_seed(0)
    with torch.no_grad():
        for key, p in model.named_parameters():
            if key.endswith("norm.weight"):
                p.copy_(1 + 0.2 * torch.randn_like(p))
            else:
                p.normal_(0, 0.15)
    folder = FIXTURES / name
    shutil.rmtree(folder, ignore_errors=True)
    model.save_pretrained(folder, safe_serialization=True)
    shutil.copy(FIXTURES / "tiny-gpt2" / "tokenizer.json", folder / "tokenizer.json")


def main():
    torch.manual_seed(0)
    save(Qwen2ForCausalLM(Qwen2Config(tie_word_embeddings=True, **COMMON)), "tiny-qwen2")
    torch.manual_seed(0)
    save(Qwen3ForCausalLM(Qwen3Config(head_dim=16, tie_word_embeddings=False, **COMMON)), "tiny-qwen3")
    torch.manual_seed(0)
    save(MistralForCausalLM(MistralConfig(sliding_window=3, tie_word_embeddings=False, **COMMON)), "tiny-mistral")


if __name__ == "__main__":
    main()
