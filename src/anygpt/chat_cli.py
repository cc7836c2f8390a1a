"""`anygpt chat`: talk to a model in the terminal, with attachments by path.

Everything a turn needs is checked before the model is loaded or runs: the output folder can
be written, every attachment and the voice prompt exist and can be read. In interactive mode
an error is reported and the session (and its history) goes on.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

from anygpt import cli_flags
from anygpt.asset_paths import DEFAULT_MODEL
from anygpt.errors import AnyGPTError, UsageError, message
from anygpt.lm.backends import BACKENDS
from anygpt.modalities import modality_names

EXAMPLE = """anygpt chat --message "Draw a big red circle in the middle on a white background." --out out/
anygpt chat --message "Say: the cat sat on the mat." --voice-prompt me.wav --out out/
anygpt chat --image scene.png --message "Describe this picture."
anygpt chat --model path/to/AnyGPT-chat --image cat.png --message "What is in this picture?"
anygpt chat                                 # interactive; type /help for commands

In interactive mode: /image PATH, /speech PATH, /music PATH attach a file to the next
message; /clear forgets the history; /quit leaves. Generated media go to --out (as media
files where the model has a de-tokenizer for them, else as code files).

The reply's modality follows the request (--force-modality auto): draw/paint/picture/image ->
image; say/speak/read aloud -> speech; play/compose/music -> music; a question -> text (a reply
with no media). anygpt-tiny draws greedily with classifier-free guidance 1.5 (--cfg-scale
overrides), through the text-to-image instruction it was trained on (its anygpt.json): one-object
requests come back mostly right, several objects often with colours swapped.

What anygpt-tiny (the default) knows, and so what it answers best:
  pictures: 1-4 circles, squares, triangles, stars; red, green, blue, yellow, purple, orange;
    small or large; top left, top, top right, left, center, right, bottom left, bottom,
    bottom right; on a white, black or gray background
  speech: English sentences (dictionary glosses, examples, quotations) in flite, festival and
    espeak-ng voices
  music: Bach chorales, folk songs, Irish tunes, Palestrina, Monteverdi on piano,
    harpsichord, vibraphone, organ, guitar, violin, cello, strings, trumpet, oboe, clarinet or
    flute; slow to fast, a key and mode, a metre, a register
  e.g. "Draw a small orange triangle at the top left on a gray background."
       "Play a slow piece on the cello in D minor."   "Say: the river is long and cold."
       --image scene.png "Describe this image."       --speech clip.wav "Transcribe this speech."
