"""The bad-input suite: a careless or hostile user against every command. Each case is a command
line with one thing wrong (corrupt, empty, truncated, huge, wrong type, traversal, a bad flag
value, a bad output place); each must end in one clean line on stderr (`anygpt COMMAND: ...`,
exit 1, or 2 for a usage error), no traceback, no output written, no process left behind.
Findings of issue 19 are marked [F<n>]."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest

from bad_input_kit import assert_clean, manifest, run

K = "KIT"  # placeholders in argv, replaced by the kit's folder,
T = "TMP"  # the test's own folder,
M = "MODEL"  # and a saved model folder


@dataclass
class Case:
    id: str
    argv: list[str]
    code: int
    message: str
    setup: Callable[[Path, Path, Path], None] | None = None  # (kit, tmp, model) -> None: makes the broken input
    absent: tuple[str, ...] = ("TMP/out",)  # must not exist afterwards


def damaged_model(name: str, change: Callable[[Path], None]):
    def setup(kit, tmp, model):
        shutil.copytree(model, tmp / name)
        change(tmp / name)
    return setup


def write(rel: str, text: str | bytes):
    def setup(kit, tmp, model):
        path = tmp / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(text) if isinstance(text, bytes) else path.write_text(_fill(text, kit, tmp, model))
    return setup


def speech_manifest(records: list[dict], corpus: str = "corpus"):
    def setup(kit, tmp, model):
        shutil.copytree(kit / "speech" / "wavs", tmp / corpus / "wavs")
        manifest(tmp / corpus / "manifest.jsonl", records)
    return setup


def truncate(path: Path, keep: float = 1 / 3) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


CHAT = ["chat", "--model", "random-64x2", "--message", "hi", "--out", "TMP/out"]
TOKENIZE = ["tokenize", "--corpus", "TMP/corpus", "--modality", "speech", "--out", "TMP/out", "--workers", "0",
            "--no-progress"]
EVAL_RECON = ["eval", "reconstruction", "--modality", "speech", "--no-progress", "--out-file", "TMP/out/e.json"]
CLIP = {"text": "x", "speaker": "s", "split": "test"}

CASES = [
    # ------------------------------------------------------------------ chat: the model folder [F10, F2]
    Case("chat-model-missing", ["chat", "--model", "TMP/nope", "--message", "hi", "--out", "TMP/out"], 1,
         r"TMP/nope: model folder not found"),
    Case("chat-model-not-a-model", ["chat", "--model", "TMP", "--message", "hi", "--out", "TMP/out"], 1,
         r"no config\.json"),
    Case("chat-model-truncated-weights [F10]", ["chat", "--model", "TMP/m", "--message", "hi", "--out", "TMP/out"], 1,
         r"TMP/m/model\.safetensors: not a readable safetensors file",
         damaged_model("m", lambda f: truncate(f / "model.safetensors"))),
    Case("chat-model-config-not-json [F10]", ["chat", "--model", "TMP/m", "--message", "hi", "--out", "TMP/out"], 1,
         r"TMP/m/config\.json: not valid JSON", damaged_model("m", lambda f: (f / "config.json").write_text("{oops"))),
    Case("chat-model-tokenizer-not-json [F10]", ["chat", "--model", "TMP/m", "--message", "hi", "--out", "TMP/out"], 1,
         r"TMP/m/tokenizer\.json: not valid JSON", damaged_model("m", lambda f: truncate(f / "tokenizer.json", 0.5))),
    Case("chat-model-anygpt-json-not-json", ["chat", "--model", "TMP/m", "--message", "hi", "--out", "TMP/out"], 1,
         r"anygpt\.json: not a valid anygpt config", damaged_model("m", lambda f: (f / "anygpt.json").write_text("[1"))),
    Case("chat-model-tokenizer-path-traversal [F2]", ["chat", "--model", "TMP/m", "--message", "hi", "--out", "TMP/out"],
         1, r"tokenizers\.image\.path '\.\./\.\./etc': leads out of",
         damaged_model("m", lambda f: (f / "anygpt.json").write_text(json.dumps(
             {**json.loads((f / "anygpt.json").read_text()), "tokenizers": {"image": {"loader": "compact",
                                                                                       "path": "../../etc"}}})))),
    Case("chat-model-tokenizer-path-absolute [F2]", ["chat", "--model", "TMP/m", "--message", "hi", "--out", "TMP/out"],
         1, r"tokenizers\.music\.path '/tmp': an absolute path",
         damaged_model("m", lambda f: (f / "anygpt.json").write_text(json.dumps(
             {**json.loads((f / "anygpt.json").read_text()), "tokenizers": {"music": {"loader": "compact",
                                                                                       "path": "/tmp"}}})))),
    Case("chat-model-generation-bad-value", ["chat", "--model", "TMP/m", "--message", "hi", "--out", "TMP/out"], 1,
         r"anygpt\.json: generation\.image: generation setting cfg_scale=-1: must be a finite number above 0",
         damaged_model("m", lambda f: (f / "anygpt.json").write_text(json.dumps(
             {**json.loads((f / "anygpt.json").read_text()), "generation": {"image": {"cfg_scale": -1}}})))),
    Case("chat-model-generation-unknown-modality", ["chat", "--model", "TMP/m", "--message", "hi", "--out", "TMP/out"],
         1, r"anygpt\.json: generation\.video: not a modality of this model",
         damaged_model("m", lambda f: (f / "anygpt.json").write_text(json.dumps(
             {**json.loads((f / "anygpt.json").read_text()), "generation": {"video": {"do_sample": False}}})))),
    Case("chat-model-instruction-prompts-bad-direction", ["chat", "--model", "TMP/m", "--message", "hi", "--out",
                                                           "TMP/out"], 1,
         r"anygpt\.json: instruction_prompts\.image: must be a list of from_text and to_text; it is 'sideways'",
         damaged_model("m", lambda f: (f / "anygpt.json").write_text(json.dumps(
             {**json.loads((f / "anygpt.json").read_text()), "instruction_prompts": {"image": "sideways"}})))),
    # ------------------------------------------------------------------ chat: outputs and attachments, before any model runs [F8, F9]
    Case("chat-out-is-a-file [F8]", [*CHAT[:-1], "KIT/media/a-file"], 1, r"--out is a file", absent=()),
    Case("chat-out-below-a-file [F8]", [*CHAT[:-1], "KIT/media/a-file/sub"], 1, r"a-file is a file, not a folder",
         absent=("KIT/media/a-file/sub",)),
    Case("chat-image-missing", [*CHAT, "--image", "TMP/gone.png"], 1, r"TMP/gone\.png: attachment not found"),
    Case("chat-image-corrupt", [*CHAT, "--image", "KIT/media/corrupt.png"], 1, r"corrupt\.png: cannot read image"),
    Case("chat-image-folder", [*CHAT, "--image", "KIT/media"], 1, r"attachment is a folder"),
    Case("chat-image-wrong-type", [*CHAT, "--image", "KIT/media/notes.txt"], 1, r"unsupported file type \.txt"),
    Case("chat-image-decompression-bomb [F8]", [*CHAT, "--image", "KIT/media/huge.png"], 1,
         r"huge\.png: 20000 x 20000 pixels is more than the 16777216 pixels read at once; downscale"),
    Case("chat-image-10000px [F9]", [*CHAT, "--image", "KIT/media/big.png"], 1, r"10000 x 10000 pixels is more than"),
    Case("chat-speech-10-minutes [F9]", [*CHAT, "--speech", "KIT/media/long.wav"], 1,
         r"600\.0 s of audio is more than the 120 s read at once; cut it first"),
    Case("chat-speech-truncated [F7]", [*CHAT, "--speech", "KIT/media/cut.wav"], 1, r"cut\.wav: the WAV file is cut short"),
    Case("chat-speech-empty", [*CHAT, "--speech", "KIT/media/empty.wav"], 1, r"file is empty"),
    Case("chat-speech-not-audio", [*CHAT, "--speech", "KIT/media/text.wav"], 1, r"text\.wav: cannot read audio"),
    Case("chat-voice-prompt-missing [F8]", [*CHAT, "--voice-prompt", "TMP/none.wav"], 1, r"none\.wav: attachment not found"),
    Case("chat-voice-prompt-not-audio [F8]", [*CHAT, "--voice-prompt", "KIT/media/text.wav"], 1, r"cannot read audio"),
    Case("chat-max-new-tokens-0", [*CHAT, "--max-new-tokens", "0"], 2, r"--max-new-tokens: 0 is not allowed"),
    Case("chat-max-new-tokens-word", [*CHAT, "--max-new-tokens", "many"], 2, r"'many' is not a whole number"),
    Case("chat-unknown-preset", [*CHAT, "--preset", "fastest"], 2, r"--preset: unknown generation preset 'fastest'"),
    Case("chat-unknown-modality", [*CHAT, "--force-modality", "smell"], 2, r"invalid choice: 'smell'"),
    Case("chat-unknown-model-name", ["chat", "--model", "anygpt-huge", "--message", "hi", "--out", "TMP/out"], 1,
         r"anygpt-huge: model folder not found; give a folder or one of anygpt-tiny, random-64x2"),
    # ------------------------------------------------------------------ data build / stats [F10]
    Case("data-build-out-is-a-file [F10]", ["data", "build", "--preset", "micro", "--out", "KIT/media/a-file"], 1,
         r"--out is a file", absent=()),
    Case("data-build-unknown-preset", ["data", "build", "--preset", "huge", "--out", "TMP/out"], 2, r"invalid choice"),
    Case("data-build-workers-negative [F10]", ["data", "build", "--out", "TMP/out", "--workers", "-1"], 2,
         r"--workers: -1 is not allowed"),
    Case("data-build-unknown-corpus", ["data", "build", "--out", "TMP/out", "--only", "smells"], 2, r"invalid choice"),
    Case("data-stats-no-corpus", ["data", "stats", "--corpus", "TMP/out"], 1, r"TMP/out: holds no corpus"),
    Case("data-stats-corrupt-manifest [F10]", ["data", "stats", "--corpus", "TMP/c"], 1,
         r"TMP/c/speech/manifest\.jsonl:2: not valid JSON", write("c/speech/manifest.jsonl", '{"id": "a", "split": "x"}\n{oops\n')),
    Case("data-stats-binary-manifest [F10]", ["data", "stats", "--corpus", "TMP/c"], 1,
         r"manifest\.jsonl:1: not UTF-8 text", write("c/images/manifest.jsonl", b"\xff\xfe\x00garbage\n")),
    Case("data-stats-corrupt-index [F10]", ["data", "stats", "--corpus", "TMP/c"], 1,
         r"TMP/c/index\.json: corpus index is not valid JSON", write("c/index.json", "{")),
    # ------------------------------------------------------------------ tokenize [F10, F5, F2]
    Case("tokenize-items-per-shard-0 [F10]", [*TOKENIZE, "--items-per-shard", "0"], 2, r"--items-per-shard: 0 is not allowed"),
    Case("tokenize-parts-0 [F10]", [*TOKENIZE, "--parts", "0"], 2, r"--parts: 0 is not allowed"),
    Case("tokenize-part-out-of-range [F10]", [*TOKENIZE, "--part", "2", "--parts", "2"], 2,
         r"--part: 2 is not a part of --parts 2"),
    Case("tokenize-workers-negative [F10]", [*TOKENIZE, "--workers", "-1"], 2, r"--workers: -1 is not allowed"),
    Case("tokenize-option-without-value [F10]", [*TOKENIZE, "--tokenizer-option", "foo"], 2,
         r"--tokenizer-option 'foo': expected KEY=VALUE"),
    Case("tokenize-option-without-value [F10]", [*TOKENIZE, "--tokenizer-option", "foo"], 2, r"expected KEY=VALUE"),
    Case("tokenize-old-spelling-is-gone", [*TOKENIZE, "--tokenizer-arg", "a=1"], 2,
         r"unrecognized arguments: --tokenizer-arg"),
    Case("tokenize-unknown-option", [*TOKENIZE, "--tokenizer-option", "speed=fast"], 2,
         r"speech tokenizer 'compact': .*'speed'.*its options", speech_manifest([{"id": "a", "path": "wavs/0.wav"}])),
    Case("tokenize-unknown-tokenizer", [*TOKENIZE, "--tokenizer", "huge"], 1, r"has no tokenizer 'huge'",
         speech_manifest([{"id": "a", "path": "wavs/0.wav"}])),
    Case("tokenize-unknown-modality", ["tokenize", "--corpus", "TMP/corpus", "--modality", "smell", "--out", "TMP/out"], 1,
         r"unknown modality 'smell'", speech_manifest([{"id": "a", "path": "wavs/0.wav"}])),
    Case("tokenize-no-manifest", TOKENIZE, 1, r"TMP/corpus/manifest\.jsonl: no manifest"),
    Case("tokenize-manifest-not-json [F10]", TOKENIZE, 1, r"TMP/corpus/manifest\.jsonl:2: not valid JSON",
         write("corpus/manifest.jsonl", '{"id": "a", "path": "wavs/0.wav"}\nnot json\n')),
    Case("tokenize-manifest-no-id [F10]", TOKENIZE, 1, r"manifest\.jsonl:1: the record has no 'id' field",
         speech_manifest([{"path": "wavs/0.wav"}])),
    Case("tokenize-manifest-no-path [F10]", TOKENIZE, 1, r"manifest\.jsonl:1: the record has no 'path' field",
         speech_manifest([{"id": "a"}])),
    Case("tokenize-manifest-array", TOKENIZE, 1, r"manifest\.jsonl:1: a JSON list, expected an object",
         write("corpus/manifest.jsonl", "[1, 2]\n")),
    Case("tokenize-duplicate-ids", TOKENIZE, 1, r"manifest\.jsonl:2: id 'a' again \(first on line 1\)",
         speech_manifest([{"id": "a", "path": "wavs/0.wav"}, {"id": "a", "path": "wavs/1.wav"}])),
    Case("tokenize-path-traversal [F2]", TOKENIZE, 1, r"item 'a' path '\.\./\.\./etc/passwd': leads out of",
         speech_manifest([{"id": "a", "path": "../../etc/passwd"}])),
    Case("tokenize-path-absolute [F2]", TOKENIZE, 1, r"item 'a' path '/etc/passwd': an absolute path",
         speech_manifest([{"id": "a", "path": "/etc/passwd"}])),
    Case("tokenize-out-is-a-file", [*TOKENIZE[:-5], "--out", "KIT/media/a-file", "--workers", "0"], 1, r"--out is a file",
         absent=()),
    Case("tokenize-wrong-modality [F5]", ["tokenize", "--corpus", "KIT/images", "--modality", "speech", "--out", "TMP/out",
                                         "--workers", "0", "--no-progress"], 1,
         r"none of 3 items could be encoded as speech .*is --modality right", absent=()),
    # ------------------------------------------------------------------ eval [F6, F2, F7, F10]
    Case("eval-limit-negative [F6]", ["eval", "asr", "--manifest", "KIT/speech/manifest.jsonl", "--limit", "-3"], 2,
         r"--limit: -3 is not allowed"),
    Case("eval-limit-zero [F6]", ["eval", "asr", "--manifest", "KIT/speech/manifest.jsonl", "--limit", "0"], 2,
         r"--limit: 0 is not allowed"),
    Case("eval-out-file-is-a-folder [F10]", ["eval", "asr", "--manifest", "KIT/speech/manifest.jsonl", "--out-file", "KIT"],
         1, r"--out-file is a folder", absent=()),
    Case("eval-old-out-is-a-folder [F10]", ["eval", "asr", "--manifest", "KIT/speech/manifest.jsonl", "--out", "KIT"],
         1, r"--out-file is a folder", absent=()),
    Case("eval-workdir-is-a-file", [*EVAL_RECON, "--manifest", "KIT/speech/manifest.jsonl", "--workdir", "KIT/media/a-file"],
         1, r"--workdir is a file"),
    Case("eval-id-traversal [F2]", [*EVAL_RECON, "--manifest", "TMP/corpus/manifest.jsonl"], 1,
         r"item id '\.\./\.\./\.\./escaped': leads out of", speech_manifest([{"id": "../../../escaped", "path": "wavs/0.wav", **CLIP}]),
         absent=("TMP/out", "TMP/escaped.wav", "escaped.wav")),
    Case("eval-id-absolute [F2]", [*EVAL_RECON, "--manifest", "TMP/corpus/manifest.jsonl"], 1,
         r"item id '/tmp/escaped-anygpt': an absolute path",
         speech_manifest([{"id": "/tmp/escaped-anygpt", "path": "wavs/0.wav", **CLIP}]), absent=("TMP/out",)),
    Case("eval-truncated-clip [F7]", [*EVAL_RECON, "--manifest", "KIT/speech-cut/manifest.jsonl"], 1,
         r"item 'clip0': .*0\.wav has \d+ bytes, the manifest says \d+ \(truncated or changed"),
    Case("eval-manifest-missing", ["eval", "asr", "--manifest", "TMP/none.jsonl"], 1, r"none\.jsonl: manifest not found"),
    Case("eval-manifest-not-json", ["eval", "asr", "--manifest", "TMP/m.jsonl"], 1, r"m\.jsonl:1: not valid JSON",
         write("m.jsonl", "oops\n")),
    Case("eval-manifest-and-benchmark", ["eval", "asr", "--manifest", "KIT/speech/manifest.jsonl", "--benchmark",
                                         "librispeech", "--root", "TMP"], 2, r"either --manifest or --benchmark"),
    Case("eval-no-items", ["eval", "asr"], 2, r"no items: pass --manifest"),
    Case("eval-where-without-value", ["eval", "asr", "--manifest", "KIT/speech/manifest.jsonl", "--where", "speaker"], 2,
         r"--where 'speaker': expected KEY=VALUE"),
    Case("eval-where-matches-nothing", ["eval", "asr", "--manifest", "KIT/speech/manifest.jsonl", "--where", "speaker=zz"],
         1, r"no item has speaker=zz"),
    Case("eval-unknown-system", ["eval", "tts", "--manifest", "KIT/speech/manifest.jsonl", "--system", "nope.mod:load"],
         1, r"nope\.mod"),
    Case("eval-bad-tokenizer-option", [*EVAL_RECON, "--manifest", "KIT/speech/manifest.jsonl", "--tokenizer-option", "x"],
         2, r"--tokenizer-option 'x': expected KEY=VALUE"),
    # ------------------------------------------------------------------ blocks [F10]
    Case("blocks-config-missing [F10]", ["blocks", "--config", "TMP/none.json", "--out", "TMP/out"], 1,
         r"none\.json: blocks config not found"),
    Case("blocks-config-not-json", ["blocks", "--config", "TMP/c.json", "--out", "TMP/out"], 1,
         r"c\.json: blocks config is not valid JSON", write("c.json", "{")),
    Case("blocks-config-wrong-schema", ["blocks", "--config", "TMP/c.json", "--out", "TMP/out"], 1,
         r"c\.json: not a valid blocks config \(datasets: must be a list of objects", write("c.json", '{"block_len": 10}')),
    Case("blocks-config-bad-kind", ["blocks", "--config", "TMP/c.json", "--out", "TMP/out"], 1,
         r"dataset 'x': kind must be one of",
         write("c.json", '{"datasets": [{"name": "x", "kind": "poem", "corpus": "c"}]}')),
    Case("blocks-dataset-without-manifest", ["blocks", "--config", "TMP/c.json", "--out", "TMP/out"], 1,
         r"TMP/nothing/manifest\.jsonl: no manifest for dataset 'x'",
         write("c.json", '{"datasets": [{"name": "x", "kind": "text", "corpus": "TMP/nothing"}]}')),
    Case("blocks-parts-0", ["blocks", "--config", "TMP/c.json", "--out", "TMP/out", "--parts", "0"], 2, r"--parts: 0"),
    Case("blocks-part-out-of-range", ["blocks", "--config", "TMP/c.json", "--out", "TMP/out", "--part", "2", "--parts", "2"],
         2, r"--part: 2 is not a part of --parts 2"),
    Case("blocks-check-limit-0", ["blocks", "--config", "TMP/c.json", "--out", "TMP/out", "--check", "--check-limit", "0"],
         2, r"--check-limit: 0 is not allowed"),
    # ------------------------------------------------------------------ instruct [F10]
    Case("instruct-write-n-0", ["instruct", "write", "--n", "0", "--out-file", "TMP/out/s.jsonl"], 2, r"--n: 0 is not allowed"),
    Case("instruct-write-no-out-file", ["instruct", "write", "--corpus", "KIT"], 2,
         r"the following arguments are required: --out-file"),
    Case("instruct-write-out-file-is-a-folder", ["instruct", "write", "--corpus", "KIT", "--out-file", "KIT"], 1,
         r"--out-file is a folder", absent=()),
    Case("instruct-write-openai-without-endpoint", ["instruct", "write", "--writer", "openai", "--out-file", "TMP/out/s.jsonl"],
         2, r"--writer openai needs --base-url, --endpoint-model and --topics"),
    Case("instruct-write-empty-corpus", ["instruct", "write", "--corpus", "TMP/corpus", "--out-file", "TMP/out/s.jsonl"], 1,
         r"--corpus has no images/, music/ or text/ manifest"),
    Case("instruct-realise-scripts-missing [F10]", ["instruct", "realise", "--scripts", "TMP/none.jsonl", "--out", "TMP/out"],
         1, r"none\.jsonl: not found; expected a JSONL file"),
    Case("instruct-realise-scripts-not-json", ["instruct", "realise", "--scripts", "TMP/s.jsonl", "--out", "TMP/out"], 1,
         r"s\.jsonl:1: not valid JSON", write("s.jsonl", "oops\n")),
    Case("instruct-realise-scripts-bad-record", ["instruct", "realise", "--scripts", "TMP/s.jsonl", "--out", "TMP/out"], 1,
         r"s\.jsonl:1: not a conversation script", write("s.jsonl", '{"id": "a", "turns": [{"role": "god"}]}\n')),
    Case("instruct-realise-codes-without-dir", ["instruct", "realise", "--scripts", "TMP/s.jsonl", "--out", "TMP/out",
                                                "--codes", "image"], 2, r"--codes 'image': expected KEY=VALUE",
         write("s.jsonl", "")),
    Case("instruct-realise-codes-unknown-modality", ["instruct", "realise", "--scripts", "TMP/s.jsonl", "--out", "TMP/out",
                                                     "--codes", "smell=TMP"], 2, r"--codes smell=\.\.\.: not a modality",
         write("s.jsonl", "")),
    Case("instruct-realise-codes-missing", ["instruct", "realise", "--scripts", "TMP/s.jsonl", "--out", "TMP/out",
                                            "--codes", "image=TMP/none"], 1, r"TMP/none: no meta\.json", write("s.jsonl", "")),
    Case("instruct-realise-bad-excerpt", ["instruct", "realise", "--scripts", "TMP/s.jsonl", "--out", "TMP/out",
                                          "--excerpt", "music=5,2"], 2, r"excerpt seconds must be 0 < MIN <= MAX"),
    Case("instruct-realise-out-is-a-file", ["instruct", "realise", "--scripts", "TMP/s.jsonl", "--out", "KIT/media/a-file"],
         1, r"--out is a file", write("s.jsonl", ""), absent=()),
    # ------------------------------------------------------------------ the command itself
    Case("unknown-command", ["fly"], 2, r"unknown command 'fly'"),
]


def _fill(arg: str, kit: Path, tmp: Path, model: Path) -> str:
    return arg.replace("KIT", str(kit)).replace("TMP", str(tmp)).replace("MODEL", str(model))


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_gives_a_clean_message(case, kit, model_folder, tmp_path, capsys):
    if case.setup:
        case.setup(kit, tmp_path, model_folder)
    kit_files = {p: p.stat().st_mtime_ns for p in kit.rglob("*") if p.is_file()}
    res = run(capsys, *[_fill(a, kit, tmp_path, model_folder) for a in case.argv])
    assert_clean(res, case.code, _fill(case.message, kit, tmp_path, model_folder))
    for path in case.absent:
        assert not Path(_fill(path, kit, tmp_path, model_folder)).exists(), f"{path} was written"
    assert {p: p.stat().st_mtime_ns for p in kit.rglob("*") if p.is_file()} == kit_files, "an input was changed"
