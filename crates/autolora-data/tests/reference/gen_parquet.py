"""Writes parquet/: small Parquet files as pyarrow writes them, each beside its JSON Lines twin
(the same rows, one JSON object per line), for tests/parquet.rs.

* classify.parquet (snappy, row groups of 3 rows): text, text_pair, label (strings), score
  (float64), id (int64), flag (bool), note (a string column with nulls).
* tagged.parquet (snappy): tokens and tags as lists of strings, ner_ids as a list of int64
  (the layout `datasets` writes for CoNLL-style data).
* uncompressed.parquet: classify's rows, no compression, one row group.
* zstd.parquet: classify's rows compressed with zstd, a codec the reader does not build in;
  the test checks that the error says so and what to do.

pyarrow is not in the project's reference venv (it is only needed to rewrite these fixtures):

    python3 -m venv /tmp/pa && /tmp/pa/bin/pip install pyarrow
    /tmp/pa/bin/python gen_parquet.py
"""

import json
import os

import pyarrow as pa
import pyarrow.parquet as pq

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "parquet")

CLASSIFY = [
    {"text": "anna praised the film", "text_pair": "a good film", "label": "pos",
     "score": 0.75, "id": 1, "flag": True, "note": None},
    {"text": "john left late", "text_pair": "dull, \"long\"", "label": "neg",
     "score": -0.5, "id": 2, "flag": False, "note": "quoted"},
    {"text": "maria met ole in oslo", "text_pair": "", "label": "pos",
     "score": 1.0, "id": 3, "flag": True, "note": None},
    {"text": "tomas sued costa", "text_pair": "lines\nand tabs\t", "label": "neg",
     "score": -1.25, "id": 4, "flag": False, "note": "ünïcode ✓"},
    {"text": "lea joined anna", "text_pair": "x", "label": "pos",
     "score": 0.0, "id": 5, "flag": True, "note": None},
    {"text": "ole left", "text_pair": "y", "label": "neg",
     "score": 2.5, "id": 6, "flag": False, "note": "last"},
    {"text": "john praised maria", "text_pair": "z", "label": "pos",
     "score": 3.0, "id": 7, "flag": True, "note": None},
]

TAGGED = [
    {"tokens": ["anna", "met", "john", "in", "oslo"],
     "tags": ["B-PER", "O", "B-PER", "O", "B-LOC"], "ner_ids": [1, 0, 1, 0, 3]},
    {"tokens": ["maria", "costa", "left"],
     "tags": ["B-PER", "I-PER", "O"], "ner_ids": [1, 2, 0]},
    {"tokens": ["tomas", "sued", "ole"],
     "tags": ["B-PER", "O", "B-PER"], "ner_ids": [1, 0, 1]},
    {"tokens": ["lea"], "tags": ["B-PER"], "ner_ids": [1]},
]


def write(name, rows, schema, **options):
    table = pa.Table.from_pylist(rows, schema=schema)
    pq.write_table(table, os.path.join(HERE, name + ".parquet"), **options)


def twin(name, rows):
    with open(os.path.join(HERE, name + ".jsonl"), "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def main():
    os.makedirs(HERE, exist_ok=True)
    classify = pa.schema([
        ("text", pa.string()), ("text_pair", pa.string()), ("label", pa.string()),
        ("score", pa.float64()), ("id", pa.int64()), ("flag", pa.bool_()),
        ("note", pa.string()),
    ])
    tagged = pa.schema([
        ("tokens", pa.list_(pa.string())), ("tags", pa.list_(pa.string())),
        ("ner_ids", pa.list_(pa.int64())),
    ])
    write("classify", CLASSIFY, classify, compression="snappy", row_group_size=3)
    write("uncompressed", CLASSIFY, classify, compression="none")
    write("zstd", CLASSIFY, classify, compression="zstd")
    write("tagged", TAGGED, tagged, compression="snappy")
    twin("classify", CLASSIFY)
    twin("tagged", TAGGED)
    with open(os.path.join(HERE, "VERSION"), "w") as f:
        f.write(f"pyarrow {pa.__version__}\n")


if __name__ == "__main__":
    main()
