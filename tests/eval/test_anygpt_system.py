"""The trained LM as an eval system: its prompts, its media outputs, the per-object caption
score, the held-out chat score and the report's derived figures."""

from __future__ import annotations

import json
import random

import pytest
import torch

from anygpt.eval.anygpt_system import AnyGPTSystem
from anygpt.eval.chat_eval import asked_for, run_chat
from anygpt.eval.lm_report import ROWS, Row, attribute_table, build_table, derived, plot_learning_curves, run_key
from anygpt.eval.scene_captions import scene_object_accuracy
from anygpt.lm.generation import GenerationSettings
from anygpt.lm.sequence import SequenceEncoder
from anygpt.lm.tiny import random_tiny
from anygpt.modalities import load_tokenizer
from anygpt.model import AnyGPT
from anygpt.parts import CodesPart, TextPart
from anygpt.templates import Turn, pretraining_pair, pretraining_prompt

SCENE = {"background": "black", "n_objects": 3, "counts": {"red circle": 2, "blue star": 1},
         "objects": [{"color": "red", "shape": "circle", "position": "top-left", "size": "small"},
                     {"color": "red", "shape": "circle", "position": "bottom", "size": "small"},
                     {"color": "blue", "shape": "star", "position": "center", "size": "large"}]}


@pytest.mark.parametrize("caption, expected", [
    ("Two small red circles, one at the top left and one at the bottom, and a large blue star in the centre, "
     "on a black background.", 1.0),
    ("Two red circles, one at the top left and one on the right, and a blue star in the middle.", 2 / 3),
    ("A red circle at the top left and a blue star in the centre.", 1 / 3),  # wrong count: both circles wrong
    ("A green square at the top left.", 0.0),
])
def test_scene_object_accuracy(caption, expected):
    assert scene_object_accuracy(caption, SCENE) == pytest.approx(expected)


@pytest.fixture(scope="module")
def tiny_layout_model():
    """A random LM in the compact tokenizers' layout, with the shipped tokenizers attached."""
    toks = {m: load_tokenizer(m, "compact") for m in ("image", "speech", "music")}
    lm, tok, layout = random_tiny([toks[m].token_spec for m in ("image", "speech", "music")], seed=1)
    return AnyGPT(lm, tok, layout, tokenizers=toks)


@pytest.mark.parametrize("direction", ["to_text", "from_text"])
def test_prompt_is_a_token_prefix_of_the_training_sample(tiny_layout_model, direction):
    model = tiny_layout_model
    codec = SequenceEncoder(model.tokenizer, model.layout)
    media = CodesPart("image", torch.arange(32).reshape(1, 32) % 1024)
    text = "A small red circle at the top left, on a black background."
    instruction = "Describe this image." if direction == "to_text" else "Draw this."
    sample = codec.encode(pretraining_pair(media, text, direction, random.Random(0), instruction))
    prompt = codec.encode(pretraining_prompt(direction, instruction, media=media, text=text))
    assert len(prompt) < len(sample) and torch.equal(sample[: len(prompt)], prompt)
    if direction == "from_text":  # the training text continues with the image's start marker
        assert int(sample[len(prompt)]) == model.layout["image"].start_id


def test_system_writes_media_and_text(tiny_layout_model, tmp_path):
    from PIL import Image

    from anygpt.media_io import load_audio

    system = AnyGPTSystem(tiny_layout_model)
    png = system.draw("a red circle", tmp_path / "a.png")
    assert Image.open(png).size == tuple(tiny_layout_model.tokenizers["image"].image_size)
    wav = system.speak("hello there", None, tmp_path / "b.wav")
    assert load_audio(wav, 16000).shape[-1] > 0
    assert isinstance(system.caption(png), str)
    assert isinstance(system.transcribe(wav), str)


