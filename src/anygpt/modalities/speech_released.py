"""Speech tokenizer "released": AnyGPT's SpeechTokenizer and SoundStorm, from a local folder.

The folder is a local copy of fnlp/AnyGPT-speech-modules (never downloaded here):
  speechtokenizer/config.json   SpeechTokenizer config (speechtokenizer_hubert_avg)
  speechtokenizer/ckpt.dev      its weights: a bare torch state dict
  soundstorm/speechtokenizer_soundstorm_mls.pt   the acoustic model (see anygpt.nn.soundstorm)

SpeechTokenizer: 16 kHz mono, SEANet encoder/decoder (strides 8,5,4,2 = hop 320 -> 50 Hz),
dimension 1024, BiLSTM, RVQ of 8 layers x 1024 codes. Layer 1 (distilled from HuBERT) carries
the content and is all the LM reads and writes; layers 2-8 carry voice and detail. The package
returns codes as (n_q, B, T); this tokenizer uses [B, K, T] like the others
(`to_released_layout` / `from_released_layout` convert).
SoundStorm fills layers 2-8 from layer 1 and the codes of a voice prompt; without a prompt it
generates an arbitrary voice (the release's unprompted mode). The release decodes the first
acoustic layer in 3 MaskGIT steps (AnyGPT config/generate_config.json "vc_steps") and the
others greedily in one: `RELEASED_STEPS`.

The model code is the PyPI package `speechtokenizer` (the component's own code), pinned to
0.1.2 as AnyGPT's requirements.txt does. What it really imports to build, encode and decode:
torch, numpy and einops. Its metadata also lists torchaudio, which nothing of the model uses
(0.1.2 has no trainer), so scripts/setup.sh installs it with --no-deps and einops comes from
the `release` extra. Versions 1.x add a trainer that their package __init__ imports (beartype,
accelerate, lion-pytorch, matplotlib, tensorboard, torchaudio); their model module is the same
file and `speechtokenizer_class` still gets it when that trainer import fails.

Bad input: stereo is mixed down, other sample rates are resampled (`load`, `prepare`), input
of any length is padded to whole frames and cut into windows, empty or NaN audio and
unreadable files raise MediaError, missing or mismatched weights raise CheckpointError naming
the file.
"""

from __future__ import annotations

import json
import sys
import warnings
from functools import partial
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from anygpt.errors import CheckpointError
from anygpt.modalities.audio import chunked_decode, chunked_encode, to_mono
from anygpt.modalities.specs import AUDIO_EXTENSIONS, RELEASED_SPEECH_SPEC
from anygpt.modalities.speech_stage2 import TwoStageSpeechTokenizer
from anygpt.token_spec import TokenSpec

RELEASED_REPO = "fnlp/AnyGPT-speech-modules"
RELEASED_SAMPLE_RATE = 16000
RELEASED_HOP = 320  # 8 * 5 * 4 * 2
RELEASED_FRAME_RATE = 50.0
RELEASED_NUM_CODEBOOKS = 8
RELEASED_CODEBOOK_SIZE = 1024
# What SpeechTokenizer(config) reads from speechtokenizer/config.json; the values of
# speechtokenizer_hubert_avg (ZhangXInFD/SpeechTokenizer config/spt_base_cfg.json; the file also
# holds training settings, which the model ignores).
RELEASED_CONFIG: dict[str, Any] = dict(
    n_filters=64, strides=[8, 5, 4, 2], dimension=1024, semantic_dimension=768, bidirectional=True,
    dilation_base=2, residual_kernel_size=3, n_residual_layers=1, lstm_layers=2, activation="ELU",
    codebook_size=1024, n_q=8, sample_rate=16000,
)
TOKENIZER_DIR = "speechtokenizer"
CONFIG_FILE, CKPT_FILE = "config.json", "ckpt.dev"
SOUNDSTORM_FILE = "soundstorm/speechtokenizer_soundstorm_mls.pt"
RELEASED_STEPS = (3, 1)  # MaskGIT steps for acoustic layer 2, then 1 (greedy) for layers 3-8
WINDOW_SECONDS = 30.0  # longest input encoded in one call; longer input is chunked
CONTEXT_SECONDS = 1.0
GET_IT = f"huggingface-cli download {RELEASED_REPO} --local-dir DIR"
LAYOUT = f"{TOKENIZER_DIR}/{CONFIG_FILE}, {TOKENIZER_DIR}/{CKPT_FILE} and {SOUNDSTORM_FILE}"


