"""Are a tokenizer's codes easy for a small LM to learn? Locality, predictability, invariance.

    python benchmarks/code_predictability.py                       # shipped image, speech, music tokenizers
    python benchmarks/code_predictability.py --image compact --image runs/grid/export --speech compact
    python benchmarks/code_predictability.py --skip image --skip music --units 128 --units 256   # + content units
    python benchmarks/code_predictability.py --smoke              # tiny sizes, seconds (the test suite runs it)

An LM learns text -> codes from examples. When one local change in the media moves most codes,
or the same words in another voice give other codes, every example is new to it. Measured here,
each tokenizer side by side (`--image`, `--speech`, `--music`: a tokenizer name such as "compact",
or an exported folder; repeat a flag to compare several):

Images (drawn scenes, anygpt.data.scenes; 64x64):
  - locality: how many codes change when one object changes colour, when one small object is
    added in an empty cell, when the background changes (mean and median over scenes);
  - predictability: an MLP from the scene's attributes (per grid cell: empty or shape, colour,
    size; plus the background) to every code, trained on --scenes rendered scenes (5/6) and
    scored on the rest: per-code accuracy, and the fraction of scenes with every code right;
  - reconstruction: the pixel scene checker (anygpt.eval.scene_checker) reads the decoded scene
    exactly, on fresh scenes of the training distribution and on held-out (shape, colour) pairs.
Speech (the same sentences in several espeak-ng and flite voices, 16 kHz):
  - invariance: normalised edit distance of layer-1 codes for the same sentence in two voices,
    against two different sentences in one voice (and the three voice pairs of issue 23);
  - speaker probe: logistic regression on layer-1 code histograms, fit on some sentences of
    every voice and scored on the others (chance = 1 / voices);
  - with --units K: candidates for a new layer 1 built from the content teacher, Whisper tiny.en
    encoder features at 25 frames per second: plain k-means units, and the voice-free content
    units of anygpt.nn.content_units fitted on --units-sentences other sentences (across voices,
    or with --units-objective phones as phones read by CTC from the text's phonemes).
Music (one melody rendered with pretty-midi + fluidsynth):
  - edit distance of each codebook's codes for the same notes on another instrument, at
    another tempo, against another melody on the same instrument.

Every number is printed as a markdown table; `--json PATH` writes them too.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

SENTENCES = (
    "The red ball rolled under the old wooden table.",
    "Please bring me a glass of cold water.",
    "My brother plays the violin every evening.",
    "The train to the city leaves at seven.",
    "A small bird sang outside the kitchen window.",
    "We planted tomatoes and beans in the garden.",
    "She forgot her umbrella at the station.",
    "The children laughed at the funny clown.",
    "Turn left at the second traffic light.",
    "Snow covered the mountains all winter long.",
    "He reads the newspaper before breakfast.",
    "The museum opens again on Monday morning.",
)
# (engine, voice): distinct speakers the probe must tell apart
VOICES = (
    ("espeak", "en-us"), ("espeak", "en-us+f3"), ("espeak", "en-gb"), ("espeak", "en-us+m3"),
    ("espeak", "en-us+f2"), ("espeak", "en-sc"), ("espeak", "en-us+m1"), ("espeak", "en-us+f4"),
    ("flite", "kal"), ("flite", "awb"), ("flite", "rms"), ("flite", "slt"),
)
ISSUE_PAIRS = (("en-us", "en-us+f3"), ("en-us", "en-gb"), ("en-us+m3", "en-us+f2"))


def edit_distance(a, b) -> float:
    """Levenshtein distance of two code sequences divided by the longer length (0 = same)."""
    from rapidfuzz.distance import Levenshtein

    return Levenshtein.normalized_distance(list(map(int, a)), list(map(int, b)))


def collapse_runs(codes) -> list[int]:
    """[5, 5, 5, 9, 9, 5] -> [5, 9, 5]: each run of one code as one token."""
    out: list[int] = []
    for c in map(int, codes):
        if not out or out[-1] != c:
            out.append(c)
    return out


def load(modality: str, name_or_dir: str):
    """A tokenizer by registered name, or an exported folder of the compact kind."""
    from anygpt.modalities import load_tokenizer

    if Path(name_or_dir).is_dir():
        return load_tokenizer(modality, "compact", path=name_or_dir)
    return load_tokenizer(modality, name_or_dir)


# ---------------------------------------------------------------- images
def scene_features(spec) -> np.ndarray:
    """SceneSpec -> float vector: per cell (reading order) [empty, shape one-hot, colour one-hot,
    size one-hot], then the background one-hot."""
    from anygpt.data import scenes

    shapes, colours, backgrounds = scenes.SHAPES, tuple(scenes.PALETTE), tuple(scenes.BACKGROUNDS)
    per = 1 + len(shapes) + len(colours) + len(scenes.SIZES)
    x = np.zeros(len(scenes.POSITIONS) * per + len(backgrounds), dtype=np.float32)
    for cell in range(len(scenes.POSITIONS)):
        x[cell * per] = 1.0
    for o in spec.objects:
        base = scenes.POSITIONS.index(o.position) * per
        x[base] = 0.0
        x[base + 1 + shapes.index(o.shape)] = 1.0
        x[base + 1 + len(shapes) + colours.index(o.color)] = 1.0
        x[base + 1 + len(shapes) + len(colours) + scenes.SIZES.index(o.size)] = 1.0
    x[len(scenes.POSITIONS) * per + backgrounds.index(spec.background)] = 1.0
    return x


def render(specs) -> torch.Tensor:
    """SceneSpecs -> FloatTensor [N, 3, 64, 64] in [0, 1]."""
    from anygpt.data import scenes

    arr = np.stack([np.asarray(scenes.render_scene(s, 64), dtype=np.uint8) for s in specs])
    return torch.from_numpy(arr).permute(0, 3, 1, 2).float() / 255.0


def encode_images(tok, images: torch.Tensor, batch: int = 256) -> np.ndarray:
    """[N, 3, 64, 64] -> codes int64 [N, codes per image]."""
    return np.concatenate([tok.encode(images[i:i + batch])[:, 0].numpy() for i in range(0, len(images), batch)])


def edited_scenes(rng: random.Random, n: int):
    """n (scene, one object recoloured, one small object added, background changed) tuples."""
    from dataclasses import replace

    from anygpt.data import scenes

    out = []
    while len(out) < n:
        spec = scenes.sample_scene(rng, heldout=False)
        free = [p for p in scenes.POSITIONS if p not in {o.position for o in spec.objects}]
        if not spec.objects or not free:
            continue
        objs = list(spec.objects)
        i = rng.randrange(len(objs))
        objs[i] = replace(objs[i], color=rng.choice([c for c in scenes.PALETTE if c != objs[i].color]))
        recoloured = replace(spec, objects=tuple(objs))
        added_obj = scenes.SceneObject(rng.choice(scenes.SHAPES), rng.choice(list(scenes.PALETTE)), "small",
                                       rng.choice(free))
        added = replace(spec, objects=tuple(sorted((*spec.objects, added_obj),
                                                   key=lambda o: scenes.POSITIONS.index(o.position))))
        background = replace(spec, background=rng.choice([b for b in scenes.BACKGROUNDS if b != spec.background]))
        out.append((spec, recoloured, added, background))
    return out


def image_locality(tok, n: int, seed: int) -> dict:
    """Codes changed per edit kind: {kind: {"mean", "median"}} over n scenes."""
    quads = edited_scenes(random.Random(f"locality-{seed}"), n)
    codes = encode_images(tok, render([s for q in quads for s in q])).reshape(n, 4, -1)
    out = {}
    for k, kind in enumerate(("one object recoloured", "one object added", "background changed"), start=1):
        changed = (codes[:, 0] != codes[:, k]).sum(axis=1)
        out[kind] = {"mean": float(changed.mean()), "median": float(np.median(changed))}
    return out


def image_probe(tok, n: int, seed: int, threads: int, epochs: int = 20) -> dict:
    """MLP attributes -> every code, fit on 5/6 of n fresh scenes, scored on the rest. Each code
    position has its own softmax over the codes seen there in training (a code never seen at a
    position in training counts as wrong)."""
    from anygpt.data import scenes

    rng = random.Random(f"probe-{seed}")
    specs = [scenes.sample_scene(rng, heldout=False) for _ in range(n)]
    x = torch.from_numpy(np.stack([scene_features(s) for s in specs]))
    codes = encode_images(tok, render(specs))
    n_train = n * 5 // 6
    classes = [np.unique(codes[:n_train, j]) for j in range(codes.shape[1])]
    # local class index per position; -1 where the code was never seen there in training
    y = torch.from_numpy(np.stack([np.where(np.isin(codes[:, j], c), np.searchsorted(c, codes[:, j]), -1)
                                   for j, c in enumerate(classes)], axis=1))
    sizes = [len(c) for c in classes]
    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    mlp = torch.nn.Sequential(torch.nn.Linear(x.shape[1], 256), torch.nn.GELU(), torch.nn.Linear(256, 256),
                              torch.nn.GELU(), torch.nn.Linear(256, sum(sizes)))
    opt = torch.optim.AdamW(mlp.parameters(), lr=2e-3, weight_decay=1e-4)

    def per_position(logits: torch.Tensor) -> list[torch.Tensor]:
        return list(logits.split(sizes, dim=-1))

    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        for idx in torch.randperm(n_train, generator=gen).split(128):
            parts = per_position(mlp(x[idx]))
            loss = sum(torch.nn.functional.cross_entropy(p, y[idx, j]) for j, p in enumerate(parts)) / len(parts)
            opt.zero_grad()
            loss.backward()
            opt.step()
    with torch.no_grad():
        pred = torch.stack([p.argmax(-1) for p in per_position(mlp(x))], dim=1)
    right = ((pred == y) & (y >= 0)).numpy()
    test, train = right[n_train:], right[:n_train]
    return {"per_code_heldout": float(test.mean()), "all_codes_heldout": float(test.all(axis=1).mean()),
            "per_code_train": float(train.mean()), "scenes_train": n_train, "scenes_heldout": n - n_train,
            "worst_code_heldout": float(test.mean(axis=0).min()), "codes_per_position": float(np.mean(sizes))}


def image_reconstruction(tok, n: int, seed: int) -> dict:
    """Fraction of decoded scenes the scene checker reads exactly: training distribution and
    held-out (shape, colour) pairs."""
    from anygpt.data import scenes
    from anygpt.eval.scene_checker import check_scene

    out = {}
    for name, heldout in (("test scenes", False), ("held-out pairs", True)):
        rng = random.Random(f"recon-{name}-{seed}")
        specs = [scenes.sample_scene(rng, heldout=heldout) for _ in range(n)]
        images = render(specs)
        recon = torch.cat([tok.decode(tok.encode(images[i:i + 128])) for i in range(0, n, 128)])
        arr = (recon.clamp(0, 1).permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)
        exact = [check_scene(a, scenes.attributes(s))["exact"] for a, s in zip(arr, specs)]
        out[name] = float(np.mean(exact))
    return out


def image_rows(name: str, tok, args) -> dict:
    from anygpt.data import scenes

    t0 = time.time()
    rng = random.Random(0)
    images = render([scenes.sample_scene(rng) for _ in range(256)])
    t1 = time.perf_counter()
    encode_images(tok, images)
    speed = len(images) / (time.perf_counter() - t1)
    res = {"tokenizer": name, "codes_per_image": tok.frames_per_item, "codebook": tok.codebook_size,
           "locality": image_locality(tok, args.locality_scenes, args.seed),
           "probe": image_probe(tok, args.scenes, args.seed, args.threads, epochs=args.probe_epochs),
           "reconstruction": image_reconstruction(tok, args.recon_scenes, args.seed),
           "encode_images_per_s": speed}
    res["seconds"] = time.time() - t0
    return res


# ---------------------------------------------------------------- speech
def extra_sentences(n: int, seed: int) -> list[str]:
    """n more sentences for fitting content units, never one of SENTENCES: the first half of one
    fixed sentence joined to the second half of another."""
    rng = random.Random(f"extra-sentences-{seed}")
    halves = [s.rstrip(".").split() for s in SENTENCES]
    out: list[str] = []
    while len(out) < n:
        a, b = rng.sample(halves, 2)
        text = " ".join(a[: len(a) // 2] + b[len(b) // 2:]) + "."
        if text not in out and text not in SENTENCES:
            out.append(text)
    return out


def content_unit_rows(args, test_clips: dict, tmp: Path) -> list[dict]:
    """Layer-1 candidates built from the content teacher (anygpt.nn.content_units): k-means units
    of Whisper tiny.en features, raw and after the cross-voice projection, fitted on
    --units-sentences other sentences (recombined from this benchmark's halves, or a corpus's
    training sentences with --units-corpus) spoken in the --units-voices voices."""
    from anygpt.data.corpora.speech import phonemes, synthesise
    from anygpt.media_io import load_audio
    from anygpt.nn.content_units import (PHONES, ContentUnitsConfig, kmeans, sentence_voices, train_content_units,
                                         utterance_norm)
    from anygpt.nn.speech_data import WhisperEncoder, pool_frames

    enc = WhisperEncoder(args.threads)

    def features(path: Path) -> np.ndarray:
        wav = load_audio(path, 16000)[0].numpy()
        return pool_frames(enc(wav), 2, -(-len(wav) // 640))  # 25 frames per second, as layer 1

    if args.units_voices == "trainer":
        from anygpt.train.speech_tokenizer import UNIT_VOICES as fit_voices
    else:
        fit_voices = VOICES[:args.voices]
    if args.units_corpus is not None:
        from anygpt.train.speech_tokenizer import train_clips

        texts = list(dict.fromkeys(c.text for c in train_clips(args.units_corpus) if c.text))[:args.units_sentences]
    else:
        texts = extra_sentences(args.units_sentences, args.seed)
    fit_clips = {}
    for s, text in enumerate(texts):
        for engine, voice in sentence_voices(fit_voices, args.units_voices_per_sentence, s, args.seed):
            wav = tmp / f"fit-{voice}-{s}.wav"
            synthesise(engine, voice, text, wav)
            fit_clips[(voice, s)] = features(wav)
    test_feats = {k: features(p) for k, p in test_clips.items()}
    rows = []
    for k in args.units:
        raw = kmeans(torch.nn.functional.normalize(torch.from_numpy(np.concatenate(
            [utterance_norm(f) for f in fit_clips.values()])), dim=-1), k, seed=args.seed)
        rows.append(speech_metrics(f"Whisper features, k-means {k}", {
            key: (torch.nn.functional.normalize(torch.from_numpy(utterance_norm(f)), dim=-1) @ raw.t()).argmax(-1).numpy()
            for key, f in test_feats.items()}))
        if "voices" in args.units_objective:
            units = train_content_units(fit_clips, ContentUnitsConfig(units=k, seed=args.seed))
            rows.append(speech_metrics(f"content units {k} (cross-voice projection)",
                                       {key: units.units(f).numpy() for key, f in test_feats.items()}))
    if "phones" in args.units_objective:
        cfg = ContentUnitsConfig(units=len(PHONES), seed=args.seed, objective="phones", context=args.units_context)
        units = train_content_units(fit_clips, cfg, phonemes={s: phonemes(text) for s, text in enumerate(texts)})
        rows.append(speech_metrics(f"phone units {len(PHONES)} (CTC on the text's phonemes, context {cfg.context})",
                                   {key: units.units(f).numpy() for key, f in test_feats.items()}))
    return rows


def speech_rows(name: str, tok, clips: dict) -> dict:
    """clips: (voice, sentence index) -> wav path; the tokenizer's layer 1 of each, measured."""
    return speech_metrics(name, {key: tok.encode(tok.load(path)[None])[0, 0].numpy() for key, path in clips.items()})


