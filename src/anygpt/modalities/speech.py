"""Speech: SpeechTokenizer layer 1 in the release (1024 codes, 50 per second); ours is "tiny"."""

from anygpt.modalities.base import TokenSpec
from anygpt.modalities.registry import ModalityInfo, register_modality, register_tokenizer

# U+1F5E3 (speaking head) followed by U+FE0F (emoji variation selector), as the release writes it
RELEASED_SPEECH_SPEC = TokenSpec(
    name="speech", prefix="\U0001F5E3\uFE0F", start="<sosp>", end="<eosp>",
    codebook_size=1024, num_codebooks=1,
)
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif")

SPEECH = register_modality(ModalityInfo(
    name="speech", kind="audio", released_spec=RELEASED_SPEECH_SPEC, file_extensions=AUDIO_EXTENSIONS,
))


def _load_tiny(**kwargs):
    """Tokenizer "tiny": our compact codec (16 kHz, 25 Hz, layer 1 of 512 codes for the LM) and
    SoundStorm acoustic model, shipped weights by default."""
    from anygpt.modalities.speech_tiny import load_tiny_speech_tokenizer

    return load_tiny_speech_tokenizer(**kwargs)


def _load_released(**kwargs):
    """Tokenizer "released": SpeechTokenizer (+ SoundStorm) from a local copy of
    fnlp/AnyGPT-speech-modules (path=...)."""
    from anygpt.modalities.speech_released import load_released_speech_tokenizer

    return load_released_speech_tokenizer(**kwargs)


register_tokenizer("speech", "released", _load_released)
register_tokenizer("speech", "tiny", _load_tiny)
