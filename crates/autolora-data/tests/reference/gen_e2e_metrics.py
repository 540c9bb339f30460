"""Writes e2e_metrics.json: E2E-style system outputs and references (written for this
project), and what the reference tools compute on them.

    ~/.cache/autolora/python/torch-2.11.0/bin/python gen_e2e_metrics.py [OUT.json]

BLEU: sacreBLEU corpus_bleu, 13a tokenization (case-sensitive and lowercased).
NIST: NLTK corpus_nist (n=5) on sacreBLEU's 13a tokens. NLTK's NIST differs from
      mteval-v13a's (best single reference per segment and order, that reference's length for
      the penalty), so these values are NLTK's, not mteval's.
ROUGE-L, CIDEr(-D), METEOR: pycocoevalcap after its PTB tokenizer (Java), as the E2E script
      runs them. The PTB tokens of every sentence are stored too.
"""

import json
import sys
from importlib.metadata import version
from pathlib import Path

import sacrebleu
from nltk.translate.nist_score import corpus_nist
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.meteor.meteor import Meteor
from pycocoevalcap.rouge.rouge import Rouge
from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer
from sacrebleu.tokenizers.tokenizer_13a import Tokenizer13a

REFERENCES = [
    [
        "The Copper Kettle is a pub by the river that serves Italian food.",
        "Down by the riverside, The Copper Kettle pub has Italian dishes.",
        "For Italian food near the river, try The Copper Kettle, a pub.",
    ],
    [
        "Blue Lantern, near Old Mill, is highly rated and costs £20-25 per person.",
        "Near Old Mill you will find Blue Lantern, which has a high customer rating and prices of £20-25.",
    ],
    [
        "Green Door is a family-friendly coffee shop.",
        "Families are welcome at the Green Door coffee shop.",
        "Green Door is a coffee shop where kids are welcome.",
        "The Green Door coffee shop is child friendly.",
    ],
    ["Harbour Light serves fast food in the city centre and it's rated 3 out of 5."],
    [
        "The Stone Bridge is an expensive French restaurant; it doesn't welcome families.",
        "Stone Bridge serves French food at high prices and isn't family-friendly.",
    ],
    [
        "Red Fox is a cheap English pub near the station.",
        "Near the station, Red Fox is a low-priced pub serving English food.",
    ],
]

HYPOTHESES = [
    "The copper kettle is a pub by the river that serves Italian food.",
    "Blue Lantern is near Old Mill. It has a high customer rating and costs £20-25.",
    "Green Door is a coffee shop that is family-friendly.",
    "Harbour Light is a fast food place in the city centre rated 3 out of 5.",
    "The Stone Bridge is a French restaurant with high prices, it's not family-friendly.",
    "Yellow Tree sells books.",
]


def main():
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).with_name("e2e_metrics.json")
    width = max(len(r) for r in REFERENCES)
    streams = [[refs[i] if i < len(refs) else None for refs in REFERENCES] for i in range(width)]
    bleu = sacrebleu.corpus_bleu(HYPOTHESES, streams, tokenize="13a")
    bleu_lc = sacrebleu.corpus_bleu(HYPOTHESES, streams, tokenize="13a", lowercase=True)
    tok = Tokenizer13a()
    nist = corpus_nist(
        [[tok(r.rstrip()).split() for r in refs] for refs in REFERENCES],
        [tok(h.rstrip()).split() for h in HYPOTHESES],
        n=5,
    )

    # pycocoevalcap inputs: {id: [{"caption": text}]}, tokenized by PTBTokenizer (Java).
    gts = {i: [{"caption": r} for r in refs] for i, refs in enumerate(REFERENCES)}
    res = {i: [{"caption": h}] for i, h in enumerate(HYPOTHESES)}
    ptb = PTBTokenizer()
    gts_tok = ptb.tokenize(gts)
    res_tok = ptb.tokenize(res)
    rouge, _ = Rouge().compute_score(gts_tok, res_tok)
    cider, _ = Cider().compute_score(gts_tok, res_tok)
    meteor, _ = Meteor().compute_score(gts_tok, res_tok)

    fixture = {
        "generated_by": "gen_e2e_metrics.py",
        "versions": {p: version(p) for p in ["sacrebleu", "nltk", "pycocoevalcap"]},
        "hypotheses": HYPOTHESES,
        "references": REFERENCES,
        "tokens_13a": {s: tok(s.rstrip()).split() for s in HYPOTHESES + sum(REFERENCES, [])},
        "ptb_hypotheses": [res_tok[i][0] for i in range(len(HYPOTHESES))],
        "ptb_references": [gts_tok[i] for i in range(len(REFERENCES))],
        "bleu": bleu.score,
        "bleu_precisions": bleu.precisions,
        "bleu_lowercase": bleu_lc.score,
        "nist_nltk": nist,
        "rouge_l": float(rouge),
        "cider": float(cider),
        "meteor": float(meteor),
    }
    out.write_text(json.dumps(fixture, indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
