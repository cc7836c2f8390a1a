"""anygpt.templates and anygpt.instructions: the release's exact strings, pools, chat templates."""

from __future__ import annotations

import random

import pytest
import torch

from anygpt.instructions import POOLS, generic_pool, instruction_pool
from anygpt.layout import TokenLayout
from anygpt.modalities import released_specs
from anygpt.parts import CodesPart, MediaFilePart, TextPart
from anygpt.templates import (
    CHAT_TEMPLATES,
    SPOKEN_INSTRUCTION_PROMPT,
    SYSTEM_ANYGPT,
    SYSTEM_MMGPT,
    SpokenReply,
    Turn,
    get_chat_template,
    parse_spoken_reply,
    pretraining_pair,
    spoken_instruction_turn,
    spoken_reply,
)

MEDIA_MODALITIES = ("image", "speech", "music")
DIRECTIONS = ("to_text", "from_text")


@pytest.fixture(scope="module")
def layout() -> TokenLayout:
    return TokenLayout.plan(32000, released_specs())


def render(parts, layout: TokenLayout) -> str:
    """Parts -> the string the release writes (media through the layout)."""
    out = []
    for p in parts:
        if isinstance(p, TextPart):
            out.append(p.text)
        elif isinstance(p, CodesPart):
            out.append(layout.codes_to_text(p.modality, p.codes))
        else:
            out.append(f"{{file:{p.path}}}")
    return "".join(out)


def sample_codes(modality: str, seed: int = 0) -> CodesPart:
    g = torch.Generator().manual_seed(seed)
    if modality == "image":
        return CodesPart("image", torch.randint(0, 8192, (1, 32), generator=g))
    if modality == "speech":
        return CodesPart("speech", torch.randint(0, 1024, (1, 7), generator=g))
    return CodesPart("music", torch.randint(0, 2048, (4, 3), generator=g))


# ----------------------------------------------------------------------------- pretraining
@pytest.mark.parametrize("modality", MEDIA_MODALITIES)
def test_pretraining_to_text_is_the_release_string(layout, modality):
    media = sample_codes(modality)
    x = layout.codes_to_text(modality, media.codes)
    instruction, text = "Please do it.", "a red circle on a table"
    parts = pretraining_pair(media, text, "to_text", random.Random(0), instruction=instruction)
    assert render(parts, layout) == f"[Human]: {instruction} {x}<eoh> [MMGPT]: {text}<eos>"
    assert sum(isinstance(p, CodesPart) for p in parts) == 1 and media in parts


@pytest.mark.parametrize("modality", MEDIA_MODALITIES)
def test_pretraining_from_text_is_the_release_string(layout, modality):
    media = sample_codes(modality, seed=1)
    x = layout.codes_to_text(modality, media.codes)
    instruction, text = "Make this.", "birds singing at dawn"
    parts = pretraining_pair(media, text, "from_text", random.Random(0), instruction=instruction)
    assert render(parts, layout) == f"[Human]: {instruction} This is input: {text}<eoh> [MMGPT]: {x}<eos>"


def test_pretraining_spot_check_literal(layout):
    """One fully literal string, independent of how the template code builds it."""
    media = CodesPart("image", torch.arange(32).unsqueeze(0))
    parts = pretraining_pair(media, "cat", "to_text", random.Random(0), instruction="Describe.")
    codes = "".join(f"<\U0001F440{i}>" for i in range(32))
    assert render(parts, layout) == "[Human]: Describe. <soim>" + codes + "<eoim><eoh> [MMGPT]: cat<eos>"
    music = CodesPart("music", torch.tensor([[1], [2], [3], [4]]))
    parts = pretraining_pair(music, "jazz", "from_text", random.Random(0), instruction="Play.")
    assert render(parts, layout) == (
        "[Human]: Play. This is input: jazz<eoh> [MMGPT]: "
        "<somu><\U0001F3B61><\U0001F3B62050><\U0001F3B64099><\U0001F3B66148><eomu><eos>"
    )


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_pretraining_draws_the_instruction_from_the_right_pool(layout, direction):
    media = sample_codes("speech")
    pool = instruction_pool("speech", direction)
    seen = set()
    rng = random.Random(5)
    for _ in range(200):
        s = render(pretraining_pair(media, "hello", direction, rng), layout)
        assert s.startswith("[Human]: ")
        instr = next(i for i in pool if s.startswith(f"[Human]: {i} "))
        seen.add(instr)
    assert len(seen) >= 15  # many different paraphrases are used


