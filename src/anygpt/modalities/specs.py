"""The release's token specs and the file types of each modality: constants every other module
may import (this module imports nothing of anygpt but the TokenSpec class)."""

from anygpt.token_spec import TokenSpec

# SEED-2: 32 codes of 8192 per image
RELEASED_IMAGE_SPEC = TokenSpec(
    name="image", prefix="\U0001F440", start="<soim>", end="<eoim>",
    codebook_size=8192, num_codebooks=1, frames_per_item=32,
)
# SpeechTokenizer layer 1: 1024 codes, 50 per second. The prefix is U+1F5E3 (speaking head)
# followed by U+FE0F (emoji variation selector), as the release writes it.
RELEASED_SPEECH_SPEC = TokenSpec(
    name="speech", prefix="\U0001F5E3\uFE0F", start="<sosp>", end="<eosp>",
    codebook_size=1024, num_codebooks=1,
)
# Encodec 32 kHz: 4 codebooks of 2048, 50 frames per second, written frame by frame
RELEASED_MUSIC_SPEC = TokenSpec(
    name="music", prefix="\U0001F3B6", start="<somu>", end="<eomu>",
    codebook_size=2048, num_codebooks=4,
)

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif")
TEXT_EXTENSIONS = (".txt",)
