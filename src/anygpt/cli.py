"""The `anygpt` command. Each sub-command is one function `main(argv)` in its own module,
imported only when it runs, so `anygpt --help` stays fast.

Errors follow one convention (docs/cli.md), implemented here once: a sub-command raises
AnyGPTError (or a subclass) with a message "FILE-OR-FIELD: PROBLEM"; this prints
`anygpt COMMAND: MESSAGE` on stderr and exits 1 (2 for UsageError and argparse's usage
errors). A file the system refuses (missing, a folder, no permission) is reported the same way.
`--debug`, anywhere on the command line, also prints the traceback.
"""

from __future__ import annotations

import importlib
import sys
import traceback

from anygpt.errors import AnyGPTError, UsageError, message

# name -> (module, one-line summary, example)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "chat": ("anygpt.chat_cli", "talk to a model; attach images, speech, music by path",
             'anygpt chat --model random-64x2 --message "Draw a red circle." --force-modality image --out out/'),
    "data": ("anygpt.data.cli", "build and inspect the offline corpora (data build, data stats)",
             "anygpt data build --preset micro --out data/micro"),
    "eval": ("anygpt.eval.cli", "score tokenizers and models (asr, tts, caption, ...)",
             "anygpt eval asr --manifest data/tiny/speech/manifest.jsonl --split test --system whisper"),
    "tokenize": ("anygpt.data.codes_store", "encode a corpus's media into code shards, once",
                 "anygpt tokenize --corpus data/tiny/images --modality image --out data/tiny-codes/images"),
    "blocks": ("anygpt.data.blocks", "build packed, balanced training blocks from corpora and codes",
               "anygpt blocks --config blocks.json --out data/tiny-blocks"),
    "instruct": ("anygpt.data.instruct.cli", "write any-to-any conversations (stage 1) and realise their media (stage 2)",
                 "anygpt instruct write --corpus data/tiny --n 5000 --out-file data/tiny-chat/scripts.jsonl"),
    "train": ("anygpt.train.cli", "train the LM and the compact tokenizers (anygpt train lm, ...)",
              "anygpt train lm --blocks data/tiny-seq/blocks-pretrain --preset tiny --out runs/lm"),
    "pipeline": ("anygpt.pipeline", "anygpt-tiny end to end: corpus, codes, conversations, blocks, training, eval",
                 "anygpt pipeline tiny --out runs/tiny"),
    "serve": ("anygpt.serve.cli", "an OpenAI-compatible HTTP API (chat completions, streaming, media)",
              "anygpt serve --model anygpt-tiny --host 127.0.0.1 --port 8000"),
    "demo": ("anygpt.serve.demo", "a web demo (Gradio, offline): chat with text, images, speech, music",
             "anygpt demo --model anygpt-tiny --port 7860"),
}
WITH_ACTIONS = ("data", "eval", "instruct", "train")  # `anygpt data build`: messages name the action too

USAGE = """usage: anygpt COMMAND [ARGS] ... [--debug]

commands:
{commands}

Run `anygpt COMMAND --help` for a command's options and examples. --debug, anywhere on the
command line, shows the traceback of an error. Flags mean the same in every command (docs/cli.md).
"""


def usage() -> str:
    listing = "\n".join(f"  {name:<9} {summary}\n  {'':<9}   {example}" for name, (_, summary, example) in COMMANDS.items())
    return USAGE.format(commands=listing)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"anygpt: unknown command {name!r}; the commands are {', '.join(COMMANDS)} (see anygpt --help)",
              file=sys.stderr)
        return 2
    command = f"anygpt {name}"
    if name in WITH_ACTIONS and rest and not rest[0].startswith("-"):
        command += f" {rest[0]}"
    return run(command, COMMANDS[name][0], rest, debug)


def run(command: str, module: str, argv: list[str], debug: bool = False) -> int:
    """Run `module.main(argv)` under the error convention; returns the exit status."""
    try:
        return int(importlib.import_module(module).main(argv) or 0)
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


if __name__ == "__main__":
    sys.exit(main())
