"""Voice-free content units (anygpt.nn.content_units) on made-up "speech": sequences of phones
whose features carry a large voice-specific offset and gain, spoken at voice-specific speeds."""

from __future__ import annotations

import numpy as np
import pytest
from rapidfuzz.distance import Levenshtein

import torch
import torch.nn.functional as F

from anygpt.nn.content_units import ContentUnitsConfig, dtw_path, kmeans, train_content_units

PHONES, DIM = 6, 16


def made_up_speech(sentences: int, voices: int, seed: int = 0):
    """-> (clips: (voice, sentence) -> features [T, DIM], texts: per sentence its phone indices [8])."""
    rng = np.random.default_rng(seed)
    phone_vec = rng.standard_normal((PHONES, DIM)) * 2
    voice_offset = rng.standard_normal((voices, DIM)) * 3  # the voice moves every frame far
    voice_gain = rng.uniform(0.6, 1.6, (voices, DIM))
    voice_speed = rng.integers(2, 5, voices)  # frames per phone
    texts = [rng.integers(0, PHONES, 8) for _ in range(sentences)]
    clips = {}
    for s, text in enumerate(texts):
        for v in range(voices):
            frames = np.repeat(text, voice_speed[v])
            clips[(f"v{v}", s)] = (phone_vec[frames] * voice_gain[v] + voice_offset[v]
                                   + 0.1 * rng.standard_normal((len(frames), DIM))).astype(np.float32)
    return clips, texts


def dedup(units):
    u = units.tolist()
    return [x for i, x in enumerate(u) if i == 0 or x != u[i - 1]]


def test_dtw_aligns_a_slowed_copy():
    a = np.eye(4, dtype=np.float32)
    b = np.repeat(a, 2, axis=0)
    path = dtw_path(a, b)
    assert path[0] == (0, 0) and path[-1] == (3, 7)
    assert all(i == j // 2 for i, j in path)


def test_units_are_the_same_in_every_voice_and_differ_between_sentences():
    clips, _ = made_up_speech(sentences=24, voices=5)
    train = {k: v for k, v in clips.items() if k[1] < 16}
    model = train_content_units(train, ContentUnitsConfig(input_dim=DIM, hidden=32, dim=8, units=8),
                                epochs=8, pairs_per_sentence=6, batch=256)
    raw_centroids = kmeans(F.normalize(torch.from_numpy(np.concatenate(list(train.values()))), dim=-1), 8)

    def distances(units_of):
        """(same sentence in two voices, two held-out sentences in one voice): mean edit distances."""
        test = {k: dedup(units_of(v)) for k, v in clips.items() if k[1] >= 16}
        voices = sorted({k[0] for k in test})
        same = [Levenshtein.normalized_distance(test[(a, s)], test[(b, s)])
                for s in range(16, 24) for i, a in enumerate(voices) for b in voices[i + 1:]]
        other = [Levenshtein.normalized_distance(test[(v, s)], test[(v, t)])
                 for v in voices for s in range(16, 24) for t in range(s + 1, 24)]
        return np.mean(same), np.mean(other)

    raw_same, raw_other = distances(lambda v: (F.normalize(torch.from_numpy(v), dim=-1) @ raw_centroids.t()).argmax(-1))
    assert raw_same > 0.8 > raw_other  # k-means of the raw features: units name the voice
    same, other = distances(model.units)
    assert same < 0.4 and other > 0.6, (same, other)


def test_sentence_voices_are_all_or_a_fixed_draw_per_sentence():
    from anygpt.nn.content_units import sentence_voices

    voices = [f"v{i}" for i in range(10)]
    assert sentence_voices(voices, None, 3) == voices and sentence_voices(voices, 12, 3) == voices
    drawn = [sentence_voices(voices, 4, s, seed=1) for s in range(6)]
    assert all(len(d) == 4 == len(set(d)) and set(d) <= set(voices) for d in drawn)
    assert drawn == [sentence_voices(voices, 4, s, seed=1) for s in range(6)]  # the same on a rerun
    assert len({tuple(d) for d in drawn}) > 1  # drawn per sentence, not once


def made_up_phone_clips(sentences: int, voices: int, seed: int = 0):
    """As made_up_speech, over 6 of the real PHONES -> (clips, sentence -> its phonemes)."""
    from anygpt.nn.content_units import PHONES as REAL

    clips, texts = made_up_speech(sentences, voices, seed)
    return clips, {s: [REAL[i] for i in text] for s, text in enumerate(texts)}


def test_phone_units_read_the_texts_phones_in_every_voice():
    from anygpt.nn.content_units import PHONES as REAL, phone_ids, train_phone_units

    clips, phonemes = made_up_phone_clips(sentences=40, voices=5)
    train = {k: v for k, v in clips.items() if k[1] < 32}
    cfg = ContentUnitsConfig(input_dim=DIM, hidden=32, dim=16, units=len(REAL), objective="phones", context=1)
    model = train_phone_units(train, phonemes, cfg, epochs=60, batch=8)
    read = {k: dedup(model.units(v)) for k, v in clips.items() if k[1] >= 32}  # held-out sentences
    wrong = [Levenshtein.normalized_distance(units, dedup(torch.tensor(phone_ids(phonemes[s]))))
             for (_, s), units in read.items()]
    assert np.mean(wrong) < 0.15, np.mean(wrong)  # the runs of units spell the text's phones
    assert all(len(model.units(v)) == len(v) for v in clips.values())  # one unit per frame


def test_phone_units_fold_allophones_and_a_blank_continues_the_phone_before():
    from anygpt.nn.content_units import PHONES as REAL, ContentUnits, phone_ids

    assert phone_ids(["D", "@2", "I#", "!", "t#", "aI3"]) == [REAL.index(p) for p in ("D", "@", "I", "t", "aI")]
    model = ContentUnits(ContentUnitsConfig(input_dim=4, hidden=8, dim=4, units=len(REAL), objective="phones"))
    best = torch.tensor([0, 0, 3, 0, 0, 5, 5, 0])  # per frame: blank, blank, phone 3 ...

    def fixed_logits(z):
        return F.one_hot(best, 1 + len(REAL)).float() * 10

    model.phone_logits = fixed_logits
    assert model.units(np.random.default_rng(0).standard_normal((8, 4))).tolist() == [2, 2, 2, 2, 2, 4, 4, 4]
    with pytest.raises(ValueError, match="len\\(PHONES\\)"):
        ContentUnitsConfig(units=256, objective="phones")
    with pytest.raises(ValueError, match="objective"):
        ContentUnitsConfig(objective="words")
    with pytest.raises(ValueError, match="phonemes"):
        train_content_units(made_up_speech(2, 2)[0], ContentUnitsConfig(input_dim=DIM, units=len(REAL), objective="phones"))


def test_phonemes_are_espeak_ngs_reading_of_the_text():
    from anygpt.data.corpora.speech import phonemes
    from anygpt.nn.content_units import PHONES as REAL, phone_ids

    assert phone_ids(phonemes("The dog.")) == [REAL.index(p) for p in ("D", "@", "d", "0", "g")]
    assert phonemes("The dog.") == phonemes("The dog.", voice="en-us")
