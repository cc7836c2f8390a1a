"""Reconstruction quality of the compact music codec on held-out pieces, beside baselines.

    python benchmarks/eval_music_codec.py --data data/tiny [--split heldout_pieces] [--limit 45]

For each clip (16 kHz copy) of the split: our codec's reconstruction, a mu-law baseline at the
codec's bitrate (the clip resampled to bitrate / bits Hz and mu-law quantised to `bits` bits,
then resampled back), and 8-bit mu-law at 16 kHz (128 kbps, a high-rate reference).
Metrics: note F1 of basic-pitch transcriptions (source vs reconstruction, onset within 50 ms;
anygpt.eval.music_notes), log-mel distance and SI-SNR (anygpt.eval.audio_metrics).
Prints a markdown table of means and writes --json if given.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import soxr
import torch


def mulaw(x: np.ndarray, sr: int, rate: int, bits: int, mu: float = 255.0) -> np.ndarray:
    """Resample to `rate` Hz, mu-law quantise to `bits` bits, decode, resample back to sr."""
    y = soxr.resample(x, sr, rate) if rate != sr else x.copy()
    y = np.clip(y, -1, 1)
    levels = 2 ** bits
    c = np.sign(y) * np.log1p(mu * np.abs(y)) / np.log1p(mu)
    q = np.round((c + 1) / 2 * (levels - 1)) / (levels - 1) * 2 - 1
    y = np.sign(q) * ((1 + mu) ** np.abs(q) - 1) / mu
    y = soxr.resample(y, rate, sr) if rate != sr else y
    return y[: len(x)].astype(np.float32)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="data/tiny")
    ap.add_argument("--split", default="heldout_pieces")
    ap.add_argument("--limit", type=int, default=0)
    ap.add_argument("--codec", default=None, help="folder of the compact codec (default: shipped)")
    ap.add_argument("--bits", type=int, default=3, help="bits per sample of the same-bitrate mu-law baseline")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from anygpt.eval.audio_metrics import log_mel_distance, si_snr
    from anygpt.eval.music_notes import note_f1, transcribe_notes
    from anygpt.media_io import load_audio
    from anygpt.modalities.music_tokenizers import load_compact_music_tokenizer

    tok = load_compact_music_tokenizer(args.codec)
    sr = tok.sample_rate
    bitrate = tok.frame_rate * tok.num_codebooks * np.log2(tok.codebook_size)
    low_rate = int(bitrate / args.bits)
    systems = {
        f"compact codec ({bitrate:.0f} bps)": lambda x: tok.decode(tok.encode(torch.from_numpy(x)[None, None]))[0, 0].numpy()[: len(x)],
        f"mu-law {args.bits} bit @ {low_rate} Hz ({bitrate:.0f} bps)": lambda x: mulaw(x, sr, low_rate, args.bits),
        f"mu-law 8 bit @ {sr} Hz ({8 * sr // 1000} kbps)": lambda x: mulaw(x, sr, sr, 8),
    }
    root = Path(args.data) / "music"
    recs = [json.loads(line) for line in (root / "manifest.jsonl").read_text().splitlines()]
    recs = [r for r in recs if r["split"] == args.split][: args.limit or None]
    rows: dict[str, list[dict]] = {k: [] for k in systems}
    t0 = time.time()
    for i, rec in enumerate(recs):
        x = load_audio(root / (rec.get("path_16k") or rec["path"]), sr)[0].numpy()
        ref_notes = transcribe_notes(x, sample_rate=sr)
        for name, fn in systems.items():
            y = fn(x)
            f = note_f1(ref_notes, transcribe_notes(y, sample_rate=sr))
            rows[name].append({"id": rec["id"], "note_f1": f["f1"], "log_mel": log_mel_distance(x, y, sr),
                               "si_snr": si_snr(x, y)})
        print(f"[{i + 1}/{len(recs)}] {rec['id']}: " + ", ".join(
            f"{n.split(' (')[0]} F1 {rows[n][-1]['note_f1']:.2f}" for n in systems), flush=True)
    print(f"\n{len(recs)} clips of split {args.split!r} ({time.time() - t0:.0f} s; load {os.getloadavg()[0]:.1f})\n")
    print("| system | note F1 (basic-pitch) | log-mel distance | SI-SNR dB |")
    print("|---|---|---|---|")
    summary = {}
    for name, rs in rows.items():
        m = {k: float(np.mean([r[k] for r in rs])) for k in ("note_f1", "log_mel", "si_snr")}
        summary[name] = m
        print(f"| {name} | {m['note_f1']:.3f} | {m['log_mel']:.3f} | {m['si_snr']:.1f} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"summary": summary, "clips": rows}, indent=1))


if __name__ == "__main__":
    main()
