"""Music: Encodec 32 kHz in the release (4 codebooks of 2048, 50 Hz, written frame by frame)."""

from anygpt.modalities.base import TokenSpec
from anygpt.modalities.registry import ModalityInfo, register_modality, register_tokenizer
from anygpt.modalities.speech import AUDIO_EXTENSIONS

RELEASED_MUSIC_SPEC = TokenSpec(
    name="music", prefix="\U0001F3B6", start="<somu>", end="<eomu>",
    codebook_size=2048, num_codebooks=4,
)

MUSIC = register_modality(ModalityInfo(
    name="music", kind="audio", released_spec=RELEASED_MUSIC_SPEC, file_extensions=AUDIO_EXTENSIONS,
))


def _load_released(**kwargs):
    """Tokenizer "released": facebook/encodec_32khz from a local folder (path=...)."""
    from anygpt.modalities.music_codec import load_released_music_tokenizer

    return load_released_music_tokenizer(**kwargs)


def _load_tiny(**kwargs):
    """Tokenizer "tiny": our compact codec (16 kHz, 50 Hz, 4 x 1024), shipped weights by default."""
    from anygpt.modalities.music_codec import load_tiny_music_tokenizer

    return load_tiny_music_tokenizer(**kwargs)


register_tokenizer("music", "released", _load_released)
register_tokenizer("music", "tiny", _load_tiny)
