"""Deprecated: renamed anygpt.modalities.music_tokenizers (the tokenizers) and
anygpt.loaders.load_compact_music_tokenizer (the shipped one). This alias goes in the next release."""

import warnings

from anygpt.loaders import MUSIC_CODEC_TINY_DIR as TINY_ASSET_DIR  # noqa: F401
from anygpt.loaders import load_compact_music_tokenizer as load_tiny_music_tokenizer  # noqa: F401
from anygpt.modalities.music_tokenizers import *  # noqa: F401,F403
from anygpt.modalities.music_tokenizers import TinyMusicTokenizer, _check_codes  # noqa: F401

warnings.warn("anygpt.modalities.music_codec is now anygpt.modalities.music_tokenizers", DeprecationWarning,
              stacklevel=2)
