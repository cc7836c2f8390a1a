"""anygpt.eval.tasks on small items made here and systems whose answers are known: the
summaries, groups and per-item rows a task reports, and its refusals."""

from __future__ import annotations

import math
import random
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from anygpt.data import scenes
from anygpt.errors import UnsafePathError
from anygpt.eval.benchmarks import BenchmarkError, EvalItem
from anygpt.eval.systems import SystemLoadError
from anygpt.eval.tasks import TaskContext, _mean, run_asr, run_text_to_image


class Transcriber:
    name = "fake-asr"

    def __init__(self, answers: dict[str, str]):
        self.answers = answers

    def transcribe(self, path: Path) -> str:
        return self.answers[Path(path).stem]


def _speech_items(tmp_path) -> list[EvalItem]:
    items = []
    for i, (speaker, text) in enumerate([("a", "the cat sat"), ("a", "on the mat"), ("b", "a red ball")]):
        path = tmp_path / f"clip{i}.wav"
        path.write_bytes(b"")  # the fake system never reads it
        items.append(EvalItem(id=f"clip{i}", path=path, text=text, speaker=speaker))
    return items


def test_asr_counts_errors_per_corpus_and_per_speaker(tmp_path):
    items = _speech_items(tmp_path)
    # speaker a: 6 words, one substituted; speaker b: 3 words, one deleted
    system = Transcriber({"clip0": "the cat sat", "clip1": "on the hat", "clip2": "a red"})
    report = run_asr(items, system, TaskContext(tmp_path, system_name="fake", progress=False))
    assert (report["task"], report["system"], report["n"]) == ("asr", "fake", 3)
    assert report["summary"]["wer"] == pytest.approx(2 / 9)
    assert report["summary"]["clip_wer_mean"] == pytest.approx((0 + 1 / 3 + 1 / 3) / 3)
    groups = {g["speaker"]: g for g in report["groups"]["speaker"]}
    assert groups["a"]["n"] == 2 and groups["a"]["wer"] == pytest.approx(1 / 6)
    assert groups["b"]["n"] == 1 and groups["b"]["wer"] == pytest.approx(1 / 3)
    assert [r["id"] for r in report["items"]] == ["clip0", "clip1", "clip2"]


def test_a_task_refuses_a_system_without_its_method_and_items_without_what_it_needs(tmp_path):
    items = _speech_items(tmp_path)
    with pytest.raises(SystemLoadError, match=r"has no method transcribe\(\); task 'asr' needs it"):
        run_asr(items, object(), TaskContext(tmp_path, progress=False))
    items[1].text = None
    with pytest.raises(BenchmarkError, match=r"task 'asr' needs audio and a transcript for every item; 1 lack it, e.g. \['clip1'\]"):
        run_asr(items, Transcriber({}), TaskContext(tmp_path, progress=False))


class Painter:
    """Draws the scene its caption came from (right), or a blank picture (wrong)."""

    def __init__(self, specs: dict[str, scenes.SceneSpec], right: bool):
        self.specs, self.right = specs, right

    def draw(self, caption: str, out_path: Path):
        if not self.right:
            return Image.new("RGB", (64, 64), "white")
        return scenes.render_scene(self.specs[caption], size=64)


def test_text_to_image_reads_the_drawn_scene_back(tmp_path):
    rng = random.Random(0)
    specs = [scenes.sample_scene(rng) for _ in range(4)]
    items = [EvalItem(id=f"s{i}", text=scenes.describe(s), attributes=scenes.attributes(s)) for i, s in enumerate(specs)]
    by_caption = {scenes.describe(s): s for s in specs}
    right = run_text_to_image(items, Painter(by_caption, True), TaskContext(tmp_path / "r", progress=False))
    assert right["summary"]["scene_exact"] == 1.0 and right["summary"]["object_accuracy"] == 1.0
    assert all(Path(r["output"]).is_file() for r in right["items"])
    assert Path(right["items"][0]["output"]) == tmp_path / "r" / "images" / "s0.png"
    blank = run_text_to_image(items, Painter(by_caption, False), TaskContext(tmp_path / "b", progress=False))
    assert blank["summary"]["scene_exact"] == 0.0 and blank["summary"]["scene_count"] == 0.0


def test_media_paths_stay_inside_the_work_folder(tmp_path):
    ctx = TaskContext(tmp_path)
    assert ctx.media_path("images", "a", ".png") == tmp_path / "images" / "a.png"
    for bad in ("../escape", "/abs/path"):
        with pytest.raises(UnsafePathError, match="item id"):
            ctx.media_path("images", bad, ".png")


def test_mean_of_scores_skips_missing_and_keeps_lossless_psnr():
    assert _mean([1.0, None, 3.0]) == 2.0
    assert _mean([1.0, math.inf]) == 1.0  # one lossless item does not make the mean infinite
    assert _mean([math.inf, math.inf]) == math.inf
    assert _mean([None]) is None and _mean([]) is None
    assert _mean(np.array([2.0, 4.0])) == 3.0