class ScriptedModel:
    """Stands in for AnyGPT in the chat score: replies with a fixed list of parts per call, one
    list per force_modality (None: the model alone; "auto": anygpt chat's rule)."""

    def __init__(self, layout, replies):
        self.layout, self.replies = layout, {k: list(v) for k, v in replies.items()}

    def generate(self, conversation, *, force_modality, **kw):
        from anygpt.conversation import Reply

        assert conversation.turns[-1].role == "user"
        reply = self.replies[force_modality].pop(0)
        if reply == "malformed":
            from anygpt.errors import ModelOutputError

            raise ModelOutputError("unterminated segment")
        return Reply(reply)


def test_chat_score_counts_modalities_and_malformed_segments(tmp_path, tiny_layout_model):
    import json

    layout = tiny_layout_model.layout
    image = CodesPart("image", torch.zeros(1, 32, dtype=torch.long))
    speech = CodesPart("speech", torch.zeros(1, 10, dtype=torch.long))
    turns = [{"role": "user", "content": "Draw a cat."},
             {"role": "assistant", "content": "Here. " + layout.codes_to_text("image", image.codes)},
             {"role": "user", "content": "Say hi."},
             {"role": "assistant", "content": layout.codes_to_text("speech", speech.codes)},
             {"role": "user", "content": "Thanks."},
             {"role": "assistant", "content": "You are welcome."}]
    (tmp_path / "conversations.jsonl").write_text(json.dumps({"id": "c1", "turns": turns}) + "\n")
    assert asked_for(Turn("assistant", [TextPart("x"), image])) == ("image",)
    replies = {None: [[TextPart("ok "), image], [TextPart("text instead")], "malformed"],
               "auto": [[image], [speech], [TextPart("fine")]]}
    report = run_chat(tmp_path, ScriptedModel(layout, replies), limit=None, progress=False)
    assert [r["right"] for r in report["items"]] == [True, False, False]
    assert [r["right_rule"] for r in report["items"]] == [True, True, True]
    assert report["summary"]["modality_rate"] == pytest.approx(1 / 3)
    assert report["summary"]["modality_rate_rule"] == pytest.approx(1.0)
    assert report["summary"]["well_formed"] == pytest.approx(2 / 3)


def test_report_derives_ratios_and_targets():
    summaries = {"asr-heldout_sentences-anygpt": {"wer": 0.30}, "asr-heldout_sentences-whisper": {"wer": 0.20},
                 "text-to-music-heldout_pieces-anygpt": {"mode_accuracy": 1.0, "tempo_octave_accuracy": 0.5,
                                                         "register_accuracy": 0.0, "key_accuracy": 0.0}}
    ratio = next(r for r in ROWS if r.metric == "wer_ratio" and r.task == "asr")
    assert derived(summaries[run_key(ratio)], ratio, summaries) == pytest.approx(1.5)
    music = next(r for r in ROWS if r.task == "text-to-music" and r.system == "anygpt")
    assert derived(summaries[run_key(music)], music, summaries) == pytest.approx(0.5)
    table = {r["task"]: r for r in build_table(summaries)}
    assert table[ratio.name]["met"] is True and table[music.name]["met"] is False
    assert run_key(Row("x", "caption", "images", "test", "m", where=(("kind", "scene"),))) == "caption-test-kind=scene-anygpt"


def test_report_splits_the_scene_tasks_by_attribute():
    summaries = {"caption-test-kind=scene-anygpt": {"object_accuracy": 0.5, "attr_background": 1.0, "attr_count": 0.5,
                                                    "attr_sizes": 0.25, "attr_positions": 0.0, "color_named": 0.75,
                                                    "shape_named": 0.5, "attr_exact": 0.0},
                 "text-to-image-heldout_combos-kind=scene-anygpt": {"scene_exact": 0.1, "scene_background": 0.9,
                                                                    "scene_color": 0.4, "scene_shape": 0.3}}
    rows = {r["task"]: r for r in attribute_table(summaries)}
    assert set(rows) == {"caption, test", "text-to-image, heldout_combos"}
    assert rows["caption, test"] == {"task": "caption, test", "background": 1.0, "count": 0.5, "size": 0.25,
                                     "position": 0.0, "colour": 0.75, "shape": 0.5, "exact": 0.0}
    t2i = rows["text-to-image, heldout_combos"]
    assert (t2i["background"], t2i["colour"], t2i["shape"], t2i["exact"], t2i["size"]) == (0.9, 0.4, 0.3, 0.1, None)


