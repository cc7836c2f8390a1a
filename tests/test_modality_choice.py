"""The request-to-modality rule of `anygpt chat --force-modality auto` (anygpt.modality_choice)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from anygpt.instructions import POOLS
from anygpt.modality_choice import choose_modality, reply_modality, requested_modality
from anygpt.templates import SPOKEN_INSTRUCTION_PROMPT

# phrasings written for this test, not taken from any pool the rule was checked on while written
HELD_OUT = {
    "image": ["Please paint a green triangle at the top.", "Could you make me a drawing of two stars?",
              "I want a picture with a purple square on gray.", "Sketch a small orange circle.",
              "Create an image: three red squares on black.", "Show me a yellow star in the corner.",
              "Draw a red circle for me.", "Draw a big red circle in the middle on a white background."],
    "speech": ['Speak the words "good morning".', "Please say hello to my friend.",
               "Read this sentence out loud: it is raining.", "Pronounce the word banana.",
               "Can you read aloud: see you soon.", "Say: the cat sat on the mat."],
    "music": ["Play something cheerful on the piano.", "Compose a slow waltz.",
              "Could you play a sad melody in A minor?", "Make me a short song for violin.",
              "I would like some music for a rainy day."],
    "text": ["Who are you?", "Hello, who are you?", "What colour is the circle?", "How many objects are in this image?",
             "Describe the music I sent.", "Explain what you heard.", "Tell me a joke.", "Is this a happy tune?",
             "Thanks!", "Describe this picture.", "What is in this picture?"],
}


@pytest.mark.parametrize("want,request_", [(m, r) for m, rs in HELD_OUT.items() for r in rs])
def test_held_out_requests(want, request_):
    assert requested_modality(request_) == want


@pytest.mark.parametrize("pool", sorted(POOLS))
def test_every_instruction_of_the_pools_asks_for_its_output(pool):
    """The training instructions: X_to_text asks for text, text_to_X for X."""
    want = pool.split("_to_")[1] if pool.startswith("text_to_") else "text"
    wrong = [r for r in POOLS[pool] if requested_modality(r) != want]
    assert wrong == []


def test_the_conversation_writer_requests_ask_for_their_turns_modality():
    """The user turns of the offline conversation writer (read from its source, so a new
    phrasing there is checked too) ask for the modality of the reference reply."""
    src = (Path(__file__).resolve().parents[1] / "src/anygpt/data/instruct/offline_writer.py").read_text()
    scope: dict = {}
    exec(src[src.index("ASK_IMAGE ="):src.index("SCENARIOS =")], scope)
    cases = {"ASK_IMAGE": "image", "ASK_ABOUT_IMAGE": "text", "ASK_MUSIC": "music", "ASK_ABOUT_MUSIC": "text",
             "ASK_TEXT": "text", "ASK_SAY": "speech", "SPOKEN_REQUESTS": "text"}
    for name, want in cases.items():
        c = "a slow piano piece in C major" if "MUSIC" in name else "two small red circles at the top"
        for template in scope[name]:
            request = template.format(c=c, s="The river is long and cold.")
            assert requested_modality(request) == want, request


def test_the_first_cue_decides_so_a_payload_does_not():
    assert requested_modality("Say: draw a red circle.") == "speech"
    assert requested_modality("Draw this: say hello.") == "image"
    assert requested_modality("Describe this image, then draw it.") == "text"


def test_a_question_asks_for_text_unless_it_asks_you_to_make_media():
    assert requested_modality("What does the speaker say?") == "text"
    assert requested_modality("Can you draw a cat?") == "image"
    assert requested_modality("How would a blue star look? Draw it.") == "image"


def test_choose_modality_falls_back_to_text_for_what_the_model_cannot_write():
    assert choose_modality("Play a jazz tune.", ["image", "speech", "music"]) == "music"
    assert choose_modality("Play a jazz tune.", ["image"]) == "text"
    assert choose_modality("What is this?", ["image", "speech", "music"]) == "text"
    # nothing to read, or the paper's spoken instruction (text, then speech): the model chooses
    assert choose_modality("", ["image"]) is None and choose_modality(None, ["image"]) is None
    assert choose_modality(SPOKEN_INSTRUCTION_PROMPT, ["speech"]) is None


def test_reply_modality_resolves_auto_none_and_a_name():
    media = ["image", "speech", "music"]
    assert reply_modality("auto", "Draw a star.", media) == "image"
    assert reply_modality("none", "Draw a star.", media) is None
    assert reply_modality(None, "Draw a star.", media) is None
    assert reply_modality("music", "Draw a star.", media) == "music"


def test_the_readme_first_command_needs_no_force_modality():
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    first = next(line for line in readme.splitlines() if "anygpt chat --message" in line)
    assert "--force-modality" not in first
    request = re.search(r'--message "([^"]+)"', first).group(1)
    assert requested_modality(request) == "image"


# ----------------------------------------------------------------------------- in the chat path
def test_generate_auto_forces_what_the_message_asks_for():
    from anygpt.conversation import Conversation
    from anygpt.lm.generation import GenerationSettings
    from anygpt.loaders import random_media_model

    model = random_media_model(seed=1)
    conv = Conversation()
    conv.add_user("Draw a small green star at the top on a gray background.")
    reply = model.generate(conv, settings=GenerationSettings(max_new_tokens=40), force_modality="auto", seed=0)
    assert [p.modality for p in reply.media()] == ["image"]  # forced: the reply starts with <soim>
    assert reply.media()[0].codes.shape == (1, 32)


def test_generate_auto_gives_a_spoken_instruction_its_speech():
    """The paper's spoken instruction: whatever the model writes first, the reply holds speech."""
    from anygpt.conversation import Conversation
    from anygpt.lm.generation import GenerationSettings
    from anygpt.loaders import random_media_model
    from anygpt.parts import CodesPart
    from anygpt.templates import spoken_instruction_turn

    model = random_media_model(seed=1)
    speech = CodesPart("speech", torch.randint(0, 8, (1, 12)))
    with torch.no_grad():
        model.lm.model.norm.weight.zero_()  # every logit 0: greedy writes id 0, a text token, never media
    settings = GenerationSettings(max_new_tokens=30, do_sample=False)
    for force in ("none", "auto"):
        conv = Conversation([spoken_instruction_turn(speech)])
        reply = model.generate(conv, settings=settings, force_modality=force, seed=0)
        kinds = [p.modality for p in reply.media()]
        assert kinds == (["speech"] if force == "auto" else []), force
        assert conv.turns[-1].parts == reply.parts


