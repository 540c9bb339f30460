"""Writes the CLI's test fixtures (seeded, reproducible):

* fixtures/conll/{train,valid,test}.txt: made-up sentences in the CoNLL-2003 column format
  (project-written text, no Reuters data);
* fixtures/glue/{SST-2,MRPC,STS-B}/: made-up rows in the official GLUE TSV layouts;
* fixtures/sentiment/: made-up rows in the Rotten-Tomatoes snippets layout (id, score, text; CRLF);
* fixtures/tiny-bert/: a tiny random BERT (hidden 32, 2 layers) in Hugging Face format with a
  WordPiece tokenizer.json whose vocabulary covers the fixture sentences;
* fixtures/e2e/{trainset,devset,testset}.csv: made-up restaurant meaning representations in the
  official E2E layout (`mr,ref`, 2-3 references per MR; project-written text);
* fixtures/tiny-gpt2/: a tiny random GPT-2 (n_embd 32, 2 layers) with a byte-level BPE
  tokenizer.json trained on the E2E fixture text (400 tokens, `<|endoftext|>` = id 0).

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


NAMES = ["The Copper Pot", "Blue Finch", "Green Harbour", "The Olive Tree", "Red Mill", "Silver Spoon",
         "The Night Owl", "Maple House", "Corner Table", "The Quiet Fox", "Sunny Side", "Stone Bridge"]
EAT = ["restaurant", "pub", "coffee shop"]
FOOD = ["Italian", "French", "Indian", "Chinese", "English", "Japanese", "Fast food"]
PRICE = ["cheap", "moderate", "high", "less than \u00a320", "\u00a320-25"]
AREA = ["city centre", "riverside"]
NEAR = ["the Town Hall", "Market Square", "the Museum", "Station Road"]


def e2e_mr(rng):
    mr = [("name", rng.choice(NAMES)), ("eatType", rng.choice(EAT)), ("food", rng.choice(FOOD))]
    if rng.random() < 0.6:
        mr.append(("priceRange", rng.choice(PRICE)))
    mr.append(("area", rng.choice(AREA)))
    if rng.random() < 0.5:
        mr.append(("familyFriendly", rng.choice(["yes", "no"])))
    if rng.random() < 0.4:
        mr.append(("near", rng.choice(NEAR)))
    return mr


def e2e_refs(rng, mr):
    d = dict(mr)
    name, eat, food, area = d["name"], d["eatType"], d["food"], d["area"]
    food_text = "fast food" if food == "Fast food" else f"{food} food"
    place = "by the river" if area == "riverside" else "in the city centre"
    extras = []
    if "priceRange" in d:
        p = d["priceRange"]
        extras.append(f"prices are {p}" if p[0] in "l\u00a3" else f"its prices are {p}")
    if "familyFriendly" in d:
        extras.append("it is family friendly" if d["familyFriendly"] == "yes" else "it is not family friendly")
    if "near" in d:
        extras.append(f"it is near {d['near']}")
    tail = (", and " + " and ".join(extras) + ".") if extras else "."
    templates = [
        f"{name} is a {eat} serving {food_text} {place}{tail}",
        f"{place.capitalize()} you will find {name}, a {eat} with {food_text}{tail}",
        f"For {food_text} {place}, try the {eat} {name}{tail}",
    ]
    rng.shuffle(templates)
    return templates[: rng.randint(2, 3)]


def write_e2e():
    import csv
    rng = random.Random(17)
    out = os.path.join(FIXTURES, "e2e")
    os.makedirs(out, exist_ok=True)
    texts = []
    for name, mrs in [("trainset", 18), ("devset", 5), ("testset", 5)]:
        with open(os.path.join(out, f"{name}.csv"), "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f, lineterminator="\n")
            w.writerow(["mr", "ref"])
            for _ in range(mrs):
                mr = e2e_mr(rng)
                text = ", ".join(f"{k}[{v}]" for k, v in mr)
                texts.append(" | ".join(f"{k} : {v}" for k, v in mr))
                for ref in e2e_refs(rng, mr):
                    w.writerow([text, ref])
                    texts.append(ref)
    return texts


def write_gpt2(texts):
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import GPT2Config, GPT2LMHeadModel

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<|endoftext|>"], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer)
    out = os.path.join(FIXTURES, "tiny-gpt2")
    os.makedirs(out, exist_ok=True)
    tok.save(os.path.join(out, "tokenizer.json"))
    eos = tok.token_to_id("<|endoftext|>")
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=tok.get_vocab_size(), n_positions=128, n_embd=32, n_layer=2, n_head=4,
                        n_inner=37, bos_token_id=eos, eos_token_id=eos)
    GPT2LMHeadModel(config).save_pretrained(out, safe_serialization=True)


if __name__ == "__main__":
    write_conll()
    write_glue()
    write_sentiment()
    write_model()
    write_gpt2(write_e2e())
