"""`anygpt train speech-tokenizer`: train the compact speech tokenizer (anygpt.nn.speech_codec).

    anygpt train speech-tokenizer --corpus data/tiny --out runs/speech-tokenizer --steps 4200 \\
        --max-minutes 45 --threads 1 --export runs/speech-tokenizer/model     # the shipped recipe
    anygpt train speech-tokenizer --synthetic --out /tmp/speech-smoke --steps 20   # no corpus needed
    anygpt train speech-tokenizer --corpus data/tiny --out runs/speech-units --layer1 units \
        --init src/anygpt/assets/speech-tokenizer-tiny --steps 2000 --threads 1 --export runs/speech-units/model

Layer 1 "units" (issue 23: content, not voice): first the content units (anygpt.nn.content_units)
are fitted on --unit-sentences sentences of the training split, each spoken by every voice of
UNIT_VOICES (the same sentence in many voices is the signal that makes them voice-free; cached
in OUT/content-units.safetensors), then the codec learns a vector per unit and its acoustic
layers code the rest. --init starts from an exported codec (every weight of the same name and
shape; layer 1 is new when it changes kind).

Reads CORPUS/speech/manifest.jsonl (split "train"), computes once the layer-1 distillation
targets (Whisper tiny.en encoder outputs at 50 Hz, cached in OUT/whisper50.npz, resumable),
then trains on random crops with: L1 of log magnitudes + L1 of 80-band log-mel energies (the
default Griffin-Lim codec; a codec with phase "predicted" uses multi-scale log-mel L1 +
spectral convergence + waveform L1 instead), RVQ commitment/codebook losses, the layer-1
distillation loss (1 - cosine between a linear map of layer 1's vectors and the Whisper
features, as SpeechTokenizer's "D-axis" loss) and a speaker classifier on layer 1 behind a
gradient-reversal layer. AdamW, warmup then cosine; bf16 autocast on CPU.
Checkpoints, resume, logs and the run flags are the training core's (`anygpt.train.core`):
rerunning the same command continues from the newest checkpoint (batches depend only on seed
and step, so a resumed run draws the same ones). `--export DIR` writes DIR/config.json +
DIR/model.safetensors, which `load_tokenizer("speech", "compact", path=DIR)` reads;
`--export-only` exports the newest checkpoint. `--synthetic` trains on generated "speech".
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from anygpt.errors import AnyGPTError, UsageError
from anygpt.nn.spectral_codec import MultiScaleMelLoss, mel_filterbank
from anygpt.nn.quantize import VectorQuantizer
from anygpt.nn.speech_codec import CompactSpeechCodec, SpeechCodecConfig, grad_reverse, save_codec
from anygpt.train.core import RunOptions, TrainingRun, add_run_args, lr_at
from anygpt import cli_flags
from anygpt.cli_flags import set_threads
from anygpt.train.recipes import CorpusError, add_corpus_arg, command_line, train_or_export

SYNTHETIC = dict(n=32, seconds=3.0, n_speakers=4)  # --synthetic: clips, seconds each, speakers
# voices that speak the sentences the content units are fitted on: the corpus's flite voices and
# 33 espeak-ng accent + variant pairs, none of them a voice that benchmarks/code_predictability.py
# measures invariance on (its espeak-ng voices stay unseen; more voices made the units more
# voice-free there: same sentence in two voices 0.584 apart with 12 fitting voices, 0.287 with these)
_UNIT_ESPEAK = (
    "en-us+m2", "en-029+m2", "en-gb+m4", "en-gb-scotland+m4", "en-gb-x-rp+m5", "en-us-nyc+m5", "en-029+m6",
    "en-gb-x-gbclan+m6", "en-gb-scotland+m7", "en-gb-x-gbcwmd+m7", "en-us-nyc+f1", "en-us+f1", "en-gb-x-gbclan+f5",
    "en-gb+f5", "en-gb-x-gbcwmd+Annie", "en-gb-x-rp+Annie", "en-us+Andy", "en-029+Andy", "en-gb+Belinda",
    "en-gb-scotland+Belinda", "en-gb-x-rp+Michael", "en-us-nyc+Michael", "en-029+Linda", "en-gb-x-gbclan+Linda",
    "en-gb-scotland+grandma", "en-gb-x-gbcwmd+grandma", "en-us-nyc+grandpa", "en-us+grandpa", "en-gb-x-gbclan+Alex",
    "en-gb+Alex", "en-gb-x-gbcwmd+Steph", "en-gb-x-rp+Steph", "en-us+klatt2")
UNIT_VOICES = tuple(("espeak", v) for v in _UNIT_ESPEAK) + (("flite", "kal"), ("flite", "rms"), ("flite", "slt"))


def synthetic_speech(n: int, seconds: float, n_speakers: int = 4, sample_rate: int = 16000,
                     seed: int = 0) -> tuple[list[np.ndarray], list[int]]:
    """n clips of vowel-like buzz (speaker = f0 and formant scale; content = formant sequence)."""
    rng = np.random.default_rng(seed)
    s = int(seconds * sample_rate)
    wavs, spk = [], []
    for i in range(n):
        k = i % n_speakers
        f0 = 90 + 50 * k
        seg = np.repeat(rng.integers(0, 5, size=int(seconds * 8) + 1), sample_rate // 8)[:s]
        formants = np.array([300, 500, 700, 400, 600])[seg] * (1 + 0.1 * k)
        phase = np.cumsum(2 * np.pi * f0 / sample_rate * np.ones(s))
        x = sum(np.sin(h * phase) * np.exp(-((h * f0 - formants) / 300.0) ** 2) for h in range(1, 30))
        wavs.append((0.3 * x / (np.abs(x).max() + 1e-6)).astype(np.float32))
        spk.append(k)
    return wavs, spk


def spectrum_losses(logmag: torch.Tensor, target: torch.Tensor, mel_fb: torch.Tensor,
                    floor: float = -7.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Predicted vs true log magnitude [B, bins, N] -> (L1 of log magnitudes floored at `floor`,
    so that inaudible bins do not dominate; L1 of 80-band log-mel energies)."""
    logmag, target = logmag.float(), target.float()
    mag = (logmag.clamp(min=floor) - target.clamp(min=floor)).abs().mean()
    mel_est = torch.log(mel_fb @ torch.exp(logmag.clamp(max=6.0)) + 1e-5)
    mel_ref = torch.log(mel_fb @ torch.exp(target) + 1e-5)
    return mag, (mel_est - mel_ref).abs().mean()