def speech_metrics(name: str, layer1: dict) -> dict:
    """layer1: (voice, sentence index) -> codes [T] -> invariance and speaker-probe figures."""
    from sklearn.linear_model import LogisticRegression

    voices = sorted({v for v, _ in layer1})
    n_sent = len({s for _, s in layer1})
    same_pairs = [(layer1[(a, s)], layer1[(b, s)]) for s in range(n_sent) for i, a in enumerate(voices) for b in voices[i + 1:]]
    same_text = [edit_distance(x, y) for x, y in same_pairs]
    # is the gap timing? lengths of the same sentence in two voices, and the distance once each
    # run of one code is one token
    length_gap = [1 - min(len(x), len(y)) / max(len(x), len(y), 1) for x, y in same_pairs]
    collapsed = [edit_distance(collapse_runs(x), collapse_runs(y)) for x, y in same_pairs]
    same_voice = [edit_distance(layer1[(v, s)], layer1[(v, t)])
                  for v in voices for s in range(n_sent) for t in range(s + 1, n_sent)]
    pairs = {f"{a} vs {b}": float(np.mean([edit_distance(layer1[(a, s)], layer1[(b, s)]) for s in range(n_sent)]))
             for a, b in ISSUE_PAIRS if a in voices and b in voices}
    size = max(int(c.max()) for c in layer1.values()) + 1

    def hist(c):
        return np.bincount(c, minlength=size)[:size] / max(1, len(c))

    fit = [k for k in layer1 if k[1] < n_sent * 2 // 3]
    held = [k for k in layer1 if k[1] >= n_sent * 2 // 3]
    clf = LogisticRegression(max_iter=3000, C=10.0).fit(np.stack([hist(layer1[k]) for k in fit]), [k[0] for k in fit])
    probe = float(np.mean(clf.predict(np.stack([hist(layer1[k]) for k in held])) == np.array([k[0] for k in held])))
    return {"tokenizer": name, "same_sentence_two_voices": float(np.mean(same_text)),
            "two_sentences_one_voice": float(np.mean(same_voice)), "issue_pairs": pairs,
            "length_gap": float(np.mean(length_gap)), "same_sentence_runs_collapsed": float(np.mean(collapsed)),
            "speaker_probe": probe, "probe_chance": 1 / len(voices), "voices": len(voices), "sentences": n_sent}


# ---------------------------------------------------------------- music
def render_melody(notes: list[int], program: int, tempo: float, tok, tmp: Path) -> torch.Tensor:
    """MIDI pitches, one per beat at 120 bpm * tempo, on a General MIDI program, rendered like the
    music corpus (fluidsynth) -> the tokenizer's waveform [1, samples]."""
    from anygpt.data.corpora.music import _render

    beat = 0.5 / tempo
    timed = [(i * beat, (i + 0.9) * beat, p) for i, p in enumerate(notes)]
    return tok.load(_render(timed, program, 90, tok.sample_rate, tmp))


def music_rows(name: str, tok, args) -> dict:
    rng = random.Random(f"music-{args.seed}")
    out: dict = {"tokenizer": name}
    rows = {"other instrument": [], "other tempo": [], "other melody": []}
    for _ in range(args.melodies):
        a = [rng.choice([60, 62, 64, 65, 67, 69, 71, 72]) for _ in range(8)]
        b = [rng.choice([60, 62, 64, 65, 67, 69, 71, 72]) for _ in range(8)]
        with tempfile.TemporaryDirectory() as tmp:
            clips = {k: render_melody(notes, program, tempo, tok, Path(tmp)) for k, (notes, program, tempo) in {
                "base": (a, 0, 1.0), "other instrument": (a, 40, 1.0), "other tempo": (a, 0, 1.25),
                "other melody": (b, 0, 1.0)}.items()}
        codes = {k: tok.encode(v[None])[0].numpy() for k, v in clips.items()}
        for k in rows:
            rows[k].append([edit_distance(codes["base"][q], codes[k][q]) for q in range(codes["base"].shape[0])])
    for k, v in rows.items():
        out[k] = [float(x) for x in np.mean(np.array(v), axis=0)]
    return out


# ---------------------------------------------------------------- report
def print_tables(result: dict) -> None:
    if result.get("image"):
        print("\n## Images (64x64 scenes)\n")
        print("| tokenizer | codes | recoloured: changed mean / median | added: mean / median | background: mean "
              "| probe per code (held-out) | probe all codes (held-out) | probe per code (train) "
              "| checker exact: test / held-out pairs | encode img/s |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        for r in result["image"]:
            loc, pr, rc = r["locality"], r["probe"], r["reconstruction"]
            print(f"| {r['tokenizer']} | {r['codes_per_image']} x {r['codebook']} "
                  f"| {loc['one object recoloured']['mean']:.1f} / {loc['one object recoloured']['median']:.0f} "
                  f"| {loc['one object added']['mean']:.1f} / {loc['one object added']['median']:.0f} "
                  f"| {loc['background changed']['mean']:.1f} | {pr['per_code_heldout']:.3f} "
                  f"| {pr['all_codes_heldout']:.3f} | {pr['per_code_train']:.3f} "
                  f"| {rc['test scenes']:.3f} / {rc['held-out pairs']:.3f} | {r['encode_images_per_s']:.0f} |")
    if result.get("speech"):
        print("\n## Speech layer 1 (normalised edit distance; probe accuracy)\n")
        print("| tokenizer | same sentence, two voices | two sentences, one voice | issue pairs "
              "| speaker probe (chance) | same sentence: length gap / runs collapsed |")
        print("|---|---|---|---|---|---|")
        for r in result["speech"]:
            pairs = "; ".join(f"{k} {v:.2f}" for k, v in r["issue_pairs"].items())
            print(f"| {r['tokenizer']} | {r['same_sentence_two_voices']:.3f} | {r['two_sentences_one_voice']:.3f} "
                  f"| {pairs} | {r['speaker_probe']:.3f} ({r['probe_chance']:.3f}) "
                  f"| {r['length_gap']:.3f} / {r['same_sentence_runs_collapsed']:.3f} |")
    if result.get("music"):
        print("\n## Music (normalised edit distance per codebook, against the base excerpt)\n")
        print("| tokenizer | other instrument | other tempo | other melody |")
        print("|---|---|---|---|")
        for r in result["music"]:
            f = lambda v: " / ".join(f"{x:.2f}" for x in v)  # noqa: E731
            print(f"| {r['tokenizer']} | {f(r['other instrument'])} | {f(r['other tempo'])} "
                  f"| {f(r['other melody'])} |")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--image", action="append", default=None, help="image tokenizer name or folder (repeatable)")
    ap.add_argument("--speech", action="append", default=None, help="speech tokenizer name or folder (repeatable)")
    ap.add_argument("--music", action="append", default=None, help="music tokenizer name or folder (repeatable)")
    ap.add_argument("--skip", action="append", default=[], choices=("image", "speech", "music"),
                    help="leave a modality out (repeatable)")
    ap.add_argument("--scenes", type=int, default=12000, help="scenes for the attribute probe (default: 12000)")
    ap.add_argument("--probe-epochs", type=int, default=20)
    ap.add_argument("--locality-scenes", type=int, default=60)
    ap.add_argument("--recon-scenes", type=int, default=400)
    ap.add_argument("--sentences", type=int, default=len(SENTENCES))
    ap.add_argument("--voices", type=int, default=len(VOICES))
    ap.add_argument("--units", type=int, action="append", default=None,
                    help="also measure content units (anygpt.nn.content_units) with this many units (repeatable)")
    ap.add_argument("--units-objective", action="append", choices=("voices", "phones"), default=None,
                    help="with --units: how the content units are fitted, repeatable: 'voices' (InfoNCE across voices, "
                         "k-means into --units units; the default) and/or 'phones' (CTC on the text's espeak-ng "
                         "phonemes, one unit per phone)")
    ap.add_argument("--units-context", type=int, default=2,
                    help="phone units: Whisper frames either side read with each frame (default 2)")
    ap.add_argument("--units-voices", choices=("benchmark", "trainer"), default="benchmark",
                    help="voices the content units are fitted in: this benchmark's own (default) or the speech "
                         "tokenizer trainer's UNIT_VOICES, none of them an espeak-ng voice measured here")
    ap.add_argument("--units-sentences", type=int, default=48,
                    help="other sentences, in the same voices, that the content units are fitted on")
    ap.add_argument("--units-corpus", default=None, metavar="CORPUS",
                    help="fit the content units on the first --units-sentences training sentences of this corpus "
                         "(as the trainer does) instead of sentences recombined from this benchmark's halves")
    ap.add_argument("--units-voices-per-sentence", type=int, default=None, metavar="V",
                    help="speak each fitting sentence in V of the fitting voices, drawn per sentence (default: all), "
                         "as `anygpt train speech-tokenizer --unit-voices V`")
    ap.add_argument("--melodies", type=int, default=8)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--smoke", action="store_true", help="tiny sizes: checks the script runs (seconds)")
    ap.add_argument("--json", default=None, help="also write the figures to this JSON file")
    args = ap.parse_args(argv)
    args.units_objective = args.units_objective or ["voices"]
    if args.smoke:
        args.scenes, args.probe_epochs, args.locality_scenes, args.recon_scenes = 60, 2, 4, 4
        args.sentences, args.voices, args.melodies, args.units_sentences = 3, 3, 1, 2
        args.units = [4] if args.units else None
    torch.set_num_threads(args.threads)
    result: dict = {"args": vars(args)}
    if "image" not in args.skip:
        result["image"] = [image_rows(n, load("image", n), args) for n in (args.image or ["compact"])]
    if "speech" not in args.skip:
        from anygpt.data.corpora.speech import synthesise

        with tempfile.TemporaryDirectory() as tmp:
            clips = {}
            for engine, voice in VOICES[:args.voices]:
                for s, text in enumerate(SENTENCES[:args.sentences]):
                    clips[(voice, s)] = Path(tmp) / f"{voice}-{s}.wav"
                    synthesise(engine, voice, text, clips[(voice, s)])
            result["speech"] = [speech_rows(n, load("speech", n), clips) for n in (args.speech or ["compact"])]
            if args.units:
                result["speech"] += content_unit_rows(args, clips, Path(tmp))
    if "music" not in args.skip:
        result["music"] = [music_rows(n, load("music", n), args) for n in (args.music or ["compact"])]
    print_tables(result)
    if args.json:
        from anygpt.files import write_json

        write_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
