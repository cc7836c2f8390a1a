"""Calibrate the scorers on ground truth and print tables (figures for docs/eval.md).

    python benchmarks/calibrate_scorers.py scenes [--n 1000] [--manifest data/tiny/images/manifest.jsonl]
    python benchmarks/calibrate_scorers.py music  [--manifest data/tiny/music/manifest.jsonl] [--n 150]
    python benchmarks/calibrate_scorers.py speech [--manifest data/tiny/speech/manifest.jsonl] [--per-voice 12]

scenes: the scene checker reads every ground-truth scene back from pixels (rendered here with
        the corpus renderer, or the corpus's own images when --manifest is given).
music:  tempo, key/mode and register read from each clip vs its metadata (the music corpus;
        without --manifest, probe melodies of known key and tempo from anygpt.eval.probes).
speech: Whisper tiny.en WER per voice (the speech corpus; without --manifest, Harvard
        sentences spoken by flite, festival and espeak voices synthesised here).
--json PATH also writes the figures as JSON. --smoke: 4 scenes at 64 px, 1 probe melody, or 1
sentence by 1 voice (seconds; the test suite runs it).
"""

from __future__ import annotations

import argparse
import collections
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from anygpt.eval.report import format_table, write_json

HARVARD = [
    "The birch canoe slid on the smooth planks.", "Glue the sheet to the dark blue background.",
    "It's easy to tell the depth of a well.", "These days a chicken leg is a rare dish.",
    "Rice is often served in round bowls.", "The juice of lemons makes fine punch.",
    "The box was thrown beside the parked truck.", "The hogs were fed chopped corn and garbage.",
    "Four hours of steady work faced us.", "A large size in stockings is hard to sell.",
    "The boy was there when the sun rose.", "A rod is used to catch pink salmon.",
    "The source of the huge river is the clear spring.", "Kick the ball straight and follow through.",
    "Help the woman get back to her feet.", "A pot of tea helps to pass the evening.",
    "Smoky fires lack flame and heat.", "The soft cushion broke the man's fall.",
    "The salt breeze came across from the sea.", "The girl at the booth sold fifty bonds.",
]
VOICES = {  # voice id -> command writing WAV to {out} from {text}
    "flite-kal": ["flite", "-voice", "kal", "-t", "{text}", "-o", "{out}"],
    "flite-awb": ["flite", "-voice", "awb", "-t", "{text}", "-o", "{out}"],
    "flite-rms": ["flite", "-voice", "rms", "-t", "{text}", "-o", "{out}"],
    "flite-slt": ["flite", "-voice", "slt", "-t", "{text}", "-o", "{out}"],
    "festival-ked": ["text2wave", "-eval", "(voice_ked_diphone)", "-o", "{out}"],
    "espeak-en-us": ["espeak-ng", "-v", "en-us", "-w", "{out}", "{text}"],
}


