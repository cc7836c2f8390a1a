"""Exceptions with messages a user can act on: what failed, where, and how to fix it."""


class AnyGPTError(Exception):
    """Base class of every error anygpt raises on purpose."""


class MediaError(AnyGPTError, ValueError):
    """A media file (audio, image) is missing, unreadable, empty or of an unsupported type."""


class LayoutError(AnyGPTError, ValueError):
    """Codes, ids or token strings that do not fit the token layout (out of range, truncated)."""


class ModelOutputError(LayoutError):
    """A model's output is malformed (e.g. an unterminated segment) and strict parsing was asked."""


class CheckpointError(AnyGPTError, ValueError):
    """A model folder is missing files or its files disagree with each other."""


class UnknownModalityError(AnyGPTError, KeyError):
    """A modality name that is not registered."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""
