"""Stage-1 conversation scripts: turns of text and media *descriptions* (no media yet)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

MEDIA_KINDS = ("image", "speech", "music")


@dataclass
class Element:
    """kind: 'text' or a media kind. text: the text, or the media's description (for speech:
    the words spoken). ref: a corpus item id when the media is taken from a corpus."""

    kind: str
    text: str
    ref: str | None = None

    def __post_init__(self) -> None:
        if self.kind != "text" and self.kind not in MEDIA_KINDS:
            raise ValueError(f"element kind must be text or one of {MEDIA_KINDS}, not {self.kind!r}")


@dataclass
class ScriptTurn:
    role: str  # "user" | "assistant"
    elements: list[Element] = field(default_factory=list)


@dataclass
class Script:
    id: str
    scenario: str
    turns: list[ScriptTurn] = field(default_factory=list)
    # spoken-instruction conversation: the assistant answers '<-Ins-> transcript <-Res-> reply <speech>'
    spoken: bool = False

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict) -> "Script":
        turns = [ScriptTurn(t["role"], [Element(**e) for e in t["elements"]]) for t in d["turns"]]
        for t in turns:
            if t.role not in ("user", "assistant"):
                raise ValueError(f"turn role must be user or assistant, not {t.role!r}")
        return cls(d["id"], d.get("scenario", "unknown"), turns, bool(d.get("spoken", False)))

    def texts(self) -> list[str]:
        """All words of the conversation (text and descriptions), for diversity measures."""
        return [e.text for t in self.turns for e in t.elements]
