"""Writes the CLI's test fixtures (seeded, reproducible):

* fixtures/conll/{train,valid,test}.txt: made-up sentences in the CoNLL-2003 column format
  (project-written text, no Reuters data);
* fixtures/glue/{SST-2,MRPC,STS-B}/: made-up rows in the official GLUE TSV layouts;
* fixtures/sentiment/: made-up rows in the Rotten-Tomatoes snippets layout (id, score, text; CRLF);
* fixtures/tiny-bert/: a tiny random BERT (hidden 32, 2 layers) in Hugging Face format with a
  WordPiece tokenizer.json whose vocabulary covers the fixture sentences.

Run with the project's Python (`cargo xtask setup` installs it):
    ~/.cache/autolora/python/torch-2.11.0/bin/python crates/autolora-cli/tests/reference/make_fixtures.py
"""
import os
import random

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, "..", "fixtures")

PEOPLE = ["Anna Berg", "Tomas Lind", "Maria Costa", "John Rivers", "Ole Hansen", "Lea Moreau"]
ORGS = ["Nordbank", "Acme Corp", "River Union", "Blue Labs", "Star Media"]
LOCS = ["Oslo", "Lisbon", "Vienna", "Cairo", "Lima", "Quebec"]
MISC = ["Olympic", "Nordic", "Latin", "Alpine"]
VERBS = ["visited", "joined", "left", "praised", "met", "sued"]
FILL = ["on", "Monday", "after", "the", "talks", "in", "late", "May", "said", "officials", "today"]


def entity(name, typ):
    return [(t, ("B-" if i == 0 else "I-") + typ) for i, t in enumerate(name.split())]


def sentence(rng):
    s = entity(rng.choice(PEOPLE), "PER") + [(rng.choice(VERBS), "O")]
    s += entity(rng.choice(ORGS), "ORG") if rng.random() < 0.5 else entity(rng.choice(LOCS), "LOC")
    s += [(w, "O") for w in rng.sample(FILL, rng.randint(2, 5))]
    if rng.random() < 0.4:
        s += [("for", "O"), ("the", "O")] + entity(rng.choice(MISC), "MISC") + [("games", "O")]
    return s + [(".", "O")]


def write_conll():
    rng = random.Random(7)
    os.makedirs(os.path.join(FIXTURES, "conll"), exist_ok=True)
    for name, n in [("train", 120), ("valid", 30), ("test", 30)]:
        with open(os.path.join(FIXTURES, "conll", f"{name}.txt"), "w") as f:
            f.write("-DOCSTART- -X- -X- O\n\n")
            for _ in range(n):
                for tok, tag in sentence(rng):
                    f.write(f"{tok} NN I-NP {tag}\n")
                f.write("\n")


def text(rng):
    return " ".join(t for t, _ in sentence(rng))


def write_glue():
    rng = random.Random(11)
    root = os.path.join(FIXTURES, "glue")
    for task in ["SST-2", "MRPC", "STS-B"]:
        os.makedirs(os.path.join(root, task), exist_ok=True)
    for split, n in [("train", 48), ("dev", 16)]:
        with open(os.path.join(root, "SST-2", f"{split}.tsv"), "w") as f:
            f.write("sentence\tlabel\n")
            for _ in range(n):
                label = rng.randint(0, 1)
                f.write(f"{text(rng)} {'praised' if label else 'sued'}\t{label}\n")
        with open(os.path.join(root, "MRPC", f"{split}.tsv"), "w") as f:
            f.write("Quality\t#1 ID\t#2 ID\t#1 String\t#2 String\n")
            for i in range(n):
                a = text(rng)
                label = rng.randint(0, 1)
                b = a if label else text(rng)
                f.write(f"{label}\t{2 * i}\t{2 * i + 1}\t{a}\t{b}\n")
        with open(os.path.join(root, "STS-B", f"{split}.tsv"), "w") as f:
            f.write("index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore\n")
            for i in range(n):
                a, b = text(rng), text(rng)
                score = round(rng.uniform(0, 5), 3)
                f.write(f"{i}\tmain-news\tfixture\t2024\t{i}\tnone\tnone\t{a}\t{b}\t{score}\n")


def write_sentiment():
    rng = random.Random(13)
    os.makedirs(os.path.join(FIXTURES, "sentiment"), exist_ok=True)
    with open(os.path.join(FIXTURES, "sentiment", "movieReviewSnippets_GroundTruth.txt"), "w", newline="") as f:
        for i in range(80):
            score = round(rng.uniform(-4, 4), 6) or 0.5
            f.write(f"{i + 1}_{i}\t{score}\t{text(rng)}\r\n")


def write_model():
    import torch
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import BertConfig, BertModel

    words = sorted({w.lower() for name in PEOPLE + ORGS + LOCS + MISC for w in name.split()}
                   | {w.lower() for w in VERBS + FILL + ["for", "games", "."]})
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + words
    ids = {w: i for i, w in enumerate(vocab)}
    tok = Tokenizer(models.WordPiece(ids, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", ids["[CLS]"]), ("[SEP]", ids["[SEP]"])])
    out = os.path.join(FIXTURES, "tiny-bert")
    os.makedirs(out, exist_ok=True)
    tok.save(os.path.join(out, "tokenizer.json"))
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=4, intermediate_size=37, max_position_embeddings=64)
    BertModel(config, add_pooling_layer=True).save_pretrained(out, safe_serialization=True)


if __name__ == "__main__":
    write_conll()
    write_glue()
    write_sentiment()
    write_model()
