"""Speech: SpeechTokenizer layer 1 in the release (1024 codes, 50 per second); ours are "compact"
(25 Hz, layer 1 of 512 codes, with a SoundStorm acoustic model), "units" (the same codec
with layer 1 from 256 voice-free content units, and its own SoundStorm) and "phones" (layer 1:
55 phones read from Whisper features, and its own SoundStorm). Loaders are named by string and
imported when first used."""

from anygpt.modalities.registry import ModalityInfo, register_modality, register_tokenizer
from anygpt.modalities.specs import AUDIO_EXTENSIONS, RELEASED_SPEECH_SPEC  # noqa: F401  (also imported from here)

SPEECH = register_modality(ModalityInfo(
    name="speech", kind="audio", released_spec=RELEASED_SPEECH_SPEC, file_extensions=AUDIO_EXTENSIONS,
))

# "released": SpeechTokenizer (+ SoundStorm) from a local copy of fnlp/AnyGPT-speech-modules (path=...)
register_tokenizer("speech", "released", "anygpt.modalities.speech_released:load_released_speech_tokenizer")
register_tokenizer("speech", "compact", "anygpt.modalities.speech_compact:load_compact_speech_tokenizer")
register_tokenizer("speech", "units", "anygpt.modalities.speech_compact:load_units_speech_tokenizer")
register_tokenizer("speech", "phones", "anygpt.modalities.speech_compact:load_phones_speech_tokenizer")
