"""Music corpus: clips rendered from the music21 core corpus with fluidsynth and General MIDI.

A piece is one score of music21's core corpus (a Bach chorale, an Essen folk song, an
O'Neill tune, ...). A clip is an excerpt of clip_seconds of a piece, all its parts played
by one General MIDI instrument at one tempo, rendered by the fluidsynth CLI with the
FluidR3_GM soundfont (reverb and chorus off, so output is deterministic), mono, peak 0.9,
at 32 kHz (and a 16 kHz copy when the preset asks). Each clip gets a caption written from
metadata and analysis (instrument, tempo, key and mode, metre, composer or collection,
register) in one of many phrasings, and those facts as attributes.

Splits: a share of the pieces is held out entirely (heldout_pieces); the clips of the other
pieces are split train/val/test by clip, so every piece in val/test also has clips in train
and no clip of a held-out piece is ever in train/val/test.

Output in DIR/music: wavs/<id>.wav (32 kHz), wavs16k/<id>.wav, manifest.jsonl.
"""

from __future__ import annotations

import random
import statistics
import tempfile
from pathlib import Path

import torch

from anygpt.data.corpora.common import (
    JobFailed, ToolTimeout, ok_entry, require_path, require_tool, retry_entry, run_tool, sha256_file, skip_entry,
    sub_rng, unit_hash,
)
from anygpt.data.corpora.presets import MusicPreset
from anygpt.media_io import load_audio, save_audio

SOUNDFONT = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")
PEAK = 0.9
# Collections used, their share of the pieces, and how captions name them.
COLLECTIONS: dict[str, tuple[float, str]] = {
    "bach": (0.25, "a chorale by J.S. Bach"),
    "essenFolksong": (0.30, "a folk song from the Essen collection"),
    "oneills1850": (0.15, "an Irish tune from O'Neill's 1850 collection"),
    "ryansMammoth": (0.10, "a tune from Ryan's Mammoth Collection"),
    "airdsAirs": (0.10, "an air from Aird's Airs"),
    "palestrina": (0.05, "a sacred piece by Palestrina"),
    "monteverdi": (0.03, "a madrigal by Monteverdi"),
    "miscFolk": (0.02, "a traditional folk tune"),
}
TEMPO_WORDS = ((66, "slow"), (90, "calm"), (112, "moderate"), (136, "lively"), (1000, "fast"))


def check_tools() -> None:
    require_tool("fluidsynth", "fluidsynth")
    require_path(SOUNDFONT, "fluid-soundfont-gm", "The General MIDI soundfont",
                 "sudo apt-get install fluid-soundfont-gm")
    try:
        import music21  # noqa: F401
        import pretty_midi  # noqa: F401
    except ImportError as e:
        from anygpt.data.corpora.common import MissingDependencyError
        raise MissingDependencyError(
            f"{e.name} is not installed: the music corpus needs the [data] extra; "
            "install it with `bash scripts/setup.sh` (or `pip install -e .[data]`).") from None


# ---- plan ----

def corpus_pieces() -> dict[str, list[tuple[str, int | None]]]:
    """(source path, opus number) of every score of the used collections, by collection."""
    from music21 import corpus

    out: dict[str, list[tuple[str, int | None]]] = {c: [] for c in COLLECTIONS}
    bundle = corpus.corpora.CoreCorpus().metadataBundle
    # Iterating the bundle itself copies every entry (about 40 s); its mapping is instant.
    entries = getattr(bundle, "_metadataEntries", None)
    for entry in (entries.values() if entries is not None else bundle):
        path = str(entry.sourcePath)
        coll = path.split("/")[0]
        if coll in out:
            out[coll].append((path, entry.number))
    for pieces in out.values():
        pieces.sort(key=lambda p: (p[0], str(p[1])))
    return out


