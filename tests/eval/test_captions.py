import random

import pytest

from anygpt.eval.captions import attribute_accuracy, coco_caption_scores, extract_attributes
from anygpt.eval.scene_captions import parse_scene_caption, scene_caption_accuracy

REFS = {
    "1": ["a red circle on the left of a white picture", "one red circle at the left side"],
    "2": ["two blue squares at the top", "a pair of blue squares on top of the image"],
    "3": ["a green triangle in the middle", "a small green triangle in the centre"],
}


@pytest.mark.slow
def test_coco_metrics_on_hand_made_references():
    perfect = coco_caption_scores(REFS, {k: v[0] for k, v in REFS.items()})
    assert perfect["BLEU-4"] > 0.99 and perfect["ROUGE-L"] > 0.99 and perfect["METEOR"] > 0.9
    close = coco_caption_scores(REFS, {"1": "a red circle on the left", "2": "two blue squares on top",
                                       "3": "a green triangle in the centre"}, meteor=False)
    wrong = coco_caption_scores(REFS, {"1": "a dog runs", "2": "music is playing", "3": "nothing here"}, meteor=False)
    for k in ("BLEU-4", "ROUGE-L", "CIDEr"):
        assert perfect[k] >= close[k] > wrong[k], k
    assert wrong["CIDEr"] == 0.0
    with pytest.raises(ValueError):
        coco_caption_scores(REFS, {"1": "x"})


def test_attribute_extraction_and_accuracy():
    voc = {"key": ["C major", "A minor", "E flat major"], "mode": ["major", "minor"], "instrument": ["violin", "flute"]}
    got = extract_attributes("A lively violin tune in E flat major.", voc)
    assert got == {"key": "E flat major", "mode": "major", "instrument": "violin"}
    assert extract_attributes("violin and flute", voc)["instrument"] is None  # two values: not exact
    acc = attribute_accuracy(["violin in C major", "flute in A minor"],
                             [{"key": "C major", "instrument": "violin"}, {"key": "C major", "instrument": "flute"}], voc)
    assert acc["per_attribute"]["key"] == 0.5 and acc["per_attribute"]["instrument"] == 1.0
    assert acc["all_correct"] == 0.5 and acc["per_attribute"]["mode"] is None


def test_scene_caption_parser_on_corpus_captions():
    from anygpt.data import scenes

    rng = random.Random(3)
    for _ in range(300):
        spec = scenes.sample_scene(rng)
        assert scene_caption_accuracy(scenes.caption(spec, rng), scenes.attributes(spec))["exact"]
    p = parse_scene_caption("Two big red circles at the top left and top right on a gray background.")
    assert p["counts"] == {"red circle": 2} and p["background"] == "gray"
    assert p["positions"] == ["top-left", "top-right"] and p["sized_counts"] == {"large red circle": 2}
    spec = scenes.sample_scene(random.Random(1))
    assert not scene_caption_accuracy("A purple star on a black background.", scenes.attributes(spec))["exact"]
