"""Encode / decode speed of the music tokenizers at batch 1 on CPU, as x real time.

    python benchmarks/bench_music_codec.py [--seconds 10] [--threads 1 2] [--repeat 3]

Rows: the released facebook/encodec_32khz config with random weights (speed does not depend
on the weights) and our compact codec (shipped weights if exported, else random). The load
average is printed: the machine may be shared, and timings are only comparable under equal load.
"""

from __future__ import annotations

import argparse
import os
import time

import torch


def _time(fn, repeat: int) -> float:
    fn()  # warm-up
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--skip-released", action="store_true")
    args = ap.parse_args()

    from anygpt.asset_paths import MUSIC_CODEC_TINY_DIR
    from anygpt.modalities.music_tokenizers import (
        CompactMusicTokenizer, ReleasedMusicTokenizer, load_compact_music_tokenizer, released_encodec_config,
    )
    from anygpt.nn.compact_music_codec import CompactMusicCodec, MusicCodecConfig

    tokenizers = []
    if not args.skip_released:
        from transformers import EncodecModel

        torch.manual_seed(0)
        tokenizers.append(("released encodec_32khz (random weights)", ReleasedMusicTokenizer(EncodecModel(released_encodec_config()))))
    if (MUSIC_CODEC_TINY_DIR / "model.safetensors").exists():
        tokenizers.append(("compact (shipped)", load_compact_music_tokenizer()))
    else:
        tokenizers.append(("compact (random weights)", CompactMusicTokenizer(CompactMusicCodec(MusicCodecConfig()))))

    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; {args.seconds:g} s of audio, batch 1, best of {args.repeat}")
    print("| codec | sample rate | tokens/s | threads | encode x RT | decode x RT |")
    print("|---|---|---|---|---|---|")
    for name, tok in tokenizers:
        wav = torch.randn(1, 1, int(args.seconds * tok.sample_rate)) * 0.1
        codes = tok.encode(wav)
        for n in args.threads:
            torch.set_num_threads(n)
            te = _time(lambda: tok.encode(wav), args.repeat)
            td = _time(lambda: tok.decode(codes), args.repeat)
            tps = tok.frame_rate * len(tok.lm_codebooks)
            print(f"| {name} | {tok.sample_rate} | {tps:g} | {n} | {args.seconds / te:.1f} | {args.seconds / td:.1f} |", flush=True)


if __name__ == "__main__":
    main()
