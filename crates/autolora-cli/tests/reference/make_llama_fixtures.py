"""Writes the tiny Llama fixtures of the export tests (seeded, reproducible):

* fixtures/tiny-llama/: a tiny random LlamaForCausalLM in Hugging Face format (hidden 32,
  2 layers, 4 query heads sharing 2 key/value heads, an untied LM head, vocabulary 400) with
  the byte-level BPE tokenizer.json of fixtures/tiny-gpt2 (so the E2E and GLUE fixture text
  tokenizes into its vocabulary). Every weight, norms included, is random, so a tensor left
  at its initial value by a loader changes the logits.
* fixtures/tiny-llama-gguf/tiny-llama.gguf: the same weights as llama.cpp's converter writes
  them (query/key rows permuted per head, llama.* metadata, the tokenizer as tokenizer.ggml.*),
  matrices in Q8_0 where rows are a whole number of 32-value blocks and F16 otherwise, norms
  in F32.

Run with the project's Python (`cargo xtask setup` installs it; needs the `gguf` package):
    ~/.cache/autolora/python/torch-2.11.0/bin/python crates/autolora-cli/tests/reference/make_llama_fixtures.py
"""
import json
import shutil
from pathlib import Path

import gguf
import numpy as np
import torch
from transformers import LlamaConfig, LlamaForCausalLM

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
HEADS, KV_HEADS = 4, 2


def build():
    config = LlamaConfig(
        vocab_size=400,
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=2,
        num_attention_heads=HEADS,
        num_key_value_heads=KV_HEADS,
        head_dim=8,
        max_position_embeddings=128,
        rms_norm_eps=1e-6,
        rope_theta=10000.0,
        tie_word_embeddings=False,
        bos_token_id=0,
        eos_token_id=0,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(1 + 0.2 * torch.randn_like(p))
            else:
                p.normal_(0, 0.15)
    return model


def permute(w, heads):
    """llama.cpp's convert_hf_to_gguf.py `LlamaModel.permute`."""
    return w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


GGUF_NAMES = {
    "input_layernorm": "attn_norm",
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "post_attention_layernorm": "ffn_norm",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
}


def gguf_name(key):
    stem = key.removesuffix(".weight")
    if stem == "model.embed_tokens":
        return "token_embd.weight"
    if stem == "model.norm":
        return "output_norm.weight"
    if stem == "lm_head":
        return "output.weight"
    layer, module = stem.removeprefix("model.layers.").split(".", 1)
    return f"blk.{layer}.{GGUF_NAMES[module]}.weight"


def write_gguf(model, tokenizer_path, path):
    c = model.config
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_name("tiny-llama")
    w.add_context_length(c.max_position_embeddings)
    w.add_embedding_length(c.hidden_size)
    w.add_block_count(c.num_hidden_layers)
    w.add_feed_forward_length(c.intermediate_size)
    w.add_head_count(HEADS)
    w.add_head_count_kv(KV_HEADS)
    w.add_rope_dimension_count(c.head_dim)
    w.add_rope_freq_base(c.rope_theta)
    w.add_layer_norm_rms_eps(c.rms_norm_eps)
    w.add_vocab_size(c.vocab_size)

    tok = json.loads(tokenizer_path.read_text())
    vocab = tok["model"]["vocab"]
    tokens = sorted(vocab, key=vocab.get)
    special = {t["content"] for t in tok["added_tokens"] if t["special"]}
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("gpt2")
    w.add_token_list(tokens)
    w.add_token_types([gguf.TokenType.CONTROL if t in special else gguf.TokenType.NORMAL for t in tokens])
    w.add_token_merges([m if isinstance(m, str) else " ".join(m) for m in tok["model"]["merges"]])
    w.add_bos_token_id(c.bos_token_id)
    w.add_eos_token_id(c.eos_token_id)
    w.add_add_bos_token(False)

    for key, t in model.state_dict().items():
        t = t.float()
        if ".q_proj." in key:
            t = permute(t, HEADS)
        elif ".k_proj." in key:
            t = permute(t, KV_HEADS)
        a = t.numpy()
        name = gguf_name(key)
        if a.ndim == 1:
            w.add_tensor(name, a.astype(np.float32))
        elif a.shape[1] % 32 == 0:
            q = gguf.quants.quantize(a, gguf.GGMLQuantizationType.Q8_0)
            w.add_tensor(name, q, raw_shape=q.shape, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
        else:
            w.add_tensor(name, a.astype(np.float16))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def main():
    model = build()
    tokenizer = FIXTURES / "tiny-gpt2" / "tokenizer.json"
    out = FIXTURES / "tiny-llama"
    model.save_pretrained(out, safe_serialization=True)
    shutil.copy(tokenizer, out / "tokenizer.json")
    gguf_dir = FIXTURES / "tiny-llama-gguf"
    gguf_dir.mkdir(exist_ok=True)
    write_gguf(model, tokenizer, gguf_dir / "tiny-llama.gguf")
    print(f"wrote {out} and {gguf_dir}")


if __name__ == "__main__":
    main()
