"""Deprecated: split into anygpt.nn.compact_music_codec (the music codec) and
anygpt.nn.spectral_codec (the trunk and mel loss it shares with the speech codec). This alias
goes in the next release."""

import warnings

from anygpt.nn.compact_music_codec import CompactMusicCodec, LossWeights, MusicCodecConfig, codec_losses  # noqa: F401
from anygpt.nn.spectral_codec import (  # noqa: F401
    ConvNeXtBlock, MultiScaleMelLoss, SpectralCodecConfig, SpectralCodecTrunk, mel_filterbank,
)

warnings.warn("anygpt.nn.music_codec is now anygpt.nn.compact_music_codec (+ anygpt.nn.spectral_codec)",
              DeprecationWarning, stacklevel=2)