def calibrate_scenes(args) -> dict:
    from anygpt.data import scenes
    from anygpt.eval.scene_checker import check_scene

    keys = ("exact", "background", "count", "counts", "positions", "color", "shape", "size")
    rows = []
    if args.manifest:
        from anygpt.eval.benchmarks import read_eval_items

        items = [i for i in read_eval_items(args.manifest, args.split) if isinstance(i.attributes.get("objects"), list)]
        sets = {f"corpus {Path(args.manifest).parent.name}": [(i.path, i.attributes) for i in items[: args.n]]}
    else:
        rng = random.Random(args.seed)
        specs = [scenes.sample_scene(rng, heldout=(k % 5 == 0)) for k in range(args.n)]
        sets = {f"rendered {s}px": [(scenes.render_scene(sp, size=s), scenes.attributes(sp)) for sp in specs]
                for s in args.sizes}
        import io

        import numpy as np
        from PIL import Image

        jpeg, noisy, noise = [], [], np.random.default_rng(args.seed)
        for sp in specs:  # robustness rows: the 64 px images with +-8 levels of noise, and through JPEG q75
            img = scenes.render_scene(sp, size=64)
            wobble = np.asarray(img, dtype=np.float32) + noise.uniform(-8, 8, (64, 64, 3))
            noisy.append((Image.fromarray(np.clip(wobble, 0, 255).round().astype(np.uint8)), scenes.attributes(sp)))
            buf = io.BytesIO()
            img.save(buf, format="JPEG", quality=75)
            jpeg.append((Image.open(io.BytesIO(buf.getvalue())).convert("RGB"), scenes.attributes(sp)))
        sets["rendered 64px, noise +-8 levels"] = noisy
        sets["rendered 64px, JPEG q75"] = jpeg
    errors = collections.Counter()
    for name, pairs in sets.items():
        t0 = time.time()
        hits = collections.Counter()
        for img, truth in pairs:
            res = check_scene(img, truth)
            for k in keys:
                hits[k] += bool(res[k])
            if not res["exact"]:
                errors[name] += 1
        rows.append({"set": name, "n": len(pairs), **{k: hits[k] / len(pairs) for k in keys},
                     "ms/image": 1000 * (time.time() - t0) / max(len(pairs), 1)})
    print(format_table(rows, title="Scene checker vs ground truth (fraction of scenes right)"))
    return {"scenes": rows}


def _probe_items(n: int, seed: int, workdir: Path):
    from anygpt.eval.benchmarks import EvalItem
    from anygpt.eval.probes import TONICS, melody_clip

    rng = random.Random(seed)
    items = []
    for k in range(n):
        tonic, mode = rng.choice(TONICS), rng.choice(("major", "minor"))
        bpm = rng.randint(60, 150)
        path, _ = melody_clip(workdir / f"probe-{k}.wav", tonic, mode, bpm, seed=k,
                              program=rng.choice((0, 6, 24, 40, 56, 68, 71, 73)))
        items.append(EvalItem(id=f"probe-{k}", path=path, attributes={"tempo_bpm": bpm, "tonic": tonic, "mode": mode}))
    return items


def calibrate_music(args) -> dict:
    from anygpt.eval.music_attributes import compare_music, music_attributes

    if args.manifest:
        from anygpt.eval.benchmarks import read_eval_items

        items = read_eval_items(args.manifest, args.split)
        items = [items[int(k * len(items) / args.n)] for k in range(min(args.n, len(items)))]  # evenly spaced
        source = str(args.manifest)
    else:
        tmp = Path(tempfile.mkdtemp(prefix="anygpt-probes-"))
        items = _probe_items(args.n, args.seed, tmp)
        source = "probe melodies (anygpt.eval.probes)"
    t0 = time.time()
    hits, counts = collections.Counter(), collections.Counter()
    by_metre: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    confusions = collections.Counter()
    for it in items:
        est = music_attributes(it.path)
        res = compare_music(est, it.attributes)
        for k, v in res.items():
            hits[k] += v
            counts[k] += 1
        m = str(it.attributes.get("metre"))
        by_metre[m]["n"] += 1
        by_metre[m]["tempo"] += res.get("tempo", False)
        by_metre[m]["tempo_octave"] += res.get("tempo_octave", False)
        if not res.get("key", True):
            confusions[(it.attributes.get("key") or f"{it.attributes.get('tonic')} {it.attributes.get('mode')}", est["key"])] += 1
    rows = [{"attribute": k, "n": counts[k], "accuracy": hits[k] / counts[k]} for k in
            ("key", "key_relative", "mode", "tempo", "tempo_octave", "register") if counts[k]]
    print(format_table(rows, title=f"Music attributes from audio vs metadata ({source}; {time.time() - t0:.0f} s)"))
    metre_rows = [{"metre": m, "n": c["n"], "tempo": c["tempo"] / c["n"], "tempo_octave": c["tempo_octave"] / c["n"]}
                  for m, c in sorted(by_metre.items())]
    if len(metre_rows) > 1:
        print(format_table(metre_rows, title="\nTempo accuracy by metre"))
    if confusions:
        print("\nmost common key errors (truth -> read):", ", ".join(f"{a} -> {b} x{c}" for (a, b), c in confusions.most_common(6)))
    return {"music": rows, "music_by_metre": metre_rows, "source": source}


