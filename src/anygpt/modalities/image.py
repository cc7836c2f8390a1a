"""Image: SEED-2 in the release (32 codes of 8192 per image); tokenizers plug in here."""

from anygpt.modalities.base import TokenSpec
from anygpt.modalities.registry import ModalityInfo, register_modality, register_tokenizer

RELEASED_IMAGE_SPEC = TokenSpec(
    name="image", prefix="\U0001F440", start="<soim>", end="<eoim>",
    codebook_size=8192, num_codebooks=1, frames_per_item=32,
)
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")

IMAGE = register_modality(ModalityInfo(
    name="image", kind="image", released_spec=RELEASED_IMAGE_SPEC, file_extensions=IMAGE_EXTENSIONS,
))


def _load_released(path, **kwargs):
    """SEED-2 from a folder with seed_quantizer.pt (see anygpt.modalities.image_tokenizers)."""
    from anygpt.modalities.image_tokenizers import Seed2ImageTokenizer

    return Seed2ImageTokenizer.from_folder(path, **kwargs)


def _load_tiny(path=None, **kwargs):
    """Our compact tokenizer; default: the weights shipped in anygpt/assets/image-tokenizer-tiny."""
    from anygpt.modalities.image_tokenizers import TINY_ASSET_DIR, TinyImageTokenizer

    return TinyImageTokenizer.from_folder(path or TINY_ASSET_DIR, **kwargs)


register_tokenizer("image", "released", _load_released)
register_tokenizer("image", "tiny", _load_tiny)