def test_learning_curves_plot_the_validation_losses_of_a_run(tmp_path):
    from PIL import Image

    from anygpt.errors import AnyGPTError

    run = tmp_path / "pretrain"
    run.mkdir()
    rows = [{"step": 0, "eval": True, "val_text": 9.1, "val_image-pairs": 9.2}, {"step": 1, "loss": 9.0},
            {"step": 10, "eval": True, "val_text": 7.5, "val_image-pairs": 8.0}]
    (run / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"step": 11, "lo')  # killed mid-line
    png = plot_learning_curves([run], tmp_path / "out" / "learning-curves.png")
    assert Image.open(png).size[0] > 100 and not list((tmp_path / "out").glob(".*"))
    with pytest.raises(AnyGPTError, match="--curves: .*nothing: no such file"):
        plot_learning_curves([tmp_path / "nothing"], tmp_path / "x.png")
    (run / "log.jsonl").write_text(json.dumps({"step": 1, "loss": 9.0}) + "\n")
    with pytest.raises(AnyGPTError, match="no validation rows"):
        plot_learning_curves([run], tmp_path / "x.png")


def test_text_decoding_options_reach_the_model_and_bad_ones_are_named():
    """text_beams / text_repetition_penalty (strings, as --system-option gives them) set the
    text settings that complete() is called with; media settings keep their own."""
    seen = []

    class Recorder:
        def preset(self, name):
            return GenerationSettings()

        def complete(self, parts, settings, **kw):
            seen.append(settings)
            return [TextPart("ok")]

    system = AnyGPTSystem(Recorder(), text_beams="3", text_repetition_penalty="1.3")
    system.complete([TextPart("hi")], "text")
    assert (seen[0].num_beams, seen[0].repetition_penalty, seen[0].do_sample) == (3, 1.3, False)
    assert system.settings("speech").num_beams == 1 and system.settings("speech").repetition_penalty == 1.0
    from anygpt.lm.generation import GenerationSettingsError

    with pytest.raises(GenerationSettingsError, match="repetition_penalty"):
        AnyGPTSystem(Recorder(), text_repetition_penalty="0")


def test_image_guidance_option_draws_the_guided_codes(tiny_layout_model, tmp_path):
    """image_cfg (a string, as --system-option gives it) draws through classifier-free guidance:
    the same codes as draw_codes at that scale, which differ from plain greedy drawing here."""
    from anygpt.eval.scene_abilities import draw_codes
    from anygpt.errors import AnyGPTError

    caption = "A big red circle in the middle, on a white background."
    guided = AnyGPTSystem(tiny_layout_model, image_cfg="4").from_text("image", caption)
    assert torch.equal(guided.codes, draw_codes(tiny_layout_model, caption, 4.0))
    plain = AnyGPTSystem(tiny_layout_model).from_text("image", caption)
    assert torch.equal(plain.codes, draw_codes(tiny_layout_model, caption, 1.0))
    assert not torch.equal(guided.codes, plain.codes)
    with pytest.raises(AnyGPTError, match="cfg_scale=0.0"):
        AnyGPTSystem(tiny_layout_model, image_cfg="0")
    # by default the model folder's own guidance: none here, anygpt-tiny's 1.5 where it sets it
    assert AnyGPTSystem(tiny_layout_model).image_cfg == 1.0
    tiny_layout_model.generation_defaults = {"image": {"do_sample": False, "cfg_scale": 4.0}}
    try:
        assert torch.equal(AnyGPTSystem(tiny_layout_model).from_text("image", caption).codes, guided.codes)
    finally:
        tiny_layout_model.generation_defaults = {}