def plan(preset: MusicPreset, seed: int) -> list[dict]:
    """Every clip of the corpus as a job dict (deterministic for the seed)."""
    by_coll = corpus_pieces()
    rng = sub_rng(seed, "music-pieces")
    pieces: list[tuple[str, str, int | None]] = []
    for coll, (share, _) in COLLECTIONS.items():
        n = max(1, round(share * preset.n_pieces)) if preset.n_pieces >= len(COLLECTIONS) else 0
        pieces += [(coll, p, num) for p, num in rng.sample(by_coll[coll], min(n, len(by_coll[coll])))]
    if not pieces:  # tiny counts: draw from the two largest collections only
        pieces = [("bach", p, num) for p, num in rng.sample(by_coll["bach"], preset.n_pieces // 2)]
        pieces += [("essenFolksong", p, num) for p, num in
                   rng.sample(by_coll["essenFolksong"], preset.n_pieces - len(pieces))]
    pieces = pieces[: preset.n_pieces]
    rng.shuffle(pieces)
    n_heldout = max(1, round(preset.heldout_piece_fraction * len(pieces))) if preset.heldout_piece_fraction else 0
    programs = sorted(preset.instruments)
    jobs = []
    for i, (coll, path, number) in enumerate(pieces):
        piece_id = f"{path}#{number}" if number is not None else path
        slug = piece_id.replace("/", "_").replace("#", "_n").replace(".", "_")
        for k in range(preset.clips_per_piece):
            jid = f"{slug}-{k}"
            crng = sub_rng(seed, "music-clip", jid)
            if i < n_heldout:
                split = "heldout_pieces"
            else:
                u = unit_hash("music-split", seed, jid)
                split = "train" if u < 0.9 else "val" if u < 0.95 else "test"
            jobs.append({"id": jid, "split": split, "piece_id": piece_id, "collection": coll,
                         "source": path, "number": number, "program": crng.choice(programs),
                         "start": crng.random(), "tempo": crng.randint(60, 150),
                         "velocity": crng.randint(70, 100), "seed": crng.getrandbits(32)})
    return jobs


# ---- analysis ----

def _excerpt(score, job: dict, clip_seconds: float) -> dict:
    """Notes (onset s, end s, midi pitch) of the excerpt and its musical facts."""
    from music21 import key as m21key
    from music21 import meter, stream, tempo

    flat = score.flatten()
    marks = list(flat.getElementsByClass(tempo.MetronomeMark))
    bpm = float(marks[0].getQuarterBPM()) if marks and marks[0].number else float(job["tempo"])
    bpm = min(max(bpm, 40.0), 200.0)
    spq = 60.0 / bpm  # seconds per quarter note
    total_q = float(flat.highestTime)
    clip_q = clip_seconds / spq
    start_q = float(int(max(0.0, total_q - clip_q) * job["start"]))  # on a beat
    end_q = start_q + clip_q
    notes = []
    excerpt = stream.Stream()
    for el in flat.notes:
        onset = float(el.offset)
        if onset < start_q or onset >= end_q:
            continue
        dur = max(float(el.quarterLength), 0.25)
        for p in el.pitches:
            notes.append(((onset - start_q) * spq, (min(onset + dur, end_q) - start_q) * spq, int(p.midi)))
        excerpt.insert(onset, el)
    if len(notes) < 3:
        raise JobFailed("excerpt has fewer than 3 notes")
    k = excerpt.analyze("key")
    sigs = list(flat.getElementsByClass(meter.TimeSignature))
    metre = sigs[0].ratioString if sigs else None
    pitches = [n[2] for n in notes]
    median = statistics.median(pitches)
    register = "low" if median < 55 else "high" if median > 72 else "middle"
    md = score.metadata
    return {
        "notes": notes, "bpm": round(bpm), "key": f"{k.tonic.name.replace('-', ' flat')} {k.mode}",
        "tonic": k.tonic.name, "mode": k.mode if isinstance(k, m21key.Key) else None, "metre": metre,
        "register": register, "lowest": min(pitches), "highest": max(pitches),
        "composer": (md.composer if md and md.composer else None),
        "title": (md.title if md and md.title else None),
        "content_seconds": min(clip_seconds, max(n[1] for n in notes) + 0.5),
    }


# ---- captions ----

def _tempo_word(bpm: int) -> str:
    return next(word for limit, word in TEMPO_WORDS if bpm < limit)


def _a(word: str) -> str:
    return ("an " if word[0] in "aeiou" else "a ") + word


def caption(facts: dict, instrument: str, collection: str, rng: random.Random) -> str:
    """One caption of many phrasings, every fact true of the clip (deterministic given rng)."""
    from_where = COLLECTIONS[collection][1]
    if facts["composer"] and collection not in ("bach", "palestrina", "monteverdi"):
        from_where = f"a piece by {facts['composer']}"
    tempo_w, bpm, key, metre, reg = _tempo_word(facts["bpm"]), facts["bpm"], facts["key"], facts["metre"], facts["register"]
    metre_txt = f"in {metre} time" if metre else ""
    clauses = [
        f"played at {bpm} beats per minute" if rng.random() < 0.5 else f"at a {tempo_w} tempo of about {bpm} BPM",
        f"in {key}" if rng.random() < 0.5 else f"in the key of {key}",
        metre_txt,
        f"mostly in the {reg} register" if rng.random() < 0.5 else f"with the notes in a {reg} range",
    ]
    clauses = [c for c in clauses if c]
    rng.shuffle(clauses)
    details = ", ".join(clauses[:-1]) + " and " + clauses[-1]
    templates = [
        f"{_a(tempo_w)} {instrument} rendition of {from_where}, {details}.",
        f"This is {from_where}, performed on {_a(instrument)}, {details}.",
        f"Solo {instrument} plays {from_where}; it is {details}.",
        f"{from_where[0].upper() + from_where[1:]} on {_a(instrument)}, {details}.",
        f"A short excerpt of {from_where}: {instrument}, {key}, {bpm} BPM"
        + (f", {metre} metre" if metre else "") + f", {reg} register.",
        f"Listen to {_a(instrument)} playing {from_where} {details}.",
        f"{_a(instrument).capitalize()} performs {from_where} at a {tempo_w} pace ({bpm} BPM) in {key}"
        + (f", {metre} time" if metre else "") + f", in the {reg} register.",
    ]
    text = rng.choice(templates)
    return text[0].upper() + text[1:]


# ---- render ----

def _render(notes: list[tuple[float, float, int]], program: int, velocity: int, sample_rate: int,
            tmp: Path) -> Path:
    import pretty_midi

    pm = pretty_midi.PrettyMIDI(initial_tempo=120.0)
    inst = pretty_midi.Instrument(program=program)
    for start, end, pitch in notes:
        inst.notes.append(pretty_midi.Note(velocity=velocity, pitch=pitch, start=start, end=max(end, start + 0.05)))
    pm.instruments.append(inst)
    mid, wav = tmp / "clip.mid", tmp / "clip.wav"
    pm.write(str(mid))
    res = run_tool(["fluidsynth", "-ni", "-q", "-R", "0", "-C", "0", "-g", "0.5", "-r", str(sample_rate),
                    "-F", str(wav), str(SOUNDFONT), str(mid)], 120)
    if res.returncode != 0 or not wav.is_file():
        raise JobFailed(f"fluidsynth failed: {res.stderr.decode(errors='replace').strip()[:200]}")
    return wav


def render_batch(jobs: list[dict], corpus_dir: Path, preset: MusicPreset) -> list[dict]:
    """Worker: parse, analyse, render and caption each job's clip."""
    from music21 import corpus

    torch.set_num_threads(1)
    entries = []
    for job in jobs:
        try:
            entries.append(ok_entry(job, _render_one(job, corpus_dir, preset, corpus)))
        except ToolTimeout as e:
            entries.append(retry_entry(job, str(e)))
        except Exception as e:  # a score that fails to parse or render is skipped, not fatal
            entries.append(skip_entry(job, f"piece {job['piece_id']}: {type(e).__name__}: {e}"))
    return entries


def _render_one(job: dict, corpus_dir: Path, preset: MusicPreset, corpus) -> dict:
    score = corpus.parse(job["source"], number=job["number"]) if job["number"] is not None \
        else corpus.parse(job["source"])
    if not hasattr(score, "flatten") or score.__class__.__name__ == "Opus":
        raise JobFailed("an opus of many scores, not one piece")
    facts = _excerpt(score, job, preset.clip_seconds)
    instrument = preset.instruments[job["program"]]
    with tempfile.TemporaryDirectory(prefix="anygpt-music-") as td:
        raw = _render(facts["notes"], job["program"], job["velocity"], preset.sample_rate, Path(td))
        wav = load_audio(raw, preset.sample_rate)
    n = int(round(preset.clip_seconds * preset.sample_rate))
    wav = torch.nn.functional.pad(wav, (0, max(0, n - wav.shape[-1])))[:, :n]
    peak = float(wav.abs().max())
    if peak < 1e-4:
        raise JobFailed("rendered silence")
    wav = wav * (PEAK / peak)
    rel = Path("wavs") / f"{job['id']}.wav"
    out = save_audio(wav, corpus_dir / rel, preset.sample_rate)
    record = {
        "id": f"music-{job['id']}", "path": str(rel), "sample_rate": preset.sample_rate,
        "duration": round(n / preset.sample_rate, 4), "split": job["split"], "piece_id": job["piece_id"],
        "caption": caption(facts, instrument, job["collection"], random.Random(job["seed"])),
        "sha256": sha256_file(out), "bytes": out.stat().st_size,
        "attributes": {
            "instrument": instrument, "program": job["program"], "collection": job["collection"],
            "composer": facts["composer"], "title": facts["title"], "tempo_bpm": facts["bpm"],
            "key": facts["key"], "mode": facts["mode"], "metre": facts["metre"], "register": facts["register"],
            "lowest_midi": facts["lowest"], "highest_midi": facts["highest"], "n_notes": len(facts["notes"]),
        },
    }
    if preset.extra_sample_rate:
        import soxr

        low = soxr.resample(wav[0].numpy(), preset.sample_rate, preset.extra_sample_rate, quality="HQ")
        rel16 = Path(f"wavs{preset.extra_sample_rate // 1000}k") / f"{job['id']}.wav"
        out16 = save_audio(torch.from_numpy(low.copy()), corpus_dir / rel16, preset.extra_sample_rate)
        record.update(path_16k=str(rel16), bytes_16k=out16.stat().st_size, sha256_16k=sha256_file(out16))
    return record
