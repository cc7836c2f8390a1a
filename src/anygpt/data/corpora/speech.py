"""Speech corpus: text-audio pairs at 16 kHz from flite, festival and espeak-ng voices.

Each clip is one sentence of the text corpus read by one speaker (presets.Voice): a base
TTS voice, optionally augmented with sox (pitch shift in semitones, which moves F0 and
formants together like a different vocal tract, and a tempo factor); augmented clips are
marked `augmented: true`. Audio is mono 16-bit PCM WAV at 16 kHz, peak-normalised to 0.9.

Splits that keep evaluation honest:
- train/val/test: training speakers reading sentences of the text corpus's train/val/test
  splits (so val/test sentences are never spoken in train);
- heldout_sentences: training speakers reading test-split sentences reserved for this set;
- heldout_speakers: speakers (presets.HELDOUT_VOICES) that never occur in any other split.

Output in DIR/speech: wavs/<speaker>/<id>.wav and manifest.jsonl with records
{id, path, text, speaker, engine, voice, augmented, duration, sample_rate, split,
 sentence_id, attributes: {pitch, tempo}, sha256, bytes}.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

import torch

from anygpt.data.corpora.common import (
    JobFailed, ToolTimeout, ok_entry, read_jsonl, require_tool, retry_entry, run_tool, sha256_file, skip_entry,
    sub_rng, unit_hash,
)
from anygpt.data.corpora.presets import SpeechPreset
from anygpt.data.corpora.text import speakable
from anygpt.media_io import load_audio, save_audio

ENGINE_TOOLS = {"flite": ("flite", "flite"), "festival": ("festival", "festival"),
                "espeak": ("espeak-ng", "espeak-ng"), "sox": ("sox", "sox")}
FESTIVAL_VOICE_PACKAGES = {"kal_diphone": "festvox-kallpc16k", "ked_diphone": "festvox-kdlpc16k",
                           "cmu_us_slt_arctic_hts": "festvox-us-slt-hts"}
PEAK = 0.9
TIMEOUT_S = 60


def check_tools(preset: SpeechPreset) -> None:
    """MissingDependencyError for the first engine (or sox) the preset needs that is absent."""
    voices = preset.train_voices + preset.heldout_voices
    for engine in sorted({v.engine for v in voices}):
        require_tool(*ENGINE_TOOLS[engine])
    if any(v.augmented for v in voices):
        require_tool(*ENGINE_TOOLS["sox"])


# ---- plan ----

def sentence_pools(text_manifest: Path, preset: SpeechPreset) -> dict[str, list[dict]]:
    """Speakable sentences of the text corpus by speech split.

    train/val come from the text train/val splits; the text test split is divided by hash
    into 'test' and 'heldout_sentences' halves. Held-out speakers read from the test half.
    """
    pools: dict[str, list[dict]] = {"train": [], "val": [], "test": [], "heldout_sentences": []}
    for r in read_jsonl(text_manifest):
        if r["kind"] != "sentence" or not speakable(r["text"], preset.min_words, preset.max_words):
            continue
        split = r["split"]
        if split == "test" and unit_hash("speech-heldout-sentence", r["id"]) < 0.5:
            split = "heldout_sentences"
        pools[split].append({"sentence_id": r["id"], "text": r["text"]})
    return pools


def plan(text_manifest: Path, preset: SpeechPreset, seed: int) -> list[dict]:
    """Every clip of the corpus as a job dict (deterministic for the seed)."""
    pools = sentence_pools(text_manifest, preset)
    wanted = {"train": preset.train_per_speaker, "val": preset.val_per_speaker,
              "test": preset.test_per_speaker, "heldout_sentences": preset.heldout_sentences_per_speaker}
    jobs = []
    assignments = [(v, split, n) for v in preset.train_voices for split, n in wanted.items()]
    assignments += [(v, "heldout_speakers", preset.heldout_speaker_clips) for v in preset.heldout_voices]
    for voice, split, n in assignments:
        pool = pools["test" if split == "heldout_speakers" else split]
        rng = sub_rng(seed, "speech", voice.speaker_id, split)
        for k, sent in enumerate(rng.sample(pool, min(n, len(pool)))):
            jid = f"{voice.speaker_id}/{split}-{k:05d}"
            jobs.append({"id": jid, "split": split, "text": sent["text"], "sentence_id": sent["sentence_id"],
                         "engine": voice.engine, "voice": voice.name, "pitch": voice.pitch,
                         "tempo": voice.tempo, "speaker": voice.speaker_id})
    return jobs


# ---- synthesis ----

def _run(cmd: list[str], **kw) -> bytes:
    """Run a synthesis tool -> its stdout; JobFailed naming the tool when it fails."""
    res = run_tool(cmd, TIMEOUT_S, **kw)
    if res.returncode != 0:
        err = (res.stderr or b"").decode(errors="replace").strip().splitlines()
        raise JobFailed(f"{cmd[0]} exited {res.returncode}: {err[-1] if err else 'no message'}")
    return res.stdout


def phonemes(text: str, voice: str = "en-us") -> list[str]:
    """The phonemes espeak-ng reads `text` as (its ASCII mnemonics, `espeak-ng -x`), stress marks
    dropped: "The dog." -> ['D', '@', 'd', '0', 'g']. A voice's accent is not applied: this is
    the text's content, the same for every speaker."""
    require_tool("espeak-ng", "espeak-ng")
    out = _run(["espeak-ng", "-q", "-x", "--sep=_", "-v", voice, text]).decode()
    marks = str.maketrans("", "", "',;")  # primary and secondary stress, unstressed mark
    return [t for t in (tok.translate(marks) for tok in re.split(r"[_\s]+", out)) if t.strip(":")]


