"""Exceptions with messages a user can act on: what failed, where, and how to fix it; and the
one convention that turns them into a command's one-line message and exit status (`run`)."""

import sys
import traceback


class AnyGPTError(Exception):
    """Base class of every error anygpt raises on purpose."""


class MediaError(AnyGPTError, ValueError):
    """A media file (audio, image) is missing, unreadable, empty or of an unsupported type."""


class MediaTooLarge(MediaError):
    """A media file over a size limit (pixels, seconds, sample rate, channels), refused from its
    header before it is decoded (the server answers 413)."""


class LayoutError(AnyGPTError, ValueError):
    """Codes, ids or token strings that do not fit the token layout (out of range, truncated)."""


class ModelOutputError(LayoutError):
    """A model's output is malformed (e.g. an unterminated segment) and strict parsing was asked."""


class BackendUnavailable(AnyGPTError):
    """A decoder backend (--engine) whose runtime is not installed (the message names the extra
    to install), or one that cannot hold this model (another architecture)."""


class CheckpointError(AnyGPTError, ValueError):
    """A model folder is missing files or its files disagree with each other."""


class ConversationError(AnyGPTError, ValueError):
    """A conversation that cannot be sent as it is (an empty user turn, no user turn to answer)."""


class ManifestError(AnyGPTError, ValueError):
    """A JSON input (a JSONL manifest, an index or meta file, a config) is missing or malformed:
    a line that is not a JSON object, a record without a field it needs."""


class OutputError(AnyGPTError):
    """An output location that cannot be used: a file where a folder is needed (or the reverse),
    a read-only place, or a folder that holds something of another kind."""


class UnsafePathError(AnyGPTError, ValueError):
    """A path that comes from data (an item id, a config entry) would lead outside its folder."""


class UsageError(AnyGPTError, ValueError):
    """A flag value that is wrong in itself (found after parsing): exits 2 like argparse's errors."""


class UnknownModalityError(AnyGPTError, KeyError):
    """A modality name that is not registered."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


def message(e: BaseException) -> str:
    """The one-line message of an error: ours as written; a system error as `FILE: what`."""
    if isinstance(e, OSError) and not isinstance(e, AnyGPTError):
        what = e.strerror or str(e)
        files = [f for f in (e.filename, e.filename2) if f is not None]
        return f"{' -> '.join(map(str, files))}: {what}" if files else what
    return " ".join(line.strip() for line in str(e).splitlines() if line.strip()) or type(e).__name__


def run(command: str, main, argv: list[str], debug: bool = False) -> int:
    """Run `main(argv)` under the error convention (one line `COMMAND: message`, exit 1, or 2 for a
    usage error; --debug adds the traceback); returns the exit status."""
    try:
        return int(main(argv) or 0)
    except SystemExit as e:  # argparse: --help (0) and usage errors (2), already printed
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except KeyboardInterrupt:
        print(f"{command}: interrupted", file=sys.stderr)
        return 130
    except (AnyGPTError, OSError) as e:
        if debug:
            traceback.print_exc()
        print(f"{command}: {message(e)}", file=sys.stderr)
        return 2 if isinstance(e, UsageError) else 1
