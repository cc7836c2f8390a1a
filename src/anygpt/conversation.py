"""A conversation: turns of text and media, kept across `generate` calls until cleared."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from anygpt.errors import ConversationError, MediaError
from anygpt.media_io import probe_audio, probe_image
from anygpt.modalities import get_modality
from anygpt.parts import CodesPart, MediaFilePart, Part, TextPart
from anygpt.templates import Turn


def media_file(modality: str, path: str | Path) -> MediaFilePart:
    """A file attachment, checked now (exists, extension fits the modality, and for images and
    audio the header: readable, not cut short, within media_io's size limits) so that a bad
    file is reported before any model runs."""
    info = get_modality(modality)
    path = Path(path)
    if not path.exists():
        raise MediaError(f"{path}: attachment not found")
    if path.is_dir():
        raise MediaError(f"{path}: attachment is a folder, expected a {modality} file")
    if info.file_extensions and path.suffix.lower() not in info.file_extensions:
        raise MediaError(
            f"{path}: unsupported file type {path.suffix or '(none)'} for {modality}; "
            f"expected one of {', '.join(info.file_extensions)}"
        )
    if info.kind == "image":
        probe_image(path)
    elif info.kind == "audio":
        probe_audio(path)
    return MediaFilePart(modality, path)


class Conversation:
    """History of turns, kept across `generate` calls until cleared. The chat template is the
    model's (`load_model(..., template=...)`), not the conversation's."""

    def __init__(self, turns: list[Turn] | None = None) -> None:
        self.turns: list[Turn] = list(turns or [])

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Conversation) and other.turns == self.turns

    def __repr__(self) -> str:
        return f"Conversation(turns={self.turns!r})"

    def add_user(self, text: str | None = None, **attachments: list[str | Path]) -> Turn:
        """Add a user turn: attachments by modality, e.g. add_user("What is this?", image=["a.png"]).
        Media come first, then the text, as in the release's task prompts."""
        parts: list[Part] = [media_file(m, p) for m, paths in attachments.items() for p in paths]
        if text:
            parts.append(TextPart(text))
        if not parts:
            raise ConversationError("a user turn needs text or at least one attachment")
        turn = Turn("user", parts)
        self.turns.append(turn)
        return turn

    def add_assistant(self, parts: list[Part]) -> Turn:
        turn = Turn("assistant", list(parts))
        self.turns.append(turn)
        return turn

    def clear(self) -> None:
        self.turns.clear()

    def __len__(self) -> int:
        return len(self.turns)


@dataclass
class Reply:
    """What the model wrote: ordered parts, and the files written for its media (if any)."""

    parts: list[TextPart | CodesPart]
    files: list[Path] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "".join(p.text for p in self.parts if isinstance(p, TextPart)).strip()

    def media(self, modality: str | None = None) -> list[CodesPart]:
        return [p for p in self.parts if isinstance(p, CodesPart) and modality in (None, p.modality)]