def distill_loss(semantic: torch.Tensor, targets: list[np.ndarray], idx: list[int], starts: list[int],
                 frames: int) -> torch.Tensor:
    """1 - cosine between layer 1's prediction semantic [B, frames, D] and the content targets of
    the crops (clip idx[b] from code frame starts[b]), averaged over the frames the clips have."""
    b, _, d = semantic.shape
    tgt, valid = torch.zeros(b, frames, d), torch.zeros(b, frames)
    for row, (i, st) in enumerate(zip(idx, starts)):
        seg = torch.from_numpy(targets[i][st: st + frames].astype(np.float32))
        tgt[row, : len(seg)] = seg
        valid[row, : len(seg)] = 1
    cos = F.cosine_similarity(semantic.float(), tgt, dim=-1)
    return ((1 - cos) * valid).sum() / valid.sum().clamp(min=1)


def draw_crops(wavs: list[np.ndarray], batch: int, frames: int, hop: int, seed: int, step: int,
               weights: np.ndarray | None = None) -> tuple[torch.Tensor, list[int], list[int]]:
    """Random crops [batch, 1, frames*hop] aligned to code frames; returns (wav, clip idx, start frame).
    Clips shorter than the crop are zero-padded. Random gain of -10..0 dB."""
    rng = np.random.default_rng(seed * 1_000_003 + step)
    n = frames * hop
    out = np.zeros((batch, 1, n), np.float32)
    idx = rng.choice(len(wavs), size=batch, p=weights).tolist()
    starts = []
    for b, i in enumerate(idx):
        w = wavs[i]
        nf = -(-len(w) // hop)
        st = int(rng.integers(0, max(1, nf - frames + 1)))
        seg = w[st * hop: st * hop + n]
        out[b, 0, : len(seg)] = seg * 10 ** (-rng.uniform(0, 10) / 20)
        starts.append(st)
    return torch.from_numpy(out), idx, starts


# ---------------------------------------------------------------- training
def build_parser() -> argparse.ArgumentParser:
    p = cli_flags.Parser(prog="anygpt train speech-tokenizer", description=__doc__)
    add_corpus_arg(p, "speech/manifest.jsonl")
    p.add_argument("--synthetic", action="store_true", help="train on generated clips instead of --corpus")
    p.add_argument("--batch", type=cli_flags.positive_int, default=32, help="crops per step (default: 32)")
    p.add_argument("--crop-frames", type=cli_flags.positive_int, default=50, help="code frames per crop (default: 50)")
    p.add_argument("--lr", type=cli_flags.positive_float, default=2e-3, help="peak learning rate (default: 2e-3)")
    p.add_argument("--warmup", type=cli_flags.count_or_zero, default=200, help="warmup steps (default: 200)")
    p.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=True, help="bf16 autocast (default: on)")
    p.add_argument("--distill-weight", type=cli_flags.non_negative_float, default=2.0, help="weight of the layer-1 distillation loss")
    p.add_argument("--adversary-weight", type=cli_flags.non_negative_float, default=0.1, help="gradient-reversal scale (0: off)")
    p.add_argument("--config", type=str, default="{}", help="JSON overrides of SpeechCodecConfig")
    p.add_argument("--layer1", choices=["vq", "units"], default="vq",
                   help="layer 1: a VQ distilled from Whisper (vq, speech-tokenizer-tiny) or voice-free content units")
    p.add_argument("--units", type=cli_flags.positive_int, default=None,
                   help="content units with --layer1 units (default: 256; with --unit-objective phones one per phone)")
    p.add_argument("--unit-objective", choices=["voices", "phones"], default="voices",
                   help="how the content units are fitted: voices (one sentence in many voices lands on the same "
                        "units; k-means) or phones (CTC on the text's espeak-ng phonemes; one unit per phone: "
                        "the same sentence in two voices 0.348 apart where voices gives 0.469, anygpt.nn.content_units)")
    p.add_argument("--unit-context", type=cli_flags.count_or_zero, default=None,
                   help="Whisper frames either side read with each frame (default: 2 for phones, 0 for voices)")
    p.add_argument("--unit-sentences", type=cli_flags.positive_int, default=48,
                   help="training sentences the content units are fitted on (default: 48)")
    p.add_argument("--unit-voices", type=cli_flags.positive_int, default=None, metavar="V",
                   help="UNIT_VOICES voices each of those sentences is spoken in, drawn at random per sentence "
                        "(default: all of them). More sentences in fewer voices each generalise better to new "
                        "words at the same synthesis cost: 1,000 x 4 gave 0.484 where 192 x 36 gave 0.522 "
                        "(anygpt.nn.content_units)")
    p.add_argument("--init", type=Path, default=None, metavar="DIR",
                   help="start from an exported codec folder (the weights of the same name and shape)")
    add_run_args(p, out="runs/speech-tokenizer", steps=4200, save_every=250, log_every=10,
                 export_help="after training, export config.json + model.safetensors to this folder")
    return p