def test_generate_auto_answers_a_question_without_media():
    """A question means text: the constraint starts no segment, even where the weights would."""
    from anygpt.conversation import Conversation
    from anygpt.lm.generation import GenerationSettings
    from anygpt.loaders import random_media_model

    model = random_media_model(seed=1)
    starts = [model.layout[m].start_id for m in model.layout.modalities]
    head = model.lm.get_output_embeddings().weight  # [V, H]
    with torch.no_grad():
        v = torch.randn(head.shape[1])
        head.zero_()  # every logit 0 ...
        for sign, i in zip((1, -1, 1), starts):
            head[i] = 50 * sign * v  # ... but one start marker's, whichever sign the hidden state takes
    for force, want in (("none", {"image", "speech", "music"}), ("auto", set())):
        conv = Conversation()
        conv.add_user("What colour is the circle?")
        reply = model.generate(conv, settings=GenerationSettings(max_new_tokens=60, do_sample=False),
                               force_modality=force, seed=0)
        assert {p.modality for p in reply.media()} <= want and (force == "auto" or reply.media()), force


def test_chat_without_force_modality_answers_a_drawing_request_with_an_image(tmp_path, capsys):
    from anygpt import cli

    out = tmp_path / "out"
    assert cli.main(["chat", "--model", "random-64x2", "--message", "Draw a red circle.", "--out", str(out)]) == 0
    assert (out / "turn000-0-image.codes.txt").is_file()  # random-64x2 has no de-tokenizer: codes
    out2 = tmp_path / "out2"
    assert cli.main(["chat", "--model", "random-64x2", "--message", "Say: hello there.", "--out", str(out2),
                     "--max-new-tokens", "30"]) == 0
    assert sorted(f.name for f in out2.glob("*.codes.txt"))[:1] == ["turn000-0-speech.codes.txt"]


def test_chat_help_describes_the_default_models_world(capsys):
    from anygpt import cli
    from anygpt.data import scenes

    assert cli.main(["chat", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    for word in (*scenes.SHAPES, *scenes.PALETTE, *scenes.BACKGROUNDS, "small", "large"):
        assert word in text, word
    assert "--force-modality auto" in text and "not expected to be good" in text


def test_the_readme_first_command_draws_with_the_shipped_model(tmp_path):
    """The README's first command, as written (no --force-modality), on anygpt-tiny: a picture."""
    from anygpt import cli

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    first = next(line for line in readme.splitlines() if "anygpt chat --message" in line)
    request = re.search(r'--message "([^"]+)"', first).group(1)
    out = tmp_path / "out"
    assert cli.main(["chat", "--message", request, "--out", str(out), "--threads", "1"]) == 0
    assert [p.name for p in out.iterdir()] == ["turn000-0-image.png"]