def to_released_layout(codes: torch.Tensor) -> torch.Tensor:
    """codes [B, K, T] -> the package's (and the release's) layout [K, B, T]."""
    return codes.transpose(0, 1)


def from_released_layout(codes: torch.Tensor) -> torch.Tensor:
    """The package's codes [K, B, T] -> [B, K, T]."""
    return codes.transpose(0, 1)


def speechtokenizer_class() -> type:
    """The `speechtokenizer` package's SpeechTokenizer nn.Module, without its trainer's imports."""
    try:
        with warnings.catch_warnings():  # its SEANet module uses torch.jit.script (deprecated)
            warnings.simplefilter("ignore", DeprecationWarning)
            from speechtokenizer.model import SpeechTokenizer
        return SpeechTokenizer
    except ImportError as e:
        # 1.x: model.py loaded, then the package __init__ failed importing its trainer's deps
        module = sys.modules.get("speechtokenizer.model")
        if module is not None:
            return module.SpeechTokenizer
        raise CheckpointError(
            f"the released speech tokenizer needs the `speechtokenizer` package ({e}); install it with "
            "`pip install --no-deps speechtokenizer==0.1.2 einops` (scripts/setup.sh does)"
        ) from e


def build_speechtokenizer(config: dict[str, Any] | None = None) -> torch.nn.Module:
    """A randomly initialised SpeechTokenizer of `config` (default: RELEASED_CONFIG)."""
    with warnings.catch_warnings():  # the package uses torch.nn.utils.weight_norm (deprecated)
        warnings.simplefilter("ignore", FutureWarning)
        return speechtokenizer_class()(dict(config or RELEASED_CONFIG))


