"""Writes metrics.json: small seeded inputs and what the reference tools compute on them.

Run with the project's reference venv (see the crate's tests/metrics_golden.rs):

    ~/.cache/autolora/python/torch-2.11.0/bin/python gen_metrics.py [OUT.json]

Reference tools: scikit-learn (accuracy, F1, Matthews), SciPy (Pearson, Spearman with
average ranks for ties), seqeval (entity-level P/R/F1, default conlleval-compatible mode, and
strict mode on IOB2).
"""

import json
import random
import sys
from importlib.metadata import version
from pathlib import Path

from scipy.stats import pearsonr, spearmanr
from seqeval.metrics import classification_report, f1_score, precision_score, recall_score
from seqeval.scheme import IOB2
from sklearn.metrics import accuracy_score, f1_score as sk_f1, matthews_corrcoef

rng = random.Random(20240611)


def classification_case(name, n, classes, agree):
    gold = [rng.randrange(classes) for _ in range(n)]
    pred = [g if rng.random() < agree else rng.randrange(classes) for g in gold]
    return {
        "name": name,
        "gold": gold,
        "pred": pred,
        "accuracy": accuracy_score(gold, pred),
        "f1_pos1": sk_f1(gold, pred, pos_label=1, average="binary") if classes == 2 else None,
        "matthews": matthews_corrcoef(gold, pred),
    }


def regression_case(name, n, step):
    x = [rng.uniform(0, 5) for _ in range(n)]
    y = [v + rng.gauss(0, 1.0) for v in x]
    if step:
        # Round to a grid so that ties occur, as in STS-B's gold scores.
        x = [round(v / step) * step for v in x]
        y = [round(v / step) * step for v in y]
    return {
        "name": name,
        "x": x,
        "y": y,
        "pearson": float(pearsonr(x, y)[0]),
        "spearman": float(spearmanr(x, y)[0]),
    }


TAGS = ["O", "O", "O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-MISC", "I-MISC", "B-cell_type", "I-cell_type"]


def tagging_case(name, sentences, noise):
    gold, pred = [], []
    for _ in range(sentences):
        length = rng.randint(1, 12)
        g = [rng.choice(TAGS) for _ in range(length)]
        p = [t if rng.random() > noise else rng.choice(TAGS) for t in g]
        gold.append(g)
        pred.append(p)
    report = classification_report(gold, pred, output_dict=True, zero_division=0)
    per_type = {
        ty: {"precision": v["precision"], "recall": v["recall"], "f1": v["f1-score"], "gold": int(v["support"])}
        for ty, v in report.items()
        if ty not in ("micro avg", "macro avg", "weighted avg")
    }
    return {
        "name": name,
        "gold": gold,
        "pred": pred,
        "precision": precision_score(gold, pred),
        "recall": recall_score(gold, pred),
        "f1": f1_score(gold, pred),
        "per_type": per_type,
        "strict": {
            "precision": precision_score(gold, pred, mode="strict", scheme=IOB2, zero_division=0),
            "recall": recall_score(gold, pred, mode="strict", scheme=IOB2, zero_division=0),
            "f1": f1_score(gold, pred, mode="strict", scheme=IOB2, zero_division=0),
        },
    }


fixture = {
    "generated_by": "gen_metrics.py",
    "versions": {p: version(p) for p in ["scikit-learn", "scipy", "seqeval"]},
    "classification": [
        classification_case("binary", 60, 2, 0.7),
        classification_case("binary_small", 7, 2, 0.5),
        classification_case("three_class", 80, 3, 0.6),
        {
            "name": "constant_prediction",
            "gold": [0, 1, 1, 0, 1],
            "pred": [0, 0, 0, 0, 0],
            "accuracy": accuracy_score([0, 1, 1, 0, 1], [0] * 5),
            "f1_pos1": sk_f1([0, 1, 1, 0, 1], [0] * 5, zero_division=0),
            "matthews": matthews_corrcoef([0, 1, 1, 0, 1], [0] * 5),
        },
    ],
    "regression": [
        regression_case("continuous", 40, None),
        regression_case("ties", 50, 0.5),
        regression_case("heavy_ties", 30, 2.0),
    ],
    "tagging": [
        tagging_case("random_noise_0.3", 40, 0.3),
        tagging_case("random_noise_0.8", 25, 0.8),
    ],
}

out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).with_name("metrics.json")
out.write_text(json.dumps(fixture, indent=1) + "\n")
print(f"wrote {out}")
