"""Deprecated: renamed anygpt.modalities.speech_compact (the tokenizer) and
anygpt.loaders.load_compact_speech_tokenizer (the shipped one). This alias goes in the next release."""

import warnings

from anygpt.loaders import SOUNDSTORM_TINY_DIR as DEFAULT_SOUNDSTORM_DIR  # noqa: F401
from anygpt.loaders import SPEECH_TOKENIZER_TINY_DIR as DEFAULT_CODEC_DIR  # noqa: F401
from anygpt.loaders import load_compact_speech_tokenizer as load_tiny_speech_tokenizer  # noqa: F401
from anygpt.modalities.speech_compact import *  # noqa: F401,F403
from anygpt.modalities.speech_compact import TinySpeechTokenizer  # noqa: F401

warnings.warn("anygpt.modalities.speech_tiny is now anygpt.modalities.speech_compact", DeprecationWarning,
              stacklevel=2)
