"""`anygpt chat`: talk to a model in the terminal, with attachments by path."""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

from anygpt.errors import AnyGPTError
from anygpt.modalities import modality_names

EXAMPLE = """examples:
  anygpt chat --model tiny-random --message "Draw a red circle." --force-modality image
  anygpt chat --model path/to/AnyGPT-chat --image cat.png --message "What is in this picture?"
  anygpt chat --model tiny-random            # interactive; type /help for commands

In interactive mode: /image PATH, /speech PATH, /music PATH attach a file to the next
message; /clear forgets the history; /quit leaves. Generated media go to --output-dir
(as media files where the model has a de-tokenizer for them, else as code files).
"""

def help_line() -> str:
    attach = "  ".join(f"/{m} PATH" for m in modality_names())
    return f"commands: {attach}  /clear  /quit  (anything else is a message)"


def build_parser() -> argparse.ArgumentParser:
    """Options for every registered modality (import a plugin module first to add one)."""
    p = argparse.ArgumentParser(prog="anygpt chat", description=__doc__, epilog=EXAMPLE,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="tiny-random",
                   help="model folder (released AnyGPT or ours), or 'tiny-random' (random weights, for trying the pipeline)")
    p.add_argument("--template", choices=["MMGPT", "AnyGPT"], default=None, help="chat template (default: the model's)")
    p.add_argument("--output-dir", type=Path, default=Path("anygpt-output"), help="where generated media are written")
    p.add_argument("--message", help="send this message and exit (no interactive loop)")
    p.add_argument("--plugin", action="append", default=[], metavar="MODULE",
                   help="import MODULE first (it may register more modalities and tokenizers)")
    for m in modality_names():
        p.add_argument(f"--{m}", action="append", default=[], metavar="PATH", help=f"attach a {m} file to the first message")
    p.add_argument("--force-modality", choices=modality_names(), help="start the reply with this modality")
    p.add_argument("--preset", default="text", help="generation preset: text, image, speech, music, paper-*")
    p.add_argument("--max-new-tokens", type=int, help="override the preset's max new tokens")
    p.add_argument("--unconstrained", action="store_true", help="the release's behaviour: no segment constraints")
    p.add_argument("--voice-prompt", type=Path, help="~3 s of speech whose voice generated speech should use")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--engine", choices=["engine", "hf"], default="engine",
                   help="decoder: anygpt's generation engine (default) or HF generate (the reference; beam search)")
    p.add_argument("--int8", action="store_true", help="engine only: int8 projections (faster, slightly different tokens)")
    p.add_argument("--threads", type=int, default=None, metavar="N",
                   help="torch threads while generating (default 1: measured fastest next to other work; "
                        "for more, also set OMP_WAIT_POLICY=PASSIVE in the environment)")
    return p


def main(argv: list[str] | None = None) -> int:
    plugins = argparse.ArgumentParser(add_help=False)
    plugins.add_argument("--plugin", action="append", default=[])
    for module in plugins.parse_known_args(argv)[0].plugin:
        importlib.import_module(module)
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.threads is not None and args.threads < 1:
        parser.error(f"--threads: {args.threads}: must be at least 1")
    if args.int8 and args.engine != "engine":
        parser.error("--int8 needs --engine engine")
    from anygpt.conversation import Conversation
    from anygpt.lm.generation import get_preset

    try:
        from anygpt.loaders import load_model

        model = load_model(args.model, template=args.template)
        settings = get_preset(args.preset).with_(max_new_tokens=args.max_new_tokens)
        if args.unconstrained:
            settings = settings.with_(constrained=False)
    except (AnyGPTError, ValueError) as e:
        print(f"anygpt chat: {e}", file=sys.stderr)
        return 1
    conv = Conversation(template=model.template.name)
    pending = {m: list(getattr(args, m)) for m in modality_names()}
    context = {"voice_prompt": args.voice_prompt} if args.voice_prompt else {}
    turn = 0

    def send(text: str) -> None:
        nonlocal turn
        attachments = {m: paths for m, paths in pending.items() if paths}
        try:
            conv.add_user(text or None, **attachments)
        finally:
            for paths in pending.values():
                paths.clear()
        try:
            reply = model.generate(conv, settings=settings, force_modality=args.force_modality, seed=args.seed + turn,
                                   engine=args.engine, quantize="int8" if args.int8 else None, threads=args.threads)
        except AnyGPTError:
            conv.turns.pop()
            raise
        files = model.save_media(reply, args.output_dir, stem=f"turn{turn:03d}", **context)
        turn += 1
        print(f"assistant: {reply.text}")
        for f in files:
            print(f"  [wrote {f}]")

    if args.message is not None:
        try:
            send(args.message)
        except (AnyGPTError, ValueError) as e:
            print(f"anygpt chat: {e}", file=sys.stderr)
            return 1
        return 0

    print(f"anygpt chat ({args.model}). {help_line()}")
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        cmd, _, arg = line.partition(" ")
        try:
            if cmd in ("/quit", "/exit"):
                break
            if cmd == "/help":
                print(help_line())
            elif cmd == "/clear":
                conv.clear()
                print("(history cleared)")
            elif cmd[1:] in pending and cmd.startswith("/"):
                from anygpt.conversation import media_file

                media_file(cmd[1:], arg.strip())  # check now, report early
                pending[cmd[1:]].append(arg.strip())
                print(f"(attached {arg.strip()})")
            elif cmd.startswith("/"):
                print(f"unknown command {cmd}. {help_line()}")
            else:
                send(line)
        except (AnyGPTError, ValueError) as e:
            print(f"error: {e}")
    return 0
