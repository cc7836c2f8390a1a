import pytest

from anygpt.eval.music_attributes import (
    compare_music, estimate_key, estimate_tempo, music_attributes, parse_key, register_name, same_key, tempo_matches,
)
from anygpt.eval.music_notes import Note, note_f1, transcribe_notes


def test_note_f1_on_note_lists():
    ref = [Note(i * 0.5, i * 0.5 + 0.4, 60 + i) for i in range(8)]
    assert note_f1(ref, ref)["f1"] == 1.0
    shifted = [Note(n.onset + 0.2, n.offset + 0.2, n.pitch) for n in ref]
    assert note_f1(ref, shifted)["f1"] == 0.0
    half = ref[:4]
    assert note_f1(ref, half) == pytest.approx({"precision": 1.0, "recall": 0.5, "f1": 2 / 3})
    assert note_f1([], [])["f1"] == 1.0 and note_f1(ref, [])["f1"] == 0.0


@pytest.mark.slow
def test_rendered_melody_transcribes_to_itself(melodies):
    a_path, a_notes, _ = melodies["a"]
    b_path, _, _ = melodies["b"]
    est_a = transcribe_notes(a_path)
    est_b = transcribe_notes(b_path)
    truth = [Note(s, e, p) for s, e, p in a_notes]
    assert note_f1(est_a, transcribe_notes(a_path))["f1"] == 1.0  # deterministic
    assert note_f1(truth, est_a)["f1"] > 0.7  # close to the score itself
    assert note_f1(est_a, est_b)["f1"] < 0.2  # a different melody


@pytest.mark.slow
def test_key_tempo_register_of_rendered_clips(melodies):
    for path, notes, truth in melodies.values():
        est = music_attributes(path)
        got = compare_music(est, truth)
        assert got["key"] and got["mode"] and got["tempo"], (truth, est)


def test_key_helpers():
    assert parse_key("E flat major") == ("E-", "major")
    assert parse_key("F# minor") == ("F#", "minor")
    assert parse_key("Bb") == ("B-", None)
    assert same_key(("D#", "minor"), ("E-", "minor"))
    assert not same_key(("C", "major"), ("A", "minor"))
    notes = [Note(i * 0.5, i * 0.5 + 0.45, p) for i, p in enumerate([60, 64, 67, 72, 67, 64, 65, 62, 59, 60])]
    assert estimate_key(notes) == ("C", "major")
    assert register_name(notes) == "middle"
    assert register_name([Note(0, 1, 40)]) == "low" and register_name([Note(0, 1, 80)]) == "high"


def test_tempo_matching_and_click_track():
    import numpy as np

    assert tempo_matches(121, 120) and not tempo_matches(130, 120)
    assert tempo_matches(60, 120, octave=True) and not tempo_matches(60, 120)
    sr = 22050
    y = np.zeros(sr * 8, dtype=np.float32)
    for k in range(int(8 * 100 / 60)):  # clicks at 100 BPM
        i = int(k * 0.6 * sr)
        y[i:i + 200] = np.hanning(200)
    assert estimate_tempo(y, sample_rate=sr) == pytest.approx(100, rel=0.03)
