"""Music: Encodec 32 kHz in the release (4 codebooks of 2048, 50 Hz, written frame by frame);
ours is "compact" (16 kHz, 50 Hz, 4 x 1024). Loaders are named by string and imported when
first used."""

from anygpt.modalities.registry import ModalityInfo, register_modality, register_tokenizer
from anygpt.modalities.specs import AUDIO_EXTENSIONS, RELEASED_MUSIC_SPEC  # noqa: F401  (also imported from here)

MUSIC = register_modality(ModalityInfo(
    name="music", kind="audio", released_spec=RELEASED_MUSIC_SPEC, file_extensions=AUDIO_EXTENSIONS,
))

# "released": facebook/encodec_32khz from a local folder (path=...)
register_tokenizer("music", "released", "anygpt.modalities.music_tokenizers:load_released_music_tokenizer")
register_tokenizer("music", "compact", "anygpt.modalities.music_tokenizers:load_compact_music_tokenizer")