def test_pretraining_accepts_file_media_and_rejects_bad_direction(tmp_path):
    media = MediaFilePart("image", tmp_path / "x.png")
    parts = pretraining_pair(media, "t", "to_text", random.Random(0), instruction="I")
    assert media in parts and sum(p is media for p in parts) == 1
    with pytest.raises(ValueError, match="direction"):
        pretraining_pair(media, "t", "image_to_text", random.Random(0))


# ----------------------------------------------------------------------------- instruction pools
@pytest.mark.parametrize("modality", MEDIA_MODALITIES)
@pytest.mark.parametrize("direction", DIRECTIONS)
def test_pools_have_dozens_of_distinct_entries(modality, direction):
    pool = instruction_pool(modality, direction)
    assert len(pool) >= 24
    assert len(set(pool)) == len(pool)
    assert len({p.strip().lower() for p in pool}) == len(pool)
    for p in pool:
        assert p == p.strip() and p and "\n" not in p
        # must not contain anything the layout would parse as a marker or role
        for tok in ("<", ">", "[Human]", "[MMGPT]"):
            assert tok not in p


def test_pools_of_the_two_directions_differ():
    for m in MEDIA_MODALITIES:
        assert not set(instruction_pool(m, "to_text")) & set(instruction_pool(m, "from_text"))
    assert not set(instruction_pool("image", "to_text")) & set(instruction_pool("speech", "to_text"))


def test_sampling_is_deterministic_for_a_seeded_rng():
    media = CodesPart("image", torch.zeros(1, 32, dtype=torch.long))

    def draws(seed):
        rng = random.Random(seed)
        return [pretraining_pair(media, "t", d, rng)[1].text for d in DIRECTIONS * 10]  # the instruction

    assert draws(123) == draws(123)
    assert draws(123) != draws(124)
    rng_a, rng_b = random.Random(9), random.Random(9)
    pool = instruction_pool("music", "to_text")
    assert [rng_a.choice(pool) for _ in range(20)] == [rng_b.choice(pool) for _ in range(20)]


def test_new_modality_falls_back_to_generic_pools(layout):
    for d in DIRECTIONS:
        pool = instruction_pool("sensor", d)
        assert pool == generic_pool("sensor", d)
        assert len(set(pool)) == len(pool) >= 2
        assert all("sensor" in p for p in pool)
        assert not set(pool) & {s for v in POOLS.values() for s in v}
    assert set(generic_pool("sensor", "to_text")) != set(generic_pool("sensor", "from_text"))
    # a pretraining pair for an unregistered modality works with the generic pool
    part = CodesPart("sensor", torch.tensor([[1, 2]]))
    parts = pretraining_pair(part, "rising", "to_text", random.Random(0))
    assert parts[0].text == "[Human]: " and parts[0].markup  # the template's roles are markup,
    instr = parts[1].text[:-1]  # the instruction is plain text
    assert instr in generic_pool("sensor", "to_text")


def test_pool_bad_direction():
    with pytest.raises(ValueError, match="direction"):
        instruction_pool("image", "sideways")


# ----------------------------------------------------------------------------- chat templates
def _text_turns(*messages: str) -> list[Turn]:
    return [Turn("user" if i % 2 == 0 else "assistant", [TextPart(m)]) for i, m in enumerate(messages)]


def test_mmgpt_template_is_fastchat_add_colon_two(layout):
    t = get_chat_template("MMGPT")
    turns = _text_turns("Hi there.", "Hello! How can I help?", "Draw a cat.")
    assert render(t.prompt(turns), layout) == (
        f"{SYSTEM_MMGPT}\n[Human]: Hi there.<eoh>\n[MMGPT]: Hello! How can I help?<eos>\n"
        "[Human]: Draw a cat.<eoh>\n[MMGPT]:"
    )


