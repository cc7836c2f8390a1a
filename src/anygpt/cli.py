"""The `anygpt` command. Each sub-command is one function `main(argv)` in its own module,
imported only when it runs, so `anygpt --help` stays fast."""

from __future__ import annotations

import importlib
import sys

# name -> (module, one-line summary)
COMMANDS: dict[str, tuple[str, str]] = {
    "chat": ("anygpt.chat_cli", "talk to a model; attach images, speech, music by path"),
    "data": ("anygpt.data.cli", "build and inspect the offline corpora (data build, data stats)"),
    "eval": ("anygpt.eval.cli", "score tokenizers and models (asr, tts, caption, ...)"),
    "tokenize": ("anygpt.data.codes_store", "encode a corpus's media into code shards, once"),
    "blocks": ("anygpt.data.blocks", "build packed, balanced training blocks from corpora and codes"),
    "instruct": ("anygpt.data.instruct.cli", "write any-to-any conversations (stage 1) and realise their media (stage 2)"),
    "train": ("anygpt.train.cli", "train the compact tokenizers and models from the corpora"),
    "serve": ("anygpt.serve.cli", "an OpenAI-compatible HTTP API (chat completions, streaming, media)"),
    "demo": ("anygpt.serve.demo", "a web demo (Gradio, offline): chat with text, images, speech, music"),
}

USAGE = """usage: anygpt COMMAND [ARGS] ...

commands:
{commands}

Run `anygpt COMMAND --help` for a command's options and an example.
Example:  anygpt chat --model tiny-random --output-dir out/
"""


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    listing = "\n".join(f"  {name:<8} {summary}" for name, (_, summary) in COMMANDS.items())
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE.format(commands=listing))
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"anygpt: unknown command {name!r}\n\n" + USAGE.format(commands=listing), file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    return int(module.main(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
