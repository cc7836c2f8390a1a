"""Text: handled by the LM's own tokenizer, registered so that every modality has an entry."""

from anygpt.modalities.registry import ModalityInfo, register_modality
from anygpt.modalities.specs import TEXT_EXTENSIONS

TEXT = register_modality(ModalityInfo(name="text", kind="text", released_spec=None, file_extensions=TEXT_EXTENSIONS))
