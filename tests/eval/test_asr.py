import pytest

from anygpt.eval.asr import clip_errors, error_rates, transcribe
from anygpt.eval.benchmarks import read_eval_items


def test_clip_errors_counts_after_normalisation():
    c = clip_errors("The cat sat on the mat.", "the cat sat on a mat")
    assert (c.ref_words, c.word_errors) == (6, 1)
    assert c.wer == pytest.approx(1 / 6)
    assert clip_errors("Forty-two!", "42").wer == 0.0
    assert clip_errors("hello world", "").wer == 1.0


def test_error_rates_aggregate_is_corpus_level():
    r = error_rates(["a b c d", "e f"], ["a b c d", "x y"])
    assert r["wer"] == pytest.approx(2 / 6)
    assert r["n"] == 2 and len(r["clips"]) == 2


@pytest.mark.slow
def test_whisper_reads_flite_speech(speech_corpus):
    items = read_eval_items(speech_corpus)
    hyps = [transcribe(it.path) for it in items]
    r = error_rates([it.text for it in items], hyps)
    assert r["wer"] < 0.2, list(zip([it.text for it in items], hyps))