Chit-chat outside that world ("Hello, who are you?") is not expected to be good.
"""


def help_line() -> str:
    attach = "  ".join(f"/{m} PATH" for m in modality_names())
    return f"commands: {attach}  /clear  /quit  (anything else is a message)"


def build_parser() -> argparse.ArgumentParser:
    """Options for every registered modality (import a plugin module first to add one)."""
    p = cli_flags.parser("anygpt chat", __doc__, EXAMPLE)
    cli_flags.add_model(p, DEFAULT_MODEL)
    p.add_argument("--template", choices=["MMGPT", "AnyGPT"], default=None, help="chat template (default: the model's)")
    cli_flags.add_out(p, "folder for generated media (created; default: anygpt-output)", required=False,
                      default=Path("anygpt-output"))
    p.add_argument("--message", help="send this message and exit (no interactive loop)")
    p.add_argument("--plugin", action="append", default=[], metavar="MODULE",
                   help="import MODULE first (it may register more modalities and tokenizers)")
    for m in modality_names():
        p.add_argument(f"--{m}", action="append", default=[], metavar="PATH", help=f"attach a {m} file to the first message")
    p.add_argument("--force-modality", choices=["auto", "none", "text", *modality_names()], default="auto",
                   help="start the reply with this modality (text: a reply with no media); auto (default): the "
                        "one the message asks for (anygpt.modality_choice: draw/picture/image -> image, "
                        "say/speak/read aloud -> speech, play/compose/music -> music, a question -> text); "
                        "none: the model chooses")
    p.add_argument("--preset", default=None,
                   help="generation preset: text, image, speech, music, paper-* (default: the reply modality's)")
    p.add_argument("--max-new-tokens", type=cli_flags.positive_int, metavar="N",
                   help="override the preset's max new tokens")
    p.add_argument("--cfg-scale", type=cli_flags.positive_float, default=None, metavar="X",
                   help="classifier-free guidance when drawing an image (1: none; default: the model's own, "
                        "1.5 for anygpt-tiny, which draws greedily with it; 1 for other models)")
    p.add_argument("--unconstrained", action="store_true", help="the release's behaviour: no segment constraints")
    p.add_argument("--voice-prompt", type=Path, metavar="PATH",
                   help="~3 s of speech whose voice generated speech should use")
    cli_flags.add_seed(p, "random seed of the first turn (turn n uses seed + n; default: 0)")
    cli_flags.add_threads(p)
    cli_flags.add_engine(p, BACKENDS, with_hf=True)
    return p


def check_before_loading(args) -> None:
    """Everything that can be checked without the model: fail now, not after generation."""
    from anygpt.conversation import media_file
    from anygpt.files import check_output_dir

    check_output_dir(args.out, flag="--out")
    for m in modality_names():
        for path in getattr(args, m):
            media_file(m, path)
    if args.voice_prompt is not None:
        media_file("speech", args.voice_prompt)


def main(argv: list[str] | None = None) -> int:
    plugins = argparse.ArgumentParser(add_help=False)
    plugins.add_argument("--plugin", action="append", default=[])
    for module in plugins.parse_known_args(argv)[0].plugin:
        try:
            importlib.import_module(module)
        except ImportError as e:
            raise UsageError(f"--plugin {module}: cannot import it ({e}); give an importable module name, "
                             "e.g. mypkg.my_modality") from None
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.int8 and args.engine == "hf":
        parser.error("--int8 needs an --engine other than hf")
    check_before_loading(args)
    cli_flags.set_threads(args.threads)
    from anygpt.conversation import Conversation
    from anygpt.lm.generation import GENERATION_PRESETS, get_preset
    from anygpt.loaders import load_model
    from anygpt.modality_choice import reply_modality

    def settings_for(force: str | None, model=None):
        """The preset named, else the reply modality's (text when it has none), with what the
        model's folder sets over it for that modality."""
        name = args.preset or (force if force in GENERATION_PRESETS else "text")
        try:
            settings = (model.preset if model is not None else get_preset)(name)
        except ValueError as e:
            raise UsageError(f"--preset: {e}") from None
        guidance = args.cfg_scale if force == "image" else None
        settings = settings.with_(max_new_tokens=args.max_new_tokens, cfg_scale=guidance)
        return settings.with_(constrained=False) if args.unconstrained else settings

    settings_for(None)  # a bad --preset fails before the model loads
    model = load_model(args.model, template=args.template)
    context = {}
    if args.voice_prompt is not None and "speech" in model.tokenizers:
        context["voice_prompt"] = model.tokenizers["speech"].prompt_codes(args.voice_prompt)  # encoded once
    conv = Conversation()
    pending = {m: list(getattr(args, m)) for m in modality_names()}
    turn = 0

    def send(text: str) -> None:
        nonlocal turn
        attachments = {m: paths for m, paths in pending.items() if paths}
        try:
            conv.add_user(text or None, **attachments)
        finally:
            for paths in pending.values():
                paths.clear()
        force = reply_modality(args.force_modality, text, model.layout.modalities)
        try:
            reply = model.generate(conv, settings=settings_for(force, model), force_modality=force, seed=args.seed + turn,
                                   engine=args.engine, quantize="int8" if args.int8 else None, threads=args.threads)
        except BaseException:
            conv.turns.pop()
            raise
        files = model.save_media(reply, args.out, stem=f"turn{turn:03d}", **context)
        turn += 1
        print(f"assistant: {reply.text}")
        for f in files:
            print(f"  [wrote {f}]")

    if args.message is not None:
        send(args.message)
        return 0

    print(f"anygpt chat ({args.model}). {help_line()}")
    for line in stdin_lines():
        if line is None:
            print("anygpt chat: stdin: that line is not valid UTF-8 text; it was skipped", file=sys.stderr)
            continue
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
        except (AnyGPTError, OSError) as e:  # the session and its history go on
            hint = ""
            from anygpt.lm.decoder import PromptTooLong

            if conv.turns and isinstance(e, PromptTooLong):
                hint = (f"; the conversation ({len(conv.turns)} turns) has outgrown the model's context: "
                        "type /clear to start a new one")
            print(f"anygpt chat: {message(e)}{hint}", file=sys.stderr)
    return 0


def stdin_lines():
    """The lines of stdin as text; None for a line that is not valid UTF-8 (the session goes on)."""
    raw = getattr(sys.stdin, "buffer", None)
    if raw is None:  # a text stream without bytes under it (tests, embedding)
        yield from sys.stdin
        return
    for line in raw:
        try:
            yield line.decode("utf-8")
        except UnicodeDecodeError:
            yield None