def codec_config(a: argparse.Namespace) -> SpeechCodecConfig:
    """--init's config (or the defaults), then --config's overrides, then --layer1."""
    base = SpeechCodecConfig().to_dict()
    if a.init is not None:
        from anygpt.nn.weights import read_meta

        meta = read_meta(a.init)
        base = {**base, **meta.get("codec", meta)}
    layer1 = {"layer1": a.layer1}
    if a.layer1 == "units":
        from anygpt.nn.content_units import PHONES

        phones = a.unit_objective == "phones"
        if phones and a.units not in (None, len(PHONES)):
            raise UsageError(f"--units {a.units}: phone units are one per phone, {len(PHONES)}")
        layer1.update(semantic_codebook_size=a.units or (len(PHONES) if phones else 256),
                      units_objective=a.unit_objective,
                      units_context=a.unit_context if a.unit_context is not None else 2 if phones else 0)
    try:
        return SpeechCodecConfig(**{**base, "seed": a.seed, **json.loads(a.config), **layer1})
    except (json.JSONDecodeError, TypeError, ValueError) as e:
        raise AnyGPTError(f"--config: not JSON overrides of SpeechCodecConfig ({e})") from None


def init_from(codec: CompactSpeechCodec, folder: Path) -> list[str]:
    """--init: the weights of `folder`'s codec that fit (anygpt.nn.weights.load_matching); its
    loaded codebooks need no k-means init -> the names of the weights left new."""
    from anygpt.nn.weights import load_matching

    fresh = load_matching(codec, folder)
    for name, m in codec.named_modules():
        if isinstance(m, VectorQuantizer) and f"{name}.codebook" not in fresh:
            m.initted.fill_(True)
    return fresh


