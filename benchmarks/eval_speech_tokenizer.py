"""Issue-5 figures for a speech tokenizer on held-out speakers and sentences; prints markdown.

    python benchmarks/eval_speech_tokenizer.py --data data/tiny [--per-split 24] [--codec DIR] [--soundstorm DIR]
    python benchmarks/eval_speech_tokenizer.py --smoke     # 16 made-up espeak-ng clips, 1 per split (seconds)

1. Resynthesis from all layers: Whisper tiny.en WER of the reconstruction beside the WER of
   the source itself (target: at most 1.5x), Resemblyzer similarity reconstruction vs source
   (target >= 0.80). Beside them, the source's own magnitudes through the codec's Griffin-Lim:
   what the phase alone costs.
2. Voice cloning: layer 1 of the clip + the acoustic model prompted with 3 s of ANOTHER clip of
   the same speaker. WER (target: at most 2x the source's); similarity to that speaker (the
   centroid of its other clips; target >= 0.75) and, beside it, the mean similarity to the
   centroids of the other held-out speakers (must be clearly lower).
3. Voice in layer 1: logistic regression on bag-of-codes histograms predicts the speaker of
   test-split clips (16 training voices, fit on the train split): layer 1 only vs all layers.
4. Speed at batch 1 on --threads threads, as multiples of real time: encode (all layers: voice
   prompts, resynthesis), encode the LM-facing codes only (`encode_lm`: how corpora and user
   audio are tokenized for the LM), decode (all layers; layer 1 + acoustic model).
Clips are drawn from splits heldout_speakers (4 unseen voices) and heldout_sentences.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

SPLITS = ("heldout_speakers", "heldout_sentences")
SENTENCES = ["The birch canoe slid on the smooth planks.", "Glue the sheet to the dark blue background.",
             "Rice is often served in round bowls.", "The juice of lemons makes fine punch."]


def smoke_corpus(root: Path) -> Path:
    """A made-up speech corpus at root/speech, spoken by espeak-ng at four pitches (the
    "speakers"): p20 and p45 four clips each in the held-out splits, p70 and p95 two training
    clips and one test clip each -> root."""
    import subprocess

    folder = root / "speech"
    folder.mkdir(parents=True)
    plan = [("p20", "heldout_speakers", 4), ("p45", "heldout_sentences", 4), ("p70", "train", 2), ("p70", "test", 1),
            ("p95", "train", 2), ("p95", "test", 1)]
    rows = []
    for speaker, split, n in plan:
        for k in range(n):
            name = f"{speaker}-{split}-{k}.wav"
            text = SENTENCES[k % len(SENTENCES)]
            subprocess.run(["espeak-ng", "-v", "en-us", "-p", speaker[1:], "-w", str(folder / name), text], check=True)
            rows.append({"id": name[:-4], "path": name, "speaker": speaker, "split": split, "text": text})
    (folder / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


def bag_of_codes(codes: np.ndarray, sizes: list[int]) -> np.ndarray:
    """codes [K, T] -> concatenated normalised histograms [sum(sizes)]."""
    return np.concatenate([np.bincount(c, minlength=s)[:s] / max(1, len(c)) for c, s in zip(codes, sizes)])


def speaker_probe(tok, clips_train, clips_test, layers: int) -> float:
    from sklearn.linear_model import LogisticRegression

    sizes = [tok.codec.cfg.semantic_codebook_size] + [tok.codebook_size] * (tok.num_codebooks - 1)

    def feats(clips):
        return np.stack([bag_of_codes(tok.encode(tok.load(c.path)[None])[0, :layers].numpy(), sizes[:layers])
                         for c in clips])

    clf = LogisticRegression(max_iter=2000, C=10.0).fit(feats(clips_train), [c.speaker for c in clips_train])
    return float(np.mean(clf.predict(feats(clips_test)) == np.array([c.speaker for c in clips_test])))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="data/tiny")
    ap.add_argument("--codec", default=None, help="speech codec folder (default: shipped)")
    ap.add_argument("--soundstorm", default=None, help="acoustic model folder (default: shipped)")
    ap.add_argument("--per-split", type=int, default=24, help="clips per held-out split")
    ap.add_argument("--probe-clips", type=int, default=40, help="training clips per speaker for the probe")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=None)
    ap.add_argument("--smoke", action="store_true", help="made-up espeak-ng clips, one per split: checks the script runs")
    args = ap.parse_args(argv)
    if args.smoke:
        import sys
        import tempfile

        with tempfile.TemporaryDirectory(prefix="eval-speech-tokenizer-") as tmp:
            rest = [a for a in (argv if argv is not None else sys.argv[1:]) if a != "--smoke"]
            return main(rest + ["--data", str(smoke_corpus(Path(tmp))), "--per-split", "1", "--probe-clips", "2",
                                "--threads", "1"])
    torch.set_num_threads(args.threads)

    from anygpt.eval.asr import error_rates, transcribe
    from anygpt.eval.speaker import centroid_similarity, embed_speaker, speaker_similarity
    from anygpt.modalities.speech_compact import load_compact_speech_tokenizer
    from anygpt.nn.speech_data import read_speech_clips

    tok = load_compact_speech_tokenizer(args.codec, acoustic_path=args.soundstorm)
    sr = tok.sample_rate
    rng = np.random.default_rng(args.seed)
    all_clips = read_speech_clips(args.data)
    held = [c for c in all_clips if c.split in SPLITS]
    by_speaker = defaultdict(list)
    for c in held:
        by_speaker[c.speaker].append(c)
    picked = []
    for split in SPLITS:
        pool = [c for c in held if c.split == split and len(by_speaker[c.speaker]) > 3]
        picked += [pool[i] for i in rng.choice(len(pool), min(args.per_split, len(pool)), replace=False)]

    # speaker centroids from clips that are neither the target nor its prompt
    centroid_cache: dict[tuple[str, str], np.ndarray] = {}

    def centroid(speaker: str, exclude: set[str]) -> np.ndarray:
        key = (speaker, ",".join(sorted(exclude)))
        if key not in centroid_cache:
            embs = [embed_speaker(c.path) for c in by_speaker[speaker] if c.id not in exclude][:8]
            m = np.mean(embs, 0)
            centroid_cache[key] = m / np.linalg.norm(m)
        return centroid_cache[key]

    refs, src_hyp, rec_hyp, clone_hyp, phase_hyp = [], [], [], [], []
    rec_sim, clone_sim, clone_other = [], [], []
    # one untimed pass first: the first encode loads the content teacher (units' Whisper encoder)
    # and the first decode the acoustic model, one-time costs that are not coding speed
    t0 = time.perf_counter()
    warm = tok.load(picked[0].path)
    warm_codes = tok.encode(warm[None])
    tok.decode(warm_codes)
    tok.decode(warm_codes[:, :1], voice_prompt=warm[:, : 3 * sr])
    first_call_s = time.perf_counter() - t0
    # coding first, timed, with no scorer in between (the scorers' own thread pools would slow it)
    t_enc = t_lm = t_dec = t_clone = audio_s = 0.0
    coded = []
    for c in picked:
        wav = tok.load(c.path)
        audio_s += wav.shape[-1] / sr
        t0 = time.perf_counter()
        codes = tok.encode(wav[None])
        t_enc += time.perf_counter() - t0
        t0 = time.perf_counter()
        tok.encode_lm(wav[None])
        t_lm += time.perf_counter() - t0
        t0 = time.perf_counter()
        rec = tok.decode(codes)[0, 0].numpy()
        t_dec += time.perf_counter() - t0
        prompt_clip = next(o for o in rng.permutation(by_speaker[c.speaker]) if o.id != c.id)
        prompt = tok.load(prompt_clip.path)[:, : 3 * sr]
        t0 = time.perf_counter()
        clone = tok.decode(codes[:, :1], voice_prompt=prompt)[0, 0].numpy()
        t_clone += time.perf_counter() - t0
        coded.append((c, wav[0].numpy(), rec, prompt_clip, clone))
    codec = tok.codec
    for c, src, rec, prompt_clip, clone in coded:
        refs.append(c.text)
        with torch.inference_mode():
            whole = torch.nn.functional.pad(torch.from_numpy(src)[None, None], (0, (-len(src)) % codec.cfg.frame_hop))
            phase_hyp.append(transcribe(codec.waveform(codec.spectrogram(whole))[0, 0].numpy()))
        src_hyp.append(transcribe(src))
        rec_hyp.append(transcribe(rec))
        clone_hyp.append(transcribe(clone))
        rec_sim.append(speaker_similarity(src, rec))
        excl = {c.id, prompt_clip.id}
        clone_sim.append(centroid_similarity(clone, centroid(c.speaker, excl)))
        clone_other.append(np.mean([centroid_similarity(clone, centroid(s, set())) for s in by_speaker
                                    if s != c.speaker]))
    wer = {k: error_rates(refs, h)["wer"] for k, h in (("source", src_hyp), ("resynthesis", rec_hyp),
                                                          ("clone", clone_hyp), ("source_magnitudes", phase_hyp))}
    train = [c for c in all_clips if c.split == "train"]
    test = [c for c in all_clips if c.split == "test"]
    per_spk = defaultdict(list)
    for c in train:
        per_spk[c.speaker].append(c)
    probe_train = [c for cs in per_spk.values() for c in cs[: args.probe_clips]]
    probe = {f"layers 1..{k}": speaker_probe(tok, probe_train, test, k) for k in (1, tok.num_codebooks)}
    result = {
        "clips": len(picked), "audio_seconds": round(audio_s, 1), "wer": wer,
        "resynthesis_similarity": float(np.mean(rec_sim)),
        "clone_similarity_same_speaker": float(np.mean(clone_sim)),
        "clone_similarity_other_speakers": float(np.mean(clone_other)),
        "speaker_probe_accuracy": probe, "probe_chance": 1 / len(per_spk),
        "x_realtime": {"encode": audio_s / t_enc, "encode_lm_codes": audio_s / t_lm, "decode_all_layers": audio_s / t_dec,
                       "decode_layer1_plus_acoustic": audio_s / t_clone},
        "first_call_s": first_call_s, "threads": args.threads,
    }
    print(f"| measure ({len(picked)} held-out clips, {audio_s:.0f} s) | value | target |\n|---|---|---|")
    print(f"| WER source | {wer['source']:.3f} | |")
    print(f"| WER resynthesis, all layers | {wer['resynthesis']:.3f} | <= {1.5 * wer['source']:.3f} |")
    print(f"| WER of the source's own magnitudes, Griffin-Lim phase | {wer['source_magnitudes']:.3f} | |")
    print(f"| similarity resynthesis vs source | {result['resynthesis_similarity']:.3f} | >= 0.80 |")
    print(f"| WER layer 1 + acoustic model, 3 s prompt | {wer['clone']:.3f} | <= {2 * wer['source']:.3f} |")
    print(f"| similarity clone vs same speaker | {result['clone_similarity_same_speaker']:.3f} | >= 0.75 |")
    print(f"| similarity clone vs other speakers | {result['clone_similarity_other_speakers']:.3f} | clearly lower |")
    for k, v in probe.items():
        print(f"| speaker probe, {k} (chance {result['probe_chance']:.3f}) | {v:.3f} | |")
    for k, v in result["x_realtime"].items():
        print(f"| {k} speed, batch 1, {args.threads} threads | {v:.0f}x real time | |")
    print(f"| first encode + decodes of one clip (loads the models; not in the speeds) | {first_call_s:.2f} s | |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
