"""Image: SEED-2 in the release (32 codes of 8192 per image); ours are "compact" (64x64 -> 32
global codes of 1024, the shipped anygpt-tiny's) and "grid" (64x64 -> 36 local codes of 1024:
each code reads its own window of a 6 x 6 grid; anygpt.modalities.image_tokenizers). Loaders are named by string and imported
when first used."""

from anygpt.modalities.registry import ModalityInfo, register_modality, register_tokenizer
from anygpt.modalities.specs import IMAGE_EXTENSIONS, RELEASED_IMAGE_SPEC  # noqa: F401  (also imported from here)

IMAGE = register_modality(ModalityInfo(
    name="image", kind="image", released_spec=RELEASED_IMAGE_SPEC, file_extensions=IMAGE_EXTENSIONS,
))

register_tokenizer("image", "released", "anygpt.modalities.image_tokenizers:load_released_image_tokenizer")
register_tokenizer("image", "compact", "anygpt.modalities.image_tokenizers:load_compact_image_tokenizer")
register_tokenizer("image", "grid", "anygpt.modalities.image_tokenizers:load_grid_image_tokenizer")
