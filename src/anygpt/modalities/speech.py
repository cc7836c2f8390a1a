"""Speech: SpeechTokenizer layer 1 in the release (1024 codes, 50 per second)."""

from anygpt.modalities.base import TokenSpec
from anygpt.modalities.registry import ModalityInfo, register_modality

# U+1F5E3 (speaking head) followed by U+FE0F (emoji variation selector), as the release writes it
RELEASED_SPEECH_SPEC = TokenSpec(
    name="speech", prefix="\U0001F5E3\uFE0F", start="<sosp>", end="<eosp>",
    codebook_size=1024, num_codebooks=1,
)
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif")

SPEECH = register_modality(ModalityInfo(
    name="speech", kind="audio", released_spec=RELEASED_SPEECH_SPEC, file_extensions=AUDIO_EXTENSIONS,
))