def synthesise(engine: str, voice: str, text: str, wav: str | Path) -> Path:
    """Speak `text` with a flite voice (engine "flite": kal, awb, rms, slt) or an espeak-ng voice
    (engine "espeak": en-us, en-gb+f3, ...) into the WAV file `wav`, at the engine's own rate."""
    tool = {"flite": "flite", "espeak": "espeak-ng"}.get(engine)
    if tool is None:
        raise ValueError(f"unknown speech engine {engine!r}; choose flite or espeak")
    require_tool(tool, tool)
    wav = Path(wav)
    wav.parent.mkdir(parents=True, exist_ok=True)
    if engine == "flite":
        _run(["flite", "-voice", voice, "-t", text, "-o", str(wav)])
        return wav
    # espeak-ng draws the breath noise of its voice variants (+f1..+f5, ...) from the C library's
    # rand(), never seeded, so the same text gives the same bytes, except when the PulseAudio
    # client it initialises (even for -w) first has to create its runtime folder: that reseeds
    # rand() at random, so the first clips on a fresh machine came out different. A runtime
    # folder that exists keeps libpulse from doing that.
    with tempfile.TemporaryDirectory(prefix="anygpt-pulse-") as runtime:
        _run(["espeak-ng", "-v", voice, "-w", str(wav), text], env={**os.environ, "PULSE_RUNTIME_PATH": runtime})
    return wav


def _synth_flite(job: dict, wav: Path) -> None:
    synthesise("flite", job["voice"], job["text"], wav)


def _synth_espeak(job: dict, wav: Path) -> None:
    synthesise("espeak", job["voice"], job["text"], wav)