def test_anygpt_template_uses_its_roles_end_and_system(layout):
    t = get_chat_template("AnyGPT")
    turns = _text_turns("Hi there.", "Hello!", "Draw a cat.")
    assert render(t.prompt(turns), layout) == (
        f"{SYSTEM_ANYGPT}\n[Human]: Hi there.<eoh>\n[AnyGPT]: Hello!<eom>\n"
        "[Human]: Draw a cat.<eoh>\n[AnyGPT]:"
    )
    assert SYSTEM_ANYGPT != SYSTEM_MMGPT and "AnyGPT" in SYSTEM_ANYGPT and "MMGPT" in SYSTEM_MMGPT
    assert (t.user_role, t.bot_role, t.user_end, t.bot_end) == ("[Human]", "[AnyGPT]", "<eoh>", "<eom>")


def test_single_user_turn_and_no_generation_prompt(layout):
    t = get_chat_template("MMGPT")
    turns = _text_turns("Only me.")
    assert render(t.prompt(turns), layout) == f"{SYSTEM_MMGPT}\n[Human]: Only me.<eoh>\n[MMGPT]:"
    assert render(t.prompt(turns, add_generation_prompt=False), layout) == \
        f"{SYSTEM_MMGPT}\n[Human]: Only me.<eoh>\n"
    # a conversation ending with the assistant gets no prompt and no trailing newline
    turns = _text_turns("Q", "A")
    assert render(t.prompt(turns), layout) == f"{SYSTEM_MMGPT}\n[Human]: Q<eoh>\n[MMGPT]: A<eos>"


@pytest.mark.parametrize("name, role", [("MMGPT", "[MMGPT]"), ("AnyGPT", "[AnyGPT]")])
@pytest.mark.parametrize("marker", ["<soim>", "<sosp>", "<somu>"])
def test_force_modality_start_appends_the_marker(layout, name, role, marker):
    t = get_chat_template(name)
    s = render(t.prompt(_text_turns("Draw a cat."), force_modality_start=marker), layout)
    assert s.endswith(f"<eoh>\n{role}: {marker}")
    assert s.count(marker) == 1


def test_media_in_turns_are_spaced_and_kept_as_parts(layout):
    t = get_chat_template("MMGPT")
    img = sample_codes("image")
    speech = sample_codes("speech")
    turns = [Turn("user", [img, TextPart("What is this?")]), Turn("assistant", [TextPart("Say it:"), speech])]
    parts = t.prompt(turns)
    assert img in parts and speech in parts
    s = render(parts, layout)
    x, y = layout.codes_to_text("image", img.codes), layout.codes_to_text("speech", speech.codes)
    assert s == f"{SYSTEM_MMGPT}\n[Human]: {x} What is this?<eoh>\n[MMGPT]: Say it: {y}<eos>"
    # the rendered string parses back into the same media, in order
    media = [p for p in layout.parse_text(s) if isinstance(p, CodesPart)]
    assert media == [img, speech]


@pytest.mark.parametrize("name", ["MMGPT", "AnyGPT"])
def test_assistant_flags_mark_exactly_assistant_content_and_end(layout, name):
    t = get_chat_template(name)
    music = sample_codes("music")
    turns = [
        Turn("user", [TextPart("Play jazz.")]),
        Turn("assistant", [TextPart("Here:"), music]),
        Turn("user", [sample_codes("image"), TextPart("And this?")]),
        Turn("assistant", [TextPart("A dog.")]),
    ]
    items = t.render(turns)
    # everything, flagged or not, concatenates to the prompt
    assert render([p for p, _ in items], layout) == render(t.prompt(turns), layout)
    flagged = render([p for p, f in items if f], layout)
    m = layout.codes_to_text("music", music.codes)
    assert flagged == f"Here: {m}{t.bot_end}A dog.{t.bot_end}"
    unflagged = render([p for p, f in items if not f], layout)
    assert "Play jazz." in unflagged and "And this?" in unflagged
    assert t.bot_end not in unflagged and t.system in unflagged
    assert f"{t.bot_role}: " in unflagged and f"{t.user_role}: " in unflagged
    assert [p for p, f in items if f and isinstance(p, CodesPart)] == [music]
    # the last assistant turn ends the sequence: no generation prompt is added
    assert items[-2:] == [(TextPart("A dog."), True), (TextPart(t.bot_end), True)]
    assert not items[-2][0].markup and items[-1][0].markup  # the message is plain, the turn end a token