class ReleasedSpeechTokenizer(TwoStageSpeechTokenizer):
    """model: the package's SpeechTokenizer; acoustic: a SoundStorm, a function that loads one
    when first needed, or None (then layer-1-only codes decode without voice layers)."""

    name = "speech"
    sample_rate = RELEASED_SAMPLE_RATE
    frame_rate = RELEASED_FRAME_RATE
    num_codebooks = RELEASED_NUM_CODEBOOKS
    codebook_size = RELEASED_CODEBOOK_SIZE
    codebook_sizes = (RELEASED_CODEBOOK_SIZE,) * RELEASED_NUM_CODEBOOKS
    acoustic_hint = (f"the released SoundStorm ({SOUNDSTORM_FILE}); load the tokenizer with "
                     "load_released_speech_modules(folder)")
    hop = RELEASED_HOP
    lm_codebooks = (0,)
    file_extensions = AUDIO_EXTENSIONS

    def __init__(self, model, acoustic: torch.nn.Module | Callable[[], torch.nn.Module] | None = None, *,
                 steps: Sequence[int] = RELEASED_STEPS):
        got = (model.sample_rate, model.n_q, int(model.downsample_rate))
        want = (RELEASED_SAMPLE_RATE, RELEASED_NUM_CODEBOOKS, RELEASED_HOP)
        if got != want:
            raise CheckpointError(f"SpeechTokenizer (sample rate, n_q, hop) = {got}; the release has {want}")
        self.model = model.eval()
        self._acoustic = acoustic
        self.steps = tuple(steps)
        self.window = int(WINDOW_SECONDS * RELEASED_SAMPLE_RATE)
        self.context = int(CONTEXT_SECONDS * RELEASED_FRAME_RATE) * RELEASED_HOP

    @property
    def token_spec(self) -> TokenSpec:
        return RELEASED_SPEECH_SPEC

    @property
    def acoustic(self) -> torch.nn.Module | None:
        """The SoundStorm acoustic model (loaded on first use), or None."""
        if callable(self._acoustic) and not isinstance(self._acoustic, torch.nn.Module):
            self._acoustic = self._acoustic()
        return self._acoustic

    def _encode_window(self, wav: torch.Tensor) -> torch.Tensor:
        return from_released_layout(self.model.encode(wav))

    def encode(self, media: torch.Tensor) -> torch.Tensor:
        """media FloatTensor [B, C, S] at 16 kHz -> codes LongTensor [B, 8, ceil(S / 320)]."""
        wav = to_mono(media)
        with torch.inference_mode():
            return chunked_encode(self._encode_window, wav, self.hop, self.window, self.context).long()

    def encode_released(self, media: torch.Tensor) -> torch.Tensor:
        """media FloatTensor [B, C, S] at 16 kHz -> codes LongTensor [8, B, T] (the release's layout)."""
        return to_released_layout(self.encode(media))

    def decode_all_layers(self, codes: torch.Tensor) -> torch.Tensor:
        """codes LongTensor [B, K', T] -> FloatTensor [B, 1, T * 320] at 16 kHz (the RVQ sum of the
        K' layers given)."""
        return chunked_decode(lambda c: self.model.decode(to_released_layout(c)), codes, self.hop,
                              self.window // self.hop, self.context // self.hop)


def _tokenizer_dir(path: str | Path | None) -> Path:
    """The modules folder or its speechtokenizer/ folder -> the speechtokenizer/ folder."""
    if path is None:
        raise CheckpointError(f"speech tokenizer 'released' needs path=<a local copy of {RELEASED_REPO}>: "
                              f"anygpt never downloads; fetch it once with `{GET_IT}`")
    folder = Path(path)
    if not folder.is_dir():
        raise CheckpointError(f"{folder}: no such folder; expected a local copy of {RELEASED_REPO} ({GET_IT})")
    return folder / TOKENIZER_DIR if (folder / TOKENIZER_DIR).is_dir() else folder


def _require(file: Path) -> Path:
    if not file.is_file():
        raise CheckpointError(f"{file}: missing; a local copy of {RELEASED_REPO} holds {LAYOUT} ({GET_IT})")
    return file


def load_speechtokenizer(folder: Path) -> torch.nn.Module:
    """speechtokenizer/ folder (config.json + ckpt.dev) -> the package's SpeechTokenizer, loaded
    strictly from a state dict read with weights_only=True."""
    cfg_path, ckpt = _require(folder / CONFIG_FILE), _require(folder / CKPT_FILE)
    try:
        cfg = json.loads(cfg_path.read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{cfg_path}: not a JSON SpeechTokenizer config ({e})") from e
    try:
        state = torch.load(str(ckpt), map_location="cpu", weights_only=True)
    except Exception as e:  # pickle errors of every kind: the message names the file
        raise CheckpointError(f"{ckpt}: not a torch state dict that loads with weights_only=True ({e})") from e
    model = build_speechtokenizer(cfg)
    try:
        model.load_state_dict(state, strict=True)
    except (RuntimeError, TypeError, AttributeError) as e:
        raise CheckpointError(f"{ckpt}: weights do not fit {cfg_path}: {e}") from e
    return model


def _load_soundstorm(file: Path, depth: int | None, device: str) -> torch.nn.Module:
    from anygpt.nn.soundstorm import load_released_soundstorm

    return load_released_soundstorm(file, depth=depth).to(device)


def load_released_speech_tokenizer(path: str | Path | None = None, *, device: str = "cpu",
                                   soundstorm: str | Path | bool | None = None,
                                   soundstorm_depth: int | None = None, **_: Any) -> ReleasedSpeechTokenizer:
    """A local copy of fnlp/AnyGPT-speech-modules (the folder, or its speechtokenizer/ folder)
    -> ReleasedSpeechTokenizer. Never downloads.

    soundstorm: the SoundStorm checkpoint file; None: soundstorm/speechtokenizer_soundstorm_mls.pt
    of the modules folder if it is there; True: that file, which must be there; False: none. It
    is loaded when first needed (decoding layer-1 codes), so encoding never pays for it.
    soundstorm_depth: see load_released_soundstorm."""
    folder = _tokenizer_dir(path)
    model = load_speechtokenizer(folder).to(device)
    if soundstorm is None or soundstorm is True:
        default = folder.parent / SOUNDSTORM_FILE
        soundstorm = default if soundstorm or default.is_file() else False
    acoustic = partial(_load_soundstorm, _require(Path(soundstorm)), soundstorm_depth, device) if soundstorm else None
    return ReleasedSpeechTokenizer(model, acoustic)


def load_released_speech_modules(path: str | Path, *, device: str = "cpu",
                                 soundstorm_depth: int | None = None) -> ReleasedSpeechTokenizer:
    """A local copy of fnlp/AnyGPT-speech-modules -> ReleasedSpeechTokenizer with its SoundStorm
    loaded now (both files must be there), ready to decode layer-1 codes in a prompt's voice."""
    folder = _tokenizer_dir(path)
    soundstorm = _load_soundstorm(_require(folder.parent / SOUNDSTORM_FILE), soundstorm_depth, device)
    return ReleasedSpeechTokenizer(load_speechtokenizer(folder).to(device), soundstorm)
