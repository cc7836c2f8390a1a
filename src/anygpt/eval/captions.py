"""Caption metrics: BLEU-4, METEOR, ROUGE-L, CIDEr (pycocoevalcap) and exact attribute accuracy.

The COCO metrics run the PTB tokenizer and METEOR on Java (/usr/bin/java). CIDEr's document
frequencies come from the references of the evaluated set, as in the COCO toolkit, so it is
only meaningful over a set of several images.

Attribute accuracy reads attribute values back from a generated caption with a vocabulary
(attribute name -> allowed values, e.g. {"colour": ["red", "blue"], "shape": [...]}) and
compares them with the ground-truth attributes: a caption scores on an attribute only if it
names the right value and no other value of that attribute.
"""

from __future__ import annotations

import re
from typing import Mapping, Sequence

from anygpt.nn.minilm import minilm


def coco_caption_scores(references: Mapping[str, Sequence[str]], hypotheses: Mapping[str, str],
                        *, meteor: bool = True) -> dict[str, float]:
    """Corpus scores of hypotheses (id -> caption) against references (id -> [captions]).

    Returns {"BLEU-1".."BLEU-4", "METEOR", "ROUGE-L", "CIDEr"} (0..1 scale; CIDEr 0..10).
    """
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    missing = [k for k in references if k not in hypotheses]
    if missing:
        raise ValueError(f"no hypothesis for {len(missing)} ids, e.g. {missing[:3]}")
    ids = list(references)
    tok = PTBTokenizer()
    gts = tok.tokenize({i: [{"caption": c} for c in references[i]] for i in ids})
    res = tok.tokenize({i: [{"caption": hypotheses[i] or ""}] for i in ids})
    # PTB tokenisation can empty a caption (only punctuation); the scorers want one string each
    res = {i: [c[0] if c and c[0] else "empty"] for i, c in res.items()}
    out: dict[str, float] = {}
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    for n, b in enumerate(bleu, 1):
        out[f"BLEU-{n}"] = float(b)
    if meteor:
        from pycocoevalcap.meteor.meteor import Meteor

        m = Meteor()
        try:
            out["METEOR"] = float(m.compute_score(gts, res)[0])
        finally:
            _close_meteor(m)
    out["ROUGE-L"] = float(Rouge().compute_score(gts, res)[0])
    out["CIDEr"] = float(Cider().compute_score(gts, res)[0])
    return out


def _close_meteor(m) -> None:
    proc = getattr(m, "meteor_p", None)
    if proc is not None:
        try:
            with m.lock:
                proc.stdin.close()
                proc.kill()
                proc.wait()
        except Exception:  # the scorer may already have shut down
            pass


def _pattern(value: str) -> re.Pattern:
    words = [re.escape(w) for w in value.lower().split()]
    return re.compile(r"(?<![\w-])" + r"[\s-]+".join(words) + r"(?:s|es)?(?![\w-])")


def extract_attributes(text: str, vocabulary: Mapping[str, Sequence[str]]) -> dict[str, str | None]:
    """Read each attribute's value from free text: the one vocabulary value it names, else None.

    A value matches as whole words, case-insensitively, plural 's'/'es' allowed; when values
    overlap ("major" inside "c major") the longest match wins. Two different values -> None.
    """
    low = text.lower()
    out: dict[str, str | None] = {}
    for name, values in vocabulary.items():
        spans: list[tuple[int, int, str]] = []
        for v in sorted(values, key=lambda v: -len(str(v))):
            for m in _pattern(str(v)).finditer(low):
                if not any(s <= m.start() < e or s < m.end() <= e for s, e, _ in spans):
                    spans.append((m.start(), m.end(), str(v)))
        found = {v for _, _, v in spans}
        out[name] = found.pop() if len(found) == 1 else None
    return out


def attribute_accuracy(hypotheses: Sequence[str], truths: Sequence[Mapping[str, object]],
                       vocabulary: Mapping[str, Sequence[str]]) -> dict:
    """Per-attribute and overall exact accuracy of attributes named by generated captions.

    truths[i][name] is the ground-truth value; attributes missing from a truth are skipped.
    Returns {"per_attribute": {name: acc}, "all_correct": fraction of captions with every
    attribute right, "n": count}.
    """
    if len(hypotheses) != len(truths):
        raise ValueError(f"{len(hypotheses)} captions but {len(truths)} ground truths")
    hits: dict[str, list[bool]] = {k: [] for k in vocabulary}
    all_ok = []
    for hyp, truth in zip(hypotheses, truths):
        got = extract_attributes(hyp, vocabulary)
        ok = True
        for name in vocabulary:
            if name not in truth or truth[name] is None:
                continue
            right = got[name] is not None and got[name].lower() == str(truth[name]).lower()
            hits[name].append(right)
            ok &= right
        all_ok.append(ok)
    return {
        "per_attribute": {k: (sum(v) / len(v) if v else None) for k, v in hits.items()},
        "all_correct": sum(all_ok) / max(len(all_ok), 1),
        "n": len(all_ok),
    }


def text_similarity(a: Sequence[str], b: Sequence[str]) -> list[float]:
    """Cosine similarity of all-MiniLM-L6-v2 sentence embeddings, pairwise a[i] vs b[i]."""
    import numpy as np

    model = minilm()
    ea = model.encode(list(a), normalize_embeddings=True)
    eb = model.encode(list(b), normalize_embeddings=True)
    return [float(x) for x in np.sum(ea * eb, axis=1)]
