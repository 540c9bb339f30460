"""Writes ../fixtures/gguf-quants/: random blocks of every quantized type the loader reads,
and what the `gguf` Python package's dequantizer makes of them.

* blocks.gguf: one tensor per type (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K,
  Q6_K, and F16 and BF16), 8 rows of 256 elements each, in one file as llama.cpp mixes types.
  The bytes are random (any byte pattern is a valid block, so every bit path is exercised),
  except the f16 scales and minimums, which are random finite values (a random f16 may be
  NaN, whose payload no reference pins).
* expected.gguf: the same tensor names, F32, as `gguf.quants.dequantize` gives them.

    ~/.cache/autolora/python/torch-2.11.0/bin/python gen_quant_blocks.py
"""

import importlib.metadata
import os

import numpy as np
import gguf
from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType as T
from gguf.quants import dequantize

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "gguf-quants")
ROWS, COLS = 8, 256

# Byte offsets of the f16 fields of each block (llama.cpp's block_* structs).
HALF_FIELDS = {
    T.Q4_0: [0], T.Q4_1: [0, 2], T.Q5_0: [0], T.Q5_1: [0, 2], T.Q8_0: [0],
    T.Q2_K: [80, 82], T.Q3_K: [108], T.Q4_K: [0, 2], T.Q5_K: [0, 2], T.Q6_K: [208],
}


def random_blocks(rng, qtype):
    block_elems, block_bytes = GGML_QUANT_SIZES[qtype]
    n_blocks = ROWS * COLS // block_elems
    raw = rng.integers(0, 256, size=(n_blocks, block_bytes), dtype=np.uint8)
    for at in HALF_FIELDS.get(qtype, []):
        halves = rng.normal(0, 0.05, size=n_blocks).astype(np.float16)
        raw[:, at:at + 2] = halves.view(np.uint8).reshape(n_blocks, 2)
    return raw.reshape(ROWS, -1)


def main():
    os.makedirs(HERE, exist_ok=True)
    rng = np.random.default_rng(2024)
    blocks = gguf.GGUFWriter(os.path.join(HERE, "blocks.gguf"), "quant-check")
    expected = gguf.GGUFWriter(os.path.join(HERE, "expected.gguf"), "quant-check")
    for qtype in HALF_FIELDS:
        raw = random_blocks(rng, qtype)
        name = qtype.name.lower()
        blocks.add_tensor(name, raw, raw_dtype=qtype)
        values = dequantize(raw, qtype).astype(np.float32)
        assert values.shape == (ROWS, COLS), values.shape
        expected.add_tensor(name, values)
    floats = rng.normal(0, 1, size=(ROWS, COLS)).astype(np.float32)
    f16 = floats.astype(np.float16)
    blocks.add_tensor("f16", f16)
    expected.add_tensor("f16", f16.astype(np.float32))
    bf16 = (floats.view(np.uint32) >> 16).astype(np.uint16)  # truncated, any bits are valid
    blocks.add_tensor("bf16", bf16.view(np.uint8).reshape(ROWS, -1), raw_dtype=T.BF16)
    expected.add_tensor("bf16", dequantize(bf16.view(np.uint8).reshape(ROWS, -1), T.BF16).astype(np.float32))
    for writer in (blocks, expected):
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
    with open(os.path.join(HERE, "VERSION"), "w") as f:
        f.write(f"gguf {importlib.metadata.version('gguf')}, numpy {np.__version__}\n")


if __name__ == "__main__":
    main()
