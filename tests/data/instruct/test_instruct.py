"""Any-to-any conversations: stage 1 writers, stage 2 realisation, chat samples with loss masks."""

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import numpy as np
import pytest
import soundfile as sf
import torch
from grid_tokenizer import GridTokenizer

from anygpt.data.codes_store import CodesStore, tokenize_corpus
from anygpt.data.instruct.offline_writer import OfflineWriter, distinct_ngrams, duplicate_share
from anygpt.data.instruct.openai_writer import OpenAIWriter
from anygpt.data.instruct.realise import CaptionIndex, Realiser, chat_sample, read_conversations
from anygpt.data.instruct.script import Element, Script, ScriptTurn
from anygpt.data.packing import IGNORE
from anygpt.errors import AnyGPTError
from anygpt.layout import TokenLayout
from anygpt.lm.expand import add_modality_tokens
from anygpt.lm.sequence import SequenceEncoder
from anygpt.lm.text_tokenizer import train_text_tokenizer
from anygpt.lm.tiny import builtin_texts
from anygpt.media_io import load_audio
from anygpt.modalities.base import ModalityTokenizer
from anygpt.modalities.specs import RELEASED_SPEECH_SPEC
from anygpt.parts import CodesPart, TextPart
from anygpt.templates import get_chat_template
from anygpt.token_spec import TokenSpec

IMAGES = [{"id": f"img{i}", "caption": f"A {c} circle on a white background."}
          for i, c in enumerate(["red", "green", "blue", "yellow"])]
MUSIC = [{"id": "mu0", "caption": "A slow chorale for organ in D minor."}]
SENTENCES = [f"Fact number {i} is about the number {i * 7}." for i in range(50)]


