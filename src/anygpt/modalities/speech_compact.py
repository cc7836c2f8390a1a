"""Speech tokenizer "compact": our compact speech codec plus our SoundStorm acoustic model.

- codec (anygpt.nn.speech_codec, weights in anygpt/assets/speech-tokenizer-tiny): 16 kHz mono,
  25 code frames per second, RVQ layer 1 (distilled from Whisper tiny.en's encoder: content)
  plus acoustic layers (voice and detail); the LM reads and writes layer 1 only.
- acoustic model (anygpt.nn.soundstorm, weights in anygpt/assets/soundstorm-tiny): fills the
  acoustic layers from layer 1 and the codes of a voice prompt (~3 s of any speaker), so the
  decoded speech takes the prompt's voice. Without a prompt, the shipped default prompt (3 s
  of one training voice) is used.

Bad input: stereo is mixed down, other sample rates are resampled (`load`, `prepare`), input
of any length is padded to whole frames and cut into windows, an unreadable file raises
MediaError naming it. The shipped weights are loaded by `load_compact_speech_tokenizer` (tokenizer
"compact" in the registry), `load_units_speech_tokenizer` (tokenizer "units": layer 1 from
voice-free content units, anygpt.nn.content_units; its own SoundStorm) and
`load_phones_speech_tokenizer` (tokenizer "phones": layer 1 from 55 phone units; its own
SoundStorm).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch

from anygpt.asset_paths import (SOUNDSTORM_PHONES_DIR, SOUNDSTORM_PHONES_RETRAIN, SOUNDSTORM_RETRAIN,
                                SOUNDSTORM_TINY_DIR, SOUNDSTORM_UNITS_DIR, SOUNDSTORM_UNITS_RETRAIN,
                                SPEECH_TOKENIZER_PHONES_DIR, SPEECH_TOKENIZER_PHONES_RETRAIN,
                                SPEECH_TOKENIZER_RETRAIN, SPEECH_TOKENIZER_TINY_DIR, SPEECH_TOKENIZER_UNITS_DIR,
                                SPEECH_TOKENIZER_UNITS_RETRAIN, WEIGHTS, shipped)
from anygpt.errors import CheckpointError
from anygpt.modalities.audio import chunked_decode, chunked_encode, to_mono
from anygpt.modalities.specs import AUDIO_EXTENSIONS, RELEASED_SPEECH_SPEC
from anygpt.modalities.speech_stage2 import TwoStageSpeechTokenizer
from anygpt.token_spec import TokenSpec

WINDOW_SECONDS = 30.0  # longest input encoded in one call; longer input is chunked
CONTEXT_SECONDS = 1.0


class CompactSpeechTokenizer(TwoStageSpeechTokenizer):
    """codec: CompactSpeechCodec; acoustic: SoundStorm or None (then layer-1 codes decode without
    the voice layers); default_prompt: LongTensor [K, P] codes of the default voice; steps:
    MaskGIT iterations for acoustic layer 2, then the others (16 for layer 2: cloning WER 1.29
    against 1.39-1.44 with 8 on the 48 evaluation clips, see the asset README)."""

    name = "speech"
    lm_codebooks = (0,)
    file_extensions = AUDIO_EXTENSIONS
    acoustic_hint = "the SoundStorm acoustic model (anygpt train soundstorm ... --export DIR)"

    def __init__(self, codec, acoustic=None, default_prompt: torch.Tensor | None = None,
                 steps: Sequence[int] = (16, 1)):
        cfg = codec.cfg
        self.codec = codec.eval()
        self.acoustic = acoustic.eval() if acoustic is not None else None
        self.default_prompt = default_prompt
        self.steps = tuple(steps)
        self.sample_rate = cfg.sample_rate
        self.frame_rate = cfg.frame_rate
        self.num_codebooks = cfg.num_codebooks
        self.codebook_size = cfg.codebook_size
        self.codebook_sizes = (cfg.semantic_codebook_size,) + (cfg.codebook_size,) * (cfg.num_codebooks - 1)
        self.hop = cfg.frame_hop
        self.window = int(WINDOW_SECONDS * cfg.sample_rate) // self.hop * self.hop
        self.context = int(CONTEXT_SECONDS * cfg.frame_rate) * self.hop

    @property
    def token_spec(self) -> TokenSpec:
        return TokenSpec(name="speech", prefix=RELEASED_SPEECH_SPEC.prefix, start=RELEASED_SPEECH_SPEC.start,
                         end=RELEASED_SPEECH_SPEC.end, codebook_size=self.codec.cfg.semantic_codebook_size,
                         num_codebooks=1)

    def encode(self, media: torch.Tensor) -> torch.Tensor:
        """media FloatTensor [B, C, S] at 16 kHz -> codes LongTensor [B, K, ceil(S / hop)]."""
        with torch.inference_mode():
            return chunked_encode(self.codec.encode, to_mono(media), self.hop, self.window, self.context)

    def encode_lm(self, media: torch.Tensor) -> torch.Tensor:
        """media FloatTensor [B, C, S] at 16 kHz -> layer-1 codes LongTensor [B, 1, ceil(S / hop)]
        (a "units" codec computes them without its own encoder: about 1.6x faster)."""
        with torch.inference_mode():
            return chunked_encode(lambda wav: self.codec.encode(wav, n_q=1), to_mono(media), self.hop, self.window,
                                  self.context)

    def lm_code_vectors(self) -> torch.Tensor:
        """[semantic_codebook_size, d]: layer-1 codes' vectors: a "units" codec's cross-voice
        centroids or, for phone units, its phone head's rows (content; d 64), else the codec's
        layer-1 codebook (d latent_dim)."""
        with torch.inference_mode():
            if self.codec.cfg.layer1 == "units":
                return self.codec.units.code_vectors().float().clone()
            codes = torch.arange(self.codec.cfg.semantic_codebook_size)[None]
            return self.codec.layer1_vectors(codes)[0].t().float().clone()

    def decode_all_layers(self, codes: torch.Tensor) -> torch.Tensor:
        """codes LongTensor [B, K', T] -> FloatTensor [B, 1, T * hop] (missing layers count as 0)."""
        return chunked_decode(self.codec.decode, codes, self.hop, self.window // self.hop, self.context // self.hop)


def load_compact_speech_folders(codec_folder: str | Path, acoustic_folder: str | Path | None = None, *,
                                device: str = "cpu") -> CompactSpeechTokenizer:
    """The codec's folder and the SoundStorm's folder (None, or one without model.safetensors:
    a tokenizer that decodes only all-layer codes) -> tokenizer. The shipped ones:
    load_compact_speech_tokenizer below."""
    from anygpt.nn.soundstorm import load_soundstorm
    from anygpt.nn.speech_codec import load_codec
    from anygpt.nn.weights import read_safetensors

    folder = Path(codec_folder)
    if not (folder / "config.json").is_file() or not (folder / "model.safetensors").is_file():
        raise CheckpointError(f"{folder}: expected config.json and model.safetensors of the compact speech "
                              f"codec; train and export them with `{SPEECH_TOKENIZER_RETRAIN}`")
    codec = load_codec(folder).to(device)
    acoustic, prompt = None, None
    if acoustic_folder is not None and (Path(acoustic_folder) / "model.safetensors").is_file():
        ac_folder = Path(acoustic_folder)
        acoustic = load_soundstorm(ac_folder).to(device)
        if (ac_folder / "prompt.safetensors").is_file():
            tensors = read_safetensors(ac_folder / "prompt.safetensors")
            if "codes" not in tensors:
                raise CheckpointError(f"{ac_folder / 'prompt.safetensors'}: has no 'codes' tensor")
            prompt = tensors["codes"].long()
    return CompactSpeechTokenizer(codec, acoustic, prompt)


def load_compact_speech_tokenizer(path: str | Path | None = None, *, acoustic_path: str | Path | None = None,
                                  device: str = "cpu") -> CompactSpeechTokenizer:
    """Tokenizer "compact". path: codec folder (default: the shipped speech-tokenizer-tiny);
    acoustic_path: SoundStorm folder (default: the shipped soundstorm-tiny, with its voice prompt;
    a given folder without weights is an error)."""
    return _load_shipped_pair(path, acoustic_path, device, (SPEECH_TOKENIZER_TINY_DIR, SPEECH_TOKENIZER_RETRAIN),
                              (SOUNDSTORM_TINY_DIR, SOUNDSTORM_RETRAIN))


def load_units_speech_tokenizer(path: str | Path | None = None, *, acoustic_path: str | Path | None = None,
                                device: str = "cpu") -> CompactSpeechTokenizer:
    """Tokenizer "units": the compact codec whose layer 1 is voice-free content units. path: codec
    folder (default: the shipped speech-tokenizer-units); acoustic_path: SoundStorm folder
    (default: the shipped soundstorm-units, with its voice prompt)."""
    return _load_shipped_pair(path, acoustic_path, device, (SPEECH_TOKENIZER_UNITS_DIR, SPEECH_TOKENIZER_UNITS_RETRAIN),
                              (SOUNDSTORM_UNITS_DIR, SOUNDSTORM_UNITS_RETRAIN))


def load_phones_speech_tokenizer(path: str | Path | None = None, *, acoustic_path: str | Path | None = None,
                                 device: str = "cpu") -> CompactSpeechTokenizer:
    """Tokenizer "phones": the "units" codec with phone units (one per phone of content_units.PHONES).
    path / acoustic_path: as load_units_speech_tokenizer (default: the shipped speech-tokenizer-phones
    and soundstorm-phones)."""
    return _load_shipped_pair(path, acoustic_path, device, (SPEECH_TOKENIZER_PHONES_DIR, SPEECH_TOKENIZER_PHONES_RETRAIN),
                              (SOUNDSTORM_PHONES_DIR, SOUNDSTORM_PHONES_RETRAIN))


def _load_shipped_pair(path, acoustic_path, device: str, codec_default: tuple[Path, str],
                       acoustic_default: tuple[Path, str]) -> CompactSpeechTokenizer:
    """codec and SoundStorm folders, each the given one or the shipped default (folder, retrain
    command); a given SoundStorm folder without weights is an error."""
    codec = Path(path) if path is not None else shipped(codec_default[0], WEIGHTS, codec_default[1])
    if acoustic_path is None:
        acoustic = shipped(acoustic_default[0], WEIGHTS + ("prompt.safetensors",), acoustic_default[1])
    else:
        acoustic = Path(acoustic_path)
        if not (acoustic / "model.safetensors").is_file():
            raise CheckpointError(f"{acoustic}: no model.safetensors of the SoundStorm acoustic model")
    return load_compact_speech_folders(codec, acoustic, device=device)
