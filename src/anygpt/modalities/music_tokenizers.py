"""Music tokenizers: the released Encodec 32 kHz (from a local folder) and our compact codec.

Both write 4 codebooks per frame, flattened frame by frame by anygpt.layout (codebook l of a
frame shifted by l * codebook_size). Constants sit beside their loaders (the moshi habit).

- "released": facebook/encodec_32khz through transformers' EncodecModel, loaded from a local
  folder (config.json + model.safetensors or pytorch_model.bin); never downloads.
  32 kHz mono, hop 640 -> 50 Hz, 4 codebooks x 2048 (2.2 kbps). The release encodes 5 s
  segments; longer input is cut into 5 s windows (with overlapping context, see
  `chunked_encode`).
- "compact": our CompactMusicCodec (anygpt.nn.compact_music_codec), weights shipped in
  anygpt/assets/music-codec-tiny (`load_compact_music_tokenizer`). 16 kHz mono,
  50 Hz, 4 codebooks x 1024 (2 kbps): the release's 200 LM tokens per second of music with a 4096-token music vocabulary instead of
  8192 (a 25 Hz x 512 variant halves the tokens but reads note F1 0.62 instead of 0.70 on
  held-out pieces; see anygpt.nn.compact_music_codec).

Bad input, for both: stereo (or any C) is mixed down, other sample rates are resampled
(`load`), input of any length is padded to whole frames and cut into windows, silence
encodes and decodes to (near) silence, an unreadable file raises MediaError naming it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from anygpt.asset_paths import MUSIC_CODEC_RETRAIN, MUSIC_CODEC_TINY_DIR, WEIGHTS, shipped
from anygpt.errors import CheckpointError
from anygpt.modalities.audio import AudioTokenizerBase, chunked_decode, chunked_encode, to_mono
from anygpt.modalities.specs import AUDIO_EXTENSIONS, RELEASED_MUSIC_SPEC
from anygpt.token_spec import TokenSpec

# ---------------------------------------------------------------- released: Encodec 32 kHz
RELEASED_REPO = "facebook/encodec_32khz"
RELEASED_SAMPLE_RATE = 32000
RELEASED_HOP = 640  # 8 * 5 * 4 * 4
RELEASED_FRAME_RATE = 50.0
RELEASED_NUM_CODEBOOKS = 4
RELEASED_CODEBOOK_SIZE = 2048
RELEASED_BANDWIDTH = 2.2  # kbps: 50 Hz * 11 bits * 4 codebooks
RELEASED_SEGMENT_SECONDS = 5.0  # AnyGPT encodes 5 s clips (250 frames, 1000 tokens)
# The public config.json of facebook/encodec_32khz (transformers EncodecConfig kwargs).
RELEASED_CONFIG: dict[str, Any] = dict(
    target_bandwidths=[2.2], sampling_rate=32000, audio_channels=1, normalize=False,
    chunk_length_s=None, overlap=None, hidden_size=128, num_filters=64, num_residual_layers=1,
    upsampling_ratios=[8, 5, 4, 4], norm_type="weight_norm", kernel_size=7, last_kernel_size=7,
    residual_kernel_size=3, dilation_growth_rate=2, use_causal_conv=False, pad_mode="reflect",
    compress=2, num_lstm_layers=2, trim_right_ratio=1.0, codebook_size=2048, codebook_dim=128,
    use_conv_shortcut=False,
)

# ---------------------------------------------------------------- compact: ours
COMPACT_WINDOW_SECONDS = 30.0  # longest piece encoded in one call; longer input is chunked
CONTEXT_SECONDS = 1.0  # audio on each side of a window that is encoded but not kept


def released_encodec_config():
    """transformers.EncodecConfig of facebook/encodec_32khz (no download)."""
    from transformers import EncodecConfig

    return EncodecConfig(**RELEASED_CONFIG)


def _check_codes(codes: torch.Tensor, k: int, size: int) -> torch.Tensor:
    codes = torch.as_tensor(codes, dtype=torch.long)
    if codes.dim() == 2:
        codes = codes.unsqueeze(0)
    if codes.dim() != 3 or codes.shape[1] != k:
        raise ValueError(f"music codes must be [B, {k}, T], got {tuple(codes.shape)}")
    if codes.numel() and (codes.min() < 0 or codes.max() >= size):
        raise ValueError(f"music codes must be in 0..{size - 1}")
    return codes


class _MusicTokenizerBase(AudioTokenizerBase):
    name = "music"
    lm_codebooks = (0, 1, 2, 3)
    file_extensions = AUDIO_EXTENSIONS

    @property
    def token_spec(self) -> TokenSpec:
        return TokenSpec(
            name="music", prefix=RELEASED_MUSIC_SPEC.prefix, start=RELEASED_MUSIC_SPEC.start,
            end=RELEASED_MUSIC_SPEC.end, codebook_size=self.codebook_size,
            num_codebooks=len(self.lm_codebooks),
        )


class ReleasedMusicTokenizer(_MusicTokenizerBase):
    """facebook/encodec_32khz via transformers' EncodecModel. model: an EncodecModel."""

    sample_rate = RELEASED_SAMPLE_RATE
    frame_rate = RELEASED_FRAME_RATE
    num_codebooks = RELEASED_NUM_CODEBOOKS
    codebook_size = RELEASED_CODEBOOK_SIZE
    hop = RELEASED_HOP

    def __init__(self, model, *, context_seconds: float = 0.5):
        cfg = model.config
        got = (cfg.sampling_rate, cfg.codebook_size, cfg.audio_channels, int(cfg.hop_length))
        want = (RELEASED_SAMPLE_RATE, RELEASED_CODEBOOK_SIZE, 1, RELEASED_HOP)
        if got != want or cfg.num_quantizers < RELEASED_NUM_CODEBOOKS:
            raise CheckpointError(
                f"Encodec model is not {RELEASED_REPO}: (sample rate, codebook size, channels, hop) = "
                f"{got}, {cfg.num_quantizers} codebooks; expected {want}, 4 codebooks"
            )
        self.model = model.eval()
        self.window = int(RELEASED_SEGMENT_SECONDS * RELEASED_SAMPLE_RATE)
        self.context = int(context_seconds * RELEASED_FRAME_RATE) * RELEASED_HOP

    def _encode_window(self, wav: torch.Tensor) -> torch.Tensor:
        out = self.model.encode(wav, bandwidth=RELEASED_BANDWIDTH)
        return out.audio_codes[0][:, :RELEASED_NUM_CODEBOOKS]  # [chunks=1, B, K, T] -> [B, K, T]

    def encode(self, media: torch.Tensor) -> torch.Tensor:
        """media FloatTensor [B, C, S] at 32 kHz -> codes LongTensor [B, 4, ceil(S / 640)]."""
        wav = to_mono(media)
        with torch.inference_mode():
            return chunked_encode(self._encode_window, wav, self.hop, self.window, self.context).long()

    def decode(self, codes: torch.Tensor, **context: Any) -> torch.Tensor:
        """codes LongTensor [B, 4, T] -> FloatTensor [B, 1, T * 640] at 32 kHz."""
        codes = _check_codes(codes, RELEASED_NUM_CODEBOOKS, RELEASED_CODEBOOK_SIZE)

        def dec(c):
            return self.model.decode(c[None], [None]).audio_values[..., : c.shape[-1] * self.hop]

        with torch.inference_mode():
            win = int(RELEASED_SEGMENT_SECONDS * RELEASED_FRAME_RATE)
            return chunked_decode(dec, codes, self.hop, win, self.context // self.hop)


def load_released_music_tokenizer(path: str | Path | None = None, *, device: str = "cpu",
                                  **_: Any) -> ReleasedMusicTokenizer:
    """A local copy of facebook/encodec_32khz (a folder with config.json and model.safetensors or
    pytorch_model.bin) -> ReleasedMusicTokenizer. Never downloads."""
    if path is None:
        raise CheckpointError(
            f"music tokenizer 'released' needs path=<a local folder with {RELEASED_REPO}>: anygpt never "
            f"downloads; fetch it once with `huggingface-cli download {RELEASED_REPO} --local-dir DIR`"
        )
    folder = Path(path)
    if not (folder / "config.json").is_file():
        raise CheckpointError(f"{folder}: no config.json; expected a local copy of {RELEASED_REPO}")
    if not any((folder / n).is_file() for n in ("model.safetensors", "pytorch_model.bin")):
        raise CheckpointError(f"{folder}: no model.safetensors or pytorch_model.bin ({RELEASED_REPO} weights)")
    from transformers import EncodecModel

    model = EncodecModel.from_pretrained(str(folder), local_files_only=True).to(device)
    return ReleasedMusicTokenizer(model)


# ---------------------------------------------------------------- compact (ours)
class CompactMusicTokenizer(_MusicTokenizerBase):
    """Our CompactMusicCodec (shipped: 16 kHz mono, 50 Hz, 4 codebooks x 1024)."""

    def __init__(self, codec):
        cfg = codec.cfg
        self.codec = codec.eval()
        self.sample_rate = cfg.sample_rate
        self.frame_rate = cfg.frame_rate
        self.num_codebooks = cfg.num_codebooks
        self.codebook_size = cfg.codebook_size
        self.lm_codebooks = tuple(range(cfg.num_codebooks))
        self.hop = cfg.frame_hop
        self.window = int(COMPACT_WINDOW_SECONDS * cfg.sample_rate) // self.hop * self.hop
        self.context = int(CONTEXT_SECONDS * cfg.frame_rate) * self.hop

    def encode(self, media: torch.Tensor) -> torch.Tensor:
        """media FloatTensor [B, C, S] at 16 kHz -> codes LongTensor [B, 4, ceil(S / hop)]."""
        wav = to_mono(media)
        with torch.inference_mode():
            return chunked_encode(self.codec.encode, wav, self.hop, self.window, self.context)

    def decode(self, codes: torch.Tensor, **context: Any) -> torch.Tensor:
        """codes LongTensor [B, 4, T] -> FloatTensor [B, 1, T * hop] at 16 kHz, in [-1, 1]."""
        codes = _check_codes(codes, self.num_codebooks, self.codebook_size)
        with torch.inference_mode():
            wav = chunked_decode(self.codec.decode, codes, self.hop, self.window // self.hop,
                                 self.context // self.hop)
        return wav.clamp(-1.0, 1.0)


def load_compact_music_folder(folder: str | Path, *, device: str = "cpu") -> CompactMusicTokenizer:
    """A folder with config.json + model.safetensors of our codec -> tokenizer (the shipped one:
    load_compact_music_tokenizer)."""
    from anygpt.nn.compact_music_codec import CompactMusicCodec, MusicCodecConfig
    from anygpt.nn.weights import load_inference_state, read_meta

    folder = Path(folder)
    cfg_path, w_path = folder / "config.json", folder / "model.safetensors"
    if not cfg_path.is_file() or not w_path.is_file():
        raise CheckpointError(
            f"{folder}: expected config.json and model.safetensors of the compact music codec; "
            f"train and export them with `{MUSIC_CODEC_RETRAIN}`"
        )
    meta = read_meta(folder)
    try:
        cfg = MusicCodecConfig.from_dict(meta.get("codec", meta))
        codec = CompactMusicCodec(cfg)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{cfg_path}: not a config of the compact music codec ({e})") from None
    return CompactMusicTokenizer(load_inference_state(codec, folder).to(device))


def load_compact_music_tokenizer(path: str | Path | None = None, *, device: str = "cpu") -> CompactMusicTokenizer:
    """Tokenizer "compact": CompactMusicTokenizer from `path`, default the shipped weights
    (anygpt/assets/music-codec-tiny)."""
    folder = Path(path) if path is not None else shipped(MUSIC_CODEC_TINY_DIR, WEIGHTS, MUSIC_CODEC_RETRAIN)
    return load_compact_music_folder(folder, device=device)