def _festival_batch(jobs: list[dict], tmp: Path) -> dict[str, Path]:
    """Synthesise all jobs (same festival voice) in one festival process; id -> wav path."""
    voice = jobs[0]["voice"]
    outs = {j["id"]: tmp / f"{i}.wav" for i, j in enumerate(jobs)}
    lines = [f"(voice_{voice})"]
    for j in jobs:
        text = j["text"].replace("\\", " ").replace('"', "'")
        lines.append(f'(utt.save.wave (SynthText "{text}") "{outs[j["id"]]}" \'riff)')
    script = tmp / "batch.scm"
    script.write_text("\n".join(lines) + "\n")
    res = run_tool(["festival", "--batch", str(script)], TIMEOUT_S * 4)
    stderr = (res.stderr or b"").decode(errors="replace")
    if "not a symbol" in stderr or "unbound variable" in stderr.lower():
        pkg = FESTIVAL_VOICE_PACKAGES.get(voice, f"the festival voice {voice}")
        raise JobFailed(f"festival voice {voice} failed to load (package {pkg}): {stderr.strip()[:120]}")
    return outs


def _augment(src: Path, dst: Path, pitch: float, tempo: float) -> None:
    """sox: pitch shift (cents) and tempo change, no dither (deterministic output)."""
    effects = []
    if pitch:
        effects += ["pitch", f"{pitch * 100:.0f}"]
    if tempo != 1.0:
        effects += ["tempo", "-s", f"{tempo:.4f}"]
    _run(["sox", "-D", str(src), "-b", "32", "-e", "floating-point", str(dst), *effects])


def _finish(job: dict, raw: Path, corpus_dir: Path, sample_rate: int, tmp: Path) -> dict:
    """Augment, resample, normalise and save one clip; returns its manifest record."""
    if not raw.is_file() or raw.stat().st_size <= 44:
        raise JobFailed("the engine wrote no audio")
    if job["pitch"] or job["tempo"] != 1.0:
        aug = tmp / f"aug-{raw.name}"
        _augment(raw, aug, job["pitch"], job["tempo"])
        raw = aug
    wav = load_audio(raw, sample_rate)
    peak = float(wav.abs().max())
    if peak < 1e-4:
        raise JobFailed("the engine wrote silence")
    wav = wav * (PEAK / peak)
    rel = Path("wavs") / job["speaker"] / (job["id"].split("/")[-1] + ".wav")
    out = save_audio(wav, corpus_dir / rel, sample_rate)
    return {
        "id": f"speech-{job['id']}", "path": str(rel), "text": job["text"], "speaker": job["speaker"],
        "engine": job["engine"], "voice": job["voice"], "augmented": bool(job["pitch"] or job["tempo"] != 1.0),
        "duration": round(wav.shape[-1] / sample_rate, 4), "sample_rate": sample_rate,
        "split": job["split"], "sentence_id": job["sentence_id"],
        "attributes": {"pitch_semitones": job["pitch"], "tempo": job["tempo"], "engine": job["engine"]},
        "sha256": sha256_file(out), "bytes": out.stat().st_size,
    }


def synthesise_batch(jobs: list[dict], corpus_dir: Path, sample_rate: int = 16000) -> list[dict]:
    """Worker: synthesise a batch of jobs of one voice; one done-log entry per job."""
    torch.set_num_threads(1)
    entries = []
    with tempfile.TemporaryDirectory(prefix="anygpt-speech-") as td:
        tmp = Path(td)
        engine = jobs[0]["engine"]
        festival_out = {}
        if engine == "festival":
            try:
                festival_out = _festival_batch(jobs, tmp)
            except ToolTimeout as e:
                return [retry_entry(j, str(e)) for j in jobs]
            except JobFailed as e:
                return [skip_entry(j, f"voice {j['speaker']}: {e}") for j in jobs]
        for i, job in enumerate(jobs):
            try:
                raw = festival_out.get(job["id"], tmp / f"{i}.wav")
                if engine == "flite":
                    _synth_flite(job, raw)
                elif engine == "espeak":
                    _synth_espeak(job, raw)
                entries.append(ok_entry(job, _finish(job, raw, corpus_dir, sample_rate, tmp)))
            except ToolTimeout as e:
                entries.append(retry_entry(job, str(e)))
            except (JobFailed, OSError, ValueError) as e:
                entries.append(skip_entry(job, f"voice {job['speaker']}: {e}"))
    return entries