def _synth(voice: str, text: str, out: Path) -> Path:
    cmd = [c.format(text=text, out=out) for c in VOICES[voice]]
    if shutil.which(cmd[0]) is None:
        raise RuntimeError(f"{cmd[0]} not installed (bash scripts/setup.sh)")
    stdin = text if cmd[0] == "text2wave" else None
    subprocess.run(cmd, input=stdin, text=True, check=True, capture_output=True)
    return out


def calibrate_speech(args) -> dict:
    from anygpt.eval.asr import clip_errors, transcribe
    from anygpt.eval.benchmarks import EvalItem

    if args.manifest:
        from anygpt.eval.benchmarks import read_eval_items

        all_items = read_eval_items(args.manifest, args.split)
        per: dict[str, list] = collections.defaultdict(list)
        for it in all_items:
            if len(per[str(it.speaker)]) < args.per_voice:
                per[str(it.speaker)].append(it)
        items = [i for v in per.values() for i in v]
        source = str(args.manifest)
    else:
        tmp = Path(tempfile.mkdtemp(prefix="anygpt-voices-"))
        items = []
        for voice in args.voices:
            for k, text in enumerate(HARVARD[: args.per_voice]):
                items.append(EvalItem(id=f"{voice}-{k}", path=_synth(voice, text, tmp / f"{voice}-{k}.wav"),
                                      text=text, speaker=voice))
        source = "Harvard sentences synthesised here"
    t0 = time.time()
    by: dict[str, list] = collections.defaultdict(list)
    for it in items:
        by[str(it.speaker)].append(clip_errors(it.text, transcribe(it.path)))
    rows = []
    for spk, cs in sorted(by.items()):
        w = sum(c.ref_words for c in cs)
        rows.append({"voice": spk, "clips": len(cs), "words": w, "wer": sum(c.word_errors for c in cs) / max(w, 1),
                     "cer": sum(c.char_errors for c in cs) / max(sum(c.ref_chars for c in cs), 1)})
    w = sum(r["words"] for r in rows)
    rows.append({"voice": "ALL", "clips": sum(r["clips"] for r in rows), "words": w,
                 "wer": sum(r["wer"] * r["words"] for r in rows) / max(w, 1),
                 "cer": None})
    print(format_table(rows, title=f"Whisper tiny.en WER per voice ({source}; {time.time() - t0:.0f} s)"))
    return {"speech": rows, "source": source}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("what", choices=["scenes", "music", "speech"])
    p.add_argument("--manifest", type=Path, help="corpus manifest to calibrate on (default: make ground truth here)")
    p.add_argument("--split", help="manifest split(s), comma-separated")
    p.add_argument("--n", type=int, default=None, help="items (scenes default 1000, music 150)")
    p.add_argument("--per-voice", type=int, default=12, help="speech: clips per voice")
    p.add_argument("--sizes", type=int, nargs="+", default=[64, 256], help="scenes: image sizes to render")
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--json", type=Path, help="also write the figures here")
    p.add_argument("--smoke", action="store_true", help="tiny sizes (4 scenes, 1 melody, 1 voice): checks the script runs")
    args = p.parse_args(argv)
    args.voices = list(VOICES)
    if args.smoke:
        args.n, args.sizes, args.per_voice, args.voices = {"scenes": 4, "music": 1, "speech": 0}[args.what], [64], 1, \
            ["espeak-en-us"]
    args.n = args.n or {"scenes": 1000, "music": 150, "speech": 0}[args.what]
    out = {"scenes": calibrate_scenes, "music": calibrate_music, "speech": calibrate_speech}[args.what](args)
    if args.json:
        write_json(out, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
