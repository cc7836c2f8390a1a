"""Music: Encodec 32 kHz in the release (4 codebooks of 2048, 50 Hz, written frame by frame)."""

from anygpt.modalities.base import TokenSpec
from anygpt.modalities.registry import ModalityInfo, register_modality
from anygpt.modalities.speech import AUDIO_EXTENSIONS

RELEASED_MUSIC_SPEC = TokenSpec(
    name="music", prefix="\U0001F3B6", start="<somu>", end="<eomu>",
    codebook_size=2048, num_codebooks=4,
)

MUSIC = register_modality(ModalityInfo(
    name="music", kind="audio", released_spec=RELEASED_MUSIC_SPEC, file_extensions=AUDIO_EXTENSIONS,
))
