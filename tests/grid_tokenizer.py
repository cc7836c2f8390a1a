"""A stand-in image tokenizer for the data tests (a name no other test folder uses, like
released_folder.py): 8x8 images, 16 codes of 16 grey levels, registered as "test-grid"."""

from anygpt.media_io import load_image, save_image
from anygpt.modalities.base import ModalityTokenizer
from anygpt.modalities.specs import RELEASED_IMAGE_SPEC
from anygpt.token_spec import TokenSpec


class GridTokenizer(ModalityTokenizer):
    """8x8 image -> 16 codes: the mean grey level of each 2x2 cell in 16 levels."""

    name = "image"
    image_size = (8, 8)
    frame_rate = 16
    num_codebooks = 1
    codebook_size = 16
    file_extensions = (".png",)

    @property
    def token_spec(self):
        s = RELEASED_IMAGE_SPEC
        return TokenSpec("image", s.prefix, s.start, s.end, 16, 1, 16)

    def load(self, path):
        return load_image(path, self.image_size)

    def encode(self, media):
        grey = media.mean(1)  # [B, 8, 8]
        cells = grey.unfold(1, 2, 2).unfold(2, 2, 2).mean((-1, -2))  # [B, 4, 4]
        return (cells * 15.999).long().reshape(len(media), 1, 16)

    def decode(self, codes, **context):
        g = (codes.float().reshape(-1, 4, 4) + 0.5) / 16
        return g.repeat_interleave(2, 1).repeat_interleave(2, 2).unsqueeze(1).expand(-1, 3, -1, -1)

    def save(self, media, path):
        return save_image(media, path)