def train_clips(corpus: str):
    """The clips of the corpus's speech manifest with split "train" (no audio read)."""
    from anygpt.nn.speech_data import read_speech_clips

    try:
        clips = read_speech_clips(corpus, ["train"])
    except FileNotFoundError as e:
        raise CorpusError(str(e)) from None
    if not clips:
        raise CorpusError(f"{corpus}: the speech manifest has no clips with split 'train'")
    return clips


def speakers(a: argparse.Namespace) -> int:
    """Speakers of the training split (the adversary's classes), from the manifest alone."""
    return SYNTHETIC["n_speakers"] if a.synthetic else len({c.speaker for c in train_clips(a.corpus)})


def load_data(a: argparse.Namespace, codec: CompactSpeechCodec):
    """-> (wavs, speaker ids, per clip: content targets [T, 384] (float16) or None, layer-1 units
    LongTensor [T] of a "units" codec or None)."""
    cfg = codec.cfg
    from anygpt.nn.speech_data import WhisperEncoder, load_clips, pool_frames, speaker_index, whisper_targets

    if a.synthetic:
        wavs, spk = synthetic_speech(SYNTHETIC["n"], SYNTHETIC["seconds"], SYNTHETIC["n_speakers"], seed=a.seed)
        if cfg.layer1 != "units":
            return wavs, spk, None, None
        enc = WhisperEncoder(threads=torch.get_num_threads())
        targets = [pool_frames(enc(w), cfg.frame_hop // 320, -(-len(w) // cfg.frame_hop)) for w in wavs]
        if cfg.units_objective == "phones":
            raise UsageError("--unit-objective phones needs sentences to read: give --corpus, not --synthetic")
        # stand-in "sentences": clip i and the clip of the next speaker
        fit_units(a, codec, lambda: ({(s, i // SYNTHETIC["n_speakers"]): t for i, (s, t) in enumerate(zip(spk, targets))},
                                     None))
        return wavs, spk, None, [codec.units.units(t) for t in targets]
    clips = train_clips(a.corpus)
    wavs = load_clips(clips, cfg.sample_rate, progress=not a.no_progress)
    t50 = whisper_targets(clips, wavs, 320, Path(a.out) / "whisper50.npz", threads=torch.get_num_threads(),
                          progress=not a.no_progress)
    f = cfg.frame_hop // 320
    targets = [pool_frames(t50[c.id].astype(np.float32), f, -(-len(w) // cfg.frame_hop)).astype(np.float16)
               for c, w in zip(clips, wavs)]
    spk_ix = speaker_index(clips)
    speakers_of = [spk_ix[c.speaker] for c in clips]
    if cfg.layer1 != "units":
        return wavs, speakers_of, targets, None
    fit_units(a, codec, lambda: unit_sentence_features(a, clips, f))
    return wavs, speakers_of, None, [codec.units.units(t.astype(np.float32)) for t in targets]


def unit_sentence_features(a: argparse.Namespace, clips, factor: int) -> tuple[dict[tuple[str, int], np.ndarray], dict]:
    """--unit-sentences training sentences, each spoken by --unit-voices UNIT_VOICES voices (drawn
    per sentence; all of them by default) -> ((voice, sentence) -> Whisper features [T, 384] at
    the code rate, sentence -> its espeak-ng phonemes)."""
    import tempfile

    from anygpt.data.corpora.speech import phonemes, synthesise
    from anygpt.media_io import load_audio
    from anygpt.nn.content_units import sentence_voices
    from anygpt.nn.speech_data import WhisperEncoder, pool_frames

    texts = list(dict.fromkeys(c.text for c in clips if c.text))[: a.unit_sentences]
    enc = WhisperEncoder(threads=torch.get_num_threads())
    feats = {}
    with tempfile.TemporaryDirectory(prefix="anygpt-units-") as tmp:
        for s, text in enumerate(texts):
            for engine, voice in sentence_voices(UNIT_VOICES, a.unit_voices, s, a.seed):
                wav = load_audio(synthesise(engine, voice, text, Path(tmp) / "say.wav"), 16000)[0].numpy()
                feats[(voice, s)] = pool_frames(enc(wav), factor, -(-len(wav) // (320 * factor)))
    return feats, {s: phonemes(text) for s, text in enumerate(texts)}


def fit_units(a: argparse.Namespace, codec: CompactSpeechCodec, features) -> None:
    """The codec's content units: fitted once on features() (-> ((voice, sentence) -> features
    [T, D], sentence -> phonemes or None)), then read back from OUT/content-units.safetensors (a
    resumed run keeps its units and speaks nothing again)."""
    from anygpt.files import atomic_path
    from anygpt.nn.content_units import train_content_units
    from anygpt.nn.weights import read_safetensors

    cache = Path(a.out) / "content-units.safetensors"
    if not cache.is_file():
        from safetensors.torch import save_file

        clips, phonemes = features()
        units = train_content_units(clips, codec.cfg.content_units_config(), phonemes=phonemes)
        with atomic_path(cache) as tmp:  # float16, as the export keeps them: training sees the units encode gives
            save_file({k: v.half().contiguous() for k, v in units.state_dict().items()}, str(tmp))
    codec.units.load_state_dict({k: v.float() for k, v in read_safetensors(cache).items()})


def run_config(a: argparse.Namespace, cfg: SpeechCodecConfig, n_speakers: int) -> dict:
    """What defines the run (a resume with other values is refused)."""
    return {"codec": cfg.to_dict(), "corpus": None if a.synthetic else str(a.corpus), "n_speakers": n_speakers,
            "batch": a.batch, "crop_frames": a.crop_frames, "lr": a.lr, "warmup": a.warmup, "steps": a.steps,
            "seed": a.seed, "bf16": a.bf16, "distill_weight": a.distill_weight,
            "adversary_weight": a.adversary_weight, "init": None if a.init is None else str(a.init),
            "unit_sentences": a.unit_sentences if cfg.layer1 == "units" else None,
            **({"unit_voices": a.unit_voices} if cfg.layer1 == "units" and a.unit_voices is not None else {})}


def crop_units(units: list[torch.Tensor], idx: list[int], starts: list[int], frames: int) -> torch.Tensor:
    """The layer-1 units of the crops: LongTensor [B, frames] (0 past a clip's end, where the
    crop is zero-padded)."""
    out = torch.zeros(len(idx), frames, dtype=torch.long)
    for row, (i, st) in enumerate(zip(idx, starts)):
        seg = units[i][st: st + frames]
        out[row, : len(seg)] = seg
    return out


def fit(run: TrainingRun, codec: CompactSpeechCodec, adversary: nn.Module, a: argparse.Namespace) -> None:
    cfg = codec.cfg
    wavs, spk, targets, units = load_data(a, codec)
    mel_loss = MultiScaleMelLoss(cfg.sample_rate)
    mel_fb = mel_filterbank(cfg.sample_rate, cfg.n_fft, 80)
    spk_t = torch.tensor(spk)
    weights = np.array([len(w) for w in wavs], np.float64)
    weights /= weights.sum()
    for step in run.steps():
        wav, idx, starts = draw_crops(wavs, a.batch, a.crop_frames, cfg.frame_hop, a.seed, step, weights)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=a.bf16):
            out = codec(wav, crop_units(units, idx, starts, a.crop_frames) if units is not None else None)
            if out.wav is None:  # Griffin-Lim codec: regress the spectrum itself
                mag, mel = spectrum_losses(out.logmag, codec.spectrogram(wav), mel_fb)
                loss = mag + mel + out.vq_loss
                terms = {"mel": mel.item(), "logmag": mag.item(), "commit": out.commit_loss.item()}
            else:
                mel, sc = mel_loss(out.wav.float(), wav)
                wave = (out.wav.float() - wav).abs().mean()
                loss = mel + sc + wave + out.vq_loss
                terms = {"mel": mel.item(), "sc": sc.item(), "wave": wave.item(), "commit": out.commit_loss.item()}
            if targets is not None and a.distill_weight > 0:
                distill = distill_loss(out.semantic, targets, idx, starts, a.crop_frames)
                loss = loss + a.distill_weight * distill
                terms["distill"] = distill.item()
            if a.adversary_weight > 0 and units is None:  # content units are voice-free by construction
                feats = grad_reverse(out.q1.transpose(1, 2).float(), a.adversary_weight)
                logits = adversary(feats).mean(1)
                adv = F.cross_entropy(logits, spk_t[idx])
                loss = loss + adv
                terms["spk_ce"] = adv.item()
                terms["spk_acc"] = (logits.argmax(-1) == spk_t[idx]).float().mean().item()
        run.optimise(loss)
        run.record(loss=loss.item(), **terms, ppl=[round(float(p), 1) for p in out.perplexities])


def main(argv: list[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    set_threads(a.threads)
    cfg = codec_config(a)
    n_speakers = speakers(a)
    torch.manual_seed(a.seed)
    codec = CompactSpeechCodec(cfg)
    if a.init is not None:
        from anygpt.nn.weights import TRAINING_ONLY

        fresh = [k for k in init_from(codec, a.init) if not k.endswith(TRAINING_ONLY)]
        print(f"--init {a.init}: new {', '.join(sorted({k.split('.')[0] for k in fresh})) or 'none'}", flush=True)
    adversary = nn.Sequential(nn.Linear(cfg.latent_dim, 128), nn.GELU(), nn.Linear(128, n_speakers))
    opt = torch.optim.AdamW(list(codec.parameters()) + list(adversary.parameters()), lr=a.lr,
                            betas=(0.8, 0.99), weight_decay=1e-4)
    options = RunOptions.from_args(a)
    run = TrainingRun(options, modules={"model": codec, "adversary": adversary}, optimizer=opt,
                      config=run_config(a, cfg, n_speakers), lr=lambda s: lr_at(s, a.steps, a.lr, a.warmup),
                      desc="speech tokenizer")
    command = command_line("speech-tokenizer", argv)
    train_or_export(run, options, lambda: fit(run, codec, adversary, a), lambda folder: save_codec(
        codec.eval(), folder, {"trained_steps": run.step, "wall_seconds": round(run.elapsed),
                               "data": None if a.synthetic else str(a.corpus), "command": command}))
    return 0


if __name__ == "__main__":  # `anygpt train NAME` is the command; this runs the module alone
    raise SystemExit(main(sys.argv[1:]))
