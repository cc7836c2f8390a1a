"""The `anygpt` command. Each sub-command is one function `main(argv)` in its own module,
imported only when it runs, so `anygpt --help` stays fast.

Errors follow one convention (docs/cli.md), implemented here once: a sub-command raises
AnyGPTError (or a subclass) with a message "FILE-OR-FIELD: PROBLEM"; this prints
`anygpt COMMAND: MESSAGE` on stderr and exits 1 (2 for UsageError and argparse's usage
errors). A file the system refuses (missing, a folder, no permission) is reported the same way.
`--debug`, anywhere on the command line, also prints the traceback.
"""

from __future__ import annotations

import atexit
import importlib
import os
import sys
import threading

from anygpt.errors import run

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
# commands after which the process leaves without the interpreter's teardown (see console)
FAST_EXIT = ("chat",)

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
    module = COMMANDS[name][0]  # imported under the error convention, only when it runs
    return run(command, lambda args: importlib.import_module(module).main(args), rest, debug)


def console(argv: list[str] | None = None) -> None:
    """The `anygpt` executable (the package's script, `python -m anygpt`): main(argv), then exit.

    After a FAST_EXIT command the process ends with os._exit once stdout and stderr are flushed
    and the atexit hooks have run (as a normal exit runs them), unless a thread other than this
    one is still alive: what is skipped is only the interpreter's teardown of every module and
    object, which after importing torch took about 0.5 s of a 3.5 s `anygpt chat --message
    Hello` on this machine (6 interleaved pairs; benchmarks/bench_cold_start.py times the command)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    rc = main(argv)
    alone = all(t is threading.current_thread() or t.daemon for t in threading.enumerate())
    if argv and argv[0] in FAST_EXIT and alone:
        sys.stdout.flush()
        sys.stderr.flush()
        atexit._run_exitfuncs()
        os._exit(rc)
    sys.exit(rc)


if __name__ == "__main__":
    console()
