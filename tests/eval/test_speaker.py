import itertools

import numpy as np
import pytest

from anygpt.eval.benchmarks import read_eval_items
from anygpt.eval.speaker import cosine, embed_speaker, speaker_centroid, centroid_similarity


def test_cosine():
    assert cosine(np.array([1.0, 0]), np.array([2.0, 0])) == pytest.approx(1.0)
    assert cosine(np.array([1.0, 0]), np.array([0, 3.0])) == pytest.approx(0.0)


@pytest.mark.slow
def test_same_speaker_more_similar_than_different(speech_corpus):
    items = read_eval_items(speech_corpus)
    emb = {it.id: embed_speaker(it.path) for it in items}
    assert emb[items[0].id].shape == (256,)
    spk = {it.id: it.speaker for it in items}
    same, diff = [], []
    for a, b in itertools.combinations(emb, 2):
        (same if spk[a] == spk[b] else diff).append(cosine(emb[a], emb[b]))
    assert len(same) >= 9 and len(diff) >= 27
    assert np.mean(same) > np.mean(diff) + 0.1
    assert min(same) > np.median(diff)
    # a held-out clip is closer to its own speaker's centroid than to any other speaker's
    by = {}
    for it in items:
        by.setdefault(it.speaker, []).append(it)
    for s, its in by.items():
        probe = its[0]
        sims = {t: centroid_similarity(probe.path, speaker_centroid([i.path for i in other[1:]]))
                for t, other in by.items()}
        assert max(sims, key=sims.get) == s
