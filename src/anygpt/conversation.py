"""A conversation: turns of text and media, kept across `generate` calls until cleared."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from anygpt.errors import MediaError
from anygpt.modalities import get_modality
from anygpt.parts import CodesPart, MediaFilePart, Part, TextPart
from anygpt.templates import Turn


def media_file(modality: str, path: str | Path) -> MediaFilePart:
    """A file attachment, checked now (exists, extension fits the modality) so that a bad path
    is reported before any model runs."""
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
    return MediaFilePart(modality, path)


@dataclass
class Conversation:
    """History of turns. `template` names the chat template (MMGPT or AnyGPT)."""

    template: str = "MMGPT"
    turns: list[Turn] = field(default_factory=list)

    def add_user(self, text: str | None = None, **attachments: list[str | Path]) -> Turn:
        """Add a user turn: attachments by modality, e.g. add_user("What is this?", image=["a.png"]).
        Media come first, then the text, as in the release's task prompts."""
        parts: list[Part] = [media_file(m, p) for m, paths in attachments.items() for p in paths]
        if text:
            parts.append(TextPart(text))
        if not parts:
            raise ValueError("a user turn needs text or at least one attachment")
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
