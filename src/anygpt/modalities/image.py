"""Image: SEED-2 in the release (32 codes of 8192 per image); tokenizers plug in here."""

from anygpt.modalities.base import TokenSpec
from anygpt.modalities.registry import ModalityInfo, register_modality

RELEASED_IMAGE_SPEC = TokenSpec(
    name="image", prefix="\U0001F440", start="<soim>", end="<eoim>",
    codebook_size=8192, num_codebooks=1, frames_per_item=32,
)
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")

IMAGE = register_modality(ModalityInfo(
    name="image", kind="image", released_spec=RELEASED_IMAGE_SPEC, file_extensions=IMAGE_EXTENSIONS,
))