def test_offline_writer_is_deterministic_and_varied():
    w = OfflineWriter(IMAGES, MUSIC, SENTENCES, seed=3)
    a, b = w.write(300), OfflineWriter(IMAGES, MUSIC, SENTENCES, seed=3).write(300)
    assert [s.to_json() for s in a] == [s.to_json() for s in b]
    assert [s.to_json() for s in OfflineWriter(IMAGES, MUSIC, SENTENCES, seed=4).write(300)] != [s.to_json() for s in a]
    scenarios = {part for s in a for part in s.scenario.split("+")}
    assert {"image_request", "image_question", "music_request", "text_fact", "spoken_instruction"} <= scenarios
    assert duplicate_share(a) < 0.1
    assert len({s.turns[0].elements[0].text for s in a}) > 60  # 4 captions, 50 sentences, yet many openings
    for s in a:  # turns alternate, user first; media reference corpus items
        assert [t.role for t in s.turns] == ["user", "assistant"] * (len(s.turns) // 2)
        for t in s.turns:
            for e in t.elements:
                if e.kind in ("image", "music"):
                    assert e.ref in {r["id"] for r in IMAGES + MUSIC}
    no_speech = OfflineWriter(IMAGES, MUSIC, SENTENCES, seed=3, speech=False).write(100)
    assert not any(e.kind == "speech" for s in no_speech for t in s.turns for e in t.elements)


def test_distinct_ngrams():
    assert distinct_ngrams(["a b c", "a b c"], 2) == pytest.approx(0.5)
    assert distinct_ngrams(["a b", "c d"], 2) == 1.0


def test_script_stats_counts_what_write_reports():
    from anygpt.data.instruct.offline_writer import script_stats

    scripts = OfflineWriter(IMAGES, MUSIC, SENTENCES, seed=3).write(200)
    st = script_stats(scripts)
    assert st["conversations"] == 200 and st["spoken_instruction"] == sum(s.spoken for s in scripts)
    assert st["turns"] == sum(len(s.turns) for s in scripts)
    assert st["media_elements"]["user_speech"] == st["spoken_instruction"]
    assert st["scenarios"]["spoken_instruction"] == st["spoken_instruction"]
    assert 0 < st["distinct_1"] <= st["distinct_2"] <= st["distinct_3"] <= 1
    assert 0 <= st["near_duplicate_share"] <= 1 and st["identical_share"] == duplicate_share(scripts)


def test_chat_mask_problems_finds_each_fault():
    from anygpt.data.check_blocks import chat_mask_problems

    H, B, EH, EB, EOS = 1, 2, 3, 4, 9  # [Human] [MMGPT] <eoh> <eos> </s>
    markers = {"user_role": [H], "bot_role": [B], "user_end": [EH], "bot_end": [EB]}
    #       sys  [H] u  u  <eoh> [B] :  a  a  <eos> </s>
    ids = [50, H, 60, 61, EH, B, 70, 80, 81, EB, EOS]
    good = [False, False, False, False, False, False, False, True, True, True, True]
    assert chat_mask_problems(ids, good, markers, EOS) == {
        "assistant_turns": 1, "turn_ends_trained": 1, "trained_in_user_turns": 0, "trained_role_markers": 0,
        "trained_outside_assistant": 0, "untrained_in_assistant_message": 0}
    faults = {2: "trained_in_user_turns", 5: "trained_role_markers", 0: "trained_outside_assistant"}
    for pos, key in faults.items():
        bad = list(good)
        bad[pos] = True
        assert chat_mask_problems(ids, bad, markers, EOS)[key] == 1
    gap = list(good)
    gap[8] = False
    assert chat_mask_problems(ids, gap, markers, EOS)["untrained_in_assistant_message"] == 1
    end = list(good)
    end[9] = False
    assert chat_mask_problems(ids, end, markers, EOS)["turn_ends_trained"] == 0


class FakeChat(BaseHTTPRequestHandler):
    answers: list = []

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        assert body["messages"][0]["role"] == "system"
        content = FakeChat.answers.pop(0)
        data = json.dumps({"choices": [{"message": {"role": "assistant", "content": content}}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *a):
        pass


def test_openai_writer_against_a_local_endpoint():
    good = {"turns": [{"role": "user", "elements": [{"kind": "text", "text": "Draw a cat."}]},
                      {"role": "assistant", "elements": [{"kind": "image", "text": "a grey cat on a sofa"}]}]}
    FakeChat.answers = ["```json\n" + json.dumps(good) + "\n```", "sorry, I cannot", json.dumps(
        {"turns": [{"role": "robot", "elements": []}]})]
    server = HTTPServer(("127.0.0.1", 0), FakeChat)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        w = OpenAIWriter(f"http://127.0.0.1:{server.server_port}/v1", "fake-model")
        scripts, errors = w.write(["pets"], 3)
    finally:
        server.shutdown()
    assert len(scripts) == 1 and scripts[0].turns[1].elements[0] == Element("image", "a grey cat on a sofa")
    assert len(errors) == 2 and "not a conversation script" in errors[0]
    with pytest.raises(AnyGPTError, match="unreachable"):
        OpenAIWriter("http://127.0.0.1:9/v1", "m", timeout=2).write(["x"], 1)


class ToneTokenizer(ModalityTokenizer):
    """Stand-in speech tokenizer: 16 kHz -> 10 frames/s, code = frame loudness in 8 levels."""

    name, sample_rate, frame_rate, num_codebooks, codebook_size = "speech", 16000, 10, 1, 8
    file_extensions = (".wav",)

    @property
    def token_spec(self):
        s = RELEASED_SPEECH_SPEC
        return TokenSpec("speech", s.prefix, s.start, s.end, 8)

    def load(self, path):
        return load_audio(path, 16000)

    def encode(self, media):
        frames = media[:, 0, : media.shape[-1] // 1600 * 1600].reshape(len(media), -1, 1600)
        return (frames.abs().mean(-1) * 7.99 / frames.abs().amax((-1, -2), keepdim=True).clamp_min(1e-6)[..., 0]
                ).long().clamp(0, 7).unsqueeze(1)

    def decode(self, codes, **context):
        return codes.float().repeat_interleave(1600, -1) / 8

    def save(self, media, path):
        raise NotImplementedError


def fake_speaker(text, voice, wav):
    rng = np.random.default_rng(abs(hash((text, voice))) % 2**32)
    sf.write(str(wav), (rng.standard_normal(1600 * (3 + len(text) % 5)) * 0.1).astype("float32"), 16000,
             format="WAV")


@pytest.fixture
def realised(corpus, tmp_path):  # noqa: F811
    tokenize_corpus(corpus / "images", "image", "test-grid", tmp_path / "codes", workers=0, progress=False)
    store = CodesStore(tmp_path / "codes")
    images = [json.loads(l) for l in (corpus / "images" / "manifest.jsonl").read_text().splitlines()]
    images = [r for r in images if r["id"] in store]
    layout = TokenLayout.plan(0, [GridTokenizer().token_spec, ToneTokenizer().token_spec])
    scripts = OfflineWriter(images, [], SENTENCES, seed=0).write(40, spoken_share=0.3)
    scripts.append(Script("free", "free", [
        ScriptTurn("user", [Element("text", "Show me picture number 12.")]),
        ScriptTurn("assistant", [Element("image", "a picture number 12")])]))  # no ref: nearest caption
    r = Realiser(layout, {"image": store}, indexes={"image": CaptionIndex(images)}, speech_tokenizer=ToneTokenizer(),
                 speaker=fake_speaker, cache_dir=tmp_path / "tts")
    counts = r.run(scripts, tmp_path / "chat", progress=False)
    return counts, scripts, store, layout, tmp_path / "chat"


def test_realise_writes_conversations_and_resumes(realised):
    counts, scripts, store, layout, out = realised
    assert counts == {"written": 41, "skipped": 0, "failed": 0}
    convs = dict(read_conversations(out / "conversations.jsonl", layout))
    free = convs["free"][1].parts[0]
    assert isinstance(free, CodesPart) and torch.equal(free.codes, store.get("img12"))
    spoken = [s for s in scripts if s.spoken]
    assert spoken
    user, bot = convs[spoken[0].id]
    assert isinstance(user.parts[0], CodesPart) and user.parts[0].modality == "speech"
    bot_text = "".join(p.text for p in bot.parts if isinstance(p, TextPart))
    assert bot_text.startswith("<-Ins-> ") and "\n <-Res-> " in bot_text
    assert [p.text for p in bot.parts if isinstance(p, TextPart) and p.markup] == ["<-Ins-> ", "<-Res-> "]
    assert isinstance(bot.parts[-1], CodesPart) and bot.parts[-1].modality == "speech"
    # codes are stored as numbers, text as text (nothing in a message is parsed for markers)
    record = json.loads((out / "conversations.jsonl").read_text().splitlines()[0])
    media = [p for t in record["turns"] for p in t["parts"] if "codes" in p]
    assert media and all(isinstance(p["codes"][0][0], int) for p in media)
    again = Realiser(layout, {"image": store}, speech_tokenizer=ToneTokenizer(), speaker=fake_speaker,
                     cache_dir=out.parent / "tts").run(scripts, out, progress=False)
    assert again == {"written": 0, "skipped": 41, "failed": 0}


def test_chat_sample_masks_everything_but_the_assistant(realised):
    _, _, _, layout, out = realised
    tok = train_text_tokenizer(builtin_texts(), vocab_size=400)
    layout = add_modality_tokens(tok, layout.specs)
    codec = SequenceEncoder(tok, layout)
    template = get_chat_template("MMGPT")
    conv_id, turns = read_conversations(out / "conversations.jsonl", layout)[0]
    sample = chat_sample(turns, template, codec)
    trained = sample.labels != IGNORE
    assert (sample.labels[trained] == sample.input_ids[trained]).all()
    trained_text = tok.decode(sample.input_ids[trained].tolist())
    untrained_text = tok.decode(sample.input_ids[~trained].tolist())
    assert "[Human]" in untrained_text and "[Human]" not in trained_text
    assert "[MMGPT]" not in trained_text and trained_text.count("<eos>") == sum(t.role == "assistant" for t in turns)
    for t in turns:
        for p in t.parts:
            if isinstance(p, TextPart) and p.text.strip():
                assert p.text.strip() in (trained_text if t.role == "assistant" else untrained_text)


def test_chat_dataset_in_blocks_keeps_masks(realised, tmp_path):
    from anygpt.data.blocks import BlocksConfig, DatasetConfig, build_blocks
    from anygpt.data.shards import BlockReader

    _, scripts, _, _, out = realised
    # a chat dataset has no text field to learn a tokenizer from: give it one trained here
    tok = train_text_tokenizer(builtin_texts() + SENTENCES, vocab_size=400)
    tok.save_pretrained(tmp_path / "tok")
    cfg = BlocksConfig([DatasetConfig("chat", "chat", str(out))], block_len=512,
                       text_tokenizer={"path": str(tmp_path / "tok")}, top_up=False)  # each conversation once
    report = build_blocks(cfg, tmp_path / "blocks", progress=False)
    assert sum(report["samples"]["chat"].values()) == len(scripts)
    assert report["samples"]["chat"]["spoken_instruction"] == sum(s.spoken for s in scripts)
    masked = trained = 0
    for ids, labels, _ in BlockReader(tmp_path / "blocks"):
        trained += int((labels != IGNORE).sum())
        masked += int(((labels == IGNORE) & (ids != 0)).sum())
    assert trained > 0 and masked > 0

    # decoded back from the real blocks: media equal the conversation file's, masks as specified
    from anygpt.data.check_blocks import check_blocks

    rep = check_blocks(cfg, tmp_path / "blocks")
    chat = rep["datasets"]["chat"]
    assert rep["ok"] and chat["media_matched"] == chat["media_segments"] > 0
    assert chat["turn_ends_trained"] == chat["assistant_turns"] == sum(
        t.role == "assistant" for s in scripts for t in s.turns)
    index = json.loads((tmp_path / "blocks" / "index.json").read_text())
    shard = tmp_path / "blocks" / index["shards"][0]["file"]
    with np.load(shard) as z:
        data = {k: z[k] for k in z.files}
    from transformers import AutoTokenizer

    human = AutoTokenizer.from_pretrained(tmp_path / "blocks", local_files_only=True).convert_tokens_to_ids("[Human]")
    at = int(np.flatnonzero(data["input_ids"][0] == human)[0])
    data["labels"][0, at + 1] = data["input_ids"][0, at + 1]  # train on a user token
    np.savez(shard, **data)
    bad = check_blocks(cfg, tmp_path / "blocks")
    assert not bad["ok"] and bad["datasets"]["chat"]["trained_in_user_turns"] == 1