def test_get_chat_template_unknown_lists_choices():
    with pytest.raises(ValueError) as e:
        get_chat_template("Vicuna")
    msg = str(e.value)
    assert "Vicuna" in msg and "MMGPT" in msg and "AnyGPT" in msg
    assert set(CHAT_TEMPLATES) == {"MMGPT", "AnyGPT"}
    assert get_chat_template("AnyGPT").name == "AnyGPT"


def test_turn_role_is_checked():
    with pytest.raises(ValueError, match="role"):
        Turn("system", [TextPart("x")])


# ----------------------------------------------------------------------------- spoken instructions
def test_spoken_reply_exact_string(layout):
    speech = sample_codes("speech", seed=3)
    y = layout.codes_to_text("speech", speech.codes)
    parts = spoken_reply("what time is it", "It is noon.", speech)
    assert render(parts, layout) == f"<-Ins-> what time is it\n <-Res-> It is noon. {y}"
    assert y.startswith("<sosp>") and y.endswith("<eosp>")


def test_spoken_reply_round_trips_through_the_layout(layout):
    speech = sample_codes("speech", seed=4)
    s = render(spoken_reply("turn on the light", "Sure, the light is on.", speech), layout)
    back = parse_spoken_reply(layout.parse_text(s))
    assert back == SpokenReply("turn on the light", "Sure, the light is on.", speech)
    # and directly on the parts
    back = parse_spoken_reply(spoken_reply("a b", "c d", speech))
    assert (back.transcript, back.reply, back.speech) == ("a b", "c d", speech)


def test_parse_spoken_reply_tolerates_missing_pieces(layout):
    r = parse_spoken_reply([TextPart("<-Ins-> hello there\n <-Res-> hi! ")])
    assert (r.transcript, r.reply, r.speech) == ("hello there", "hi!", None)
    r = parse_spoken_reply([TextPart("<-Res-> only a reply")])
    assert (r.transcript, r.reply) == ("", "only a reply")
    r = parse_spoken_reply([TextPart("plain text answer ")])
    assert (r.transcript, r.reply, r.speech) == ("", "plain text answer", None)
    img = sample_codes("image")
    r = parse_spoken_reply([TextPart("<-Ins-> x\n <-Res-> y "), img])
    assert r.speech is None  # only speech counts


def test_spoken_instruction_turn(layout):
    speech = sample_codes("speech")
    turn = spoken_instruction_turn(speech)
    assert turn.role == "user" and turn.parts[0] == speech
    assert turn.parts[1] == TextPart(SPOKEN_INSTRUCTION_PROMPT)
    s = render(get_chat_template("MMGPT").prompt([turn]), layout)
    y = layout.codes_to_text("speech", speech.codes)
    assert s == (f"{SYSTEM_MMGPT}\n[Human]: {y} Please recognize the voice command and give reply and voice"
                 "<eoh>\n[MMGPT]:")


def test_pretraining_prompt_is_the_start_of_the_pair_in_ids():
    """The prompt encodes to exactly the first ids of the training pair (roles as tokens, text
    plain), so a model trained on pairs is prompted with what it saw."""
    from anygpt.lm.sequence import SequenceEncoder
    from anygpt.lm.tiny import random_tiny
    from anygpt.templates import pretraining_prompt

    _, tok, layout = random_tiny()
    enc = SequenceEncoder(tok, layout)
    media = CodesPart("image", torch.arange(32).unsqueeze(0))
    for direction, kw in (("to_text", {"media": media}), ("from_text", {"text": "a red circle"})):
        pair = enc.encode(pretraining_pair(media, "a red circle", direction, random.Random(0), instruction="Draw."))
        prompt = enc.encode(pretraining_prompt(direction, "Draw.", **kw))
        assert 0 < len(prompt) < len(pair) and pair[: len(prompt)].tolist() == prompt.tolist(), direction
        assert tok.convert_tokens_to_ids("[Human]") == int(prompt[0])  # a token, not its characters
    with pytest.raises(ValueError, match="needs the media"):
        pretraining_prompt("to_text", "x")
