"""The `anygpt` command: one error convention (in the dispatcher), a --help with an example for
every command and sub-command, every flag with help text and one spelling."""

from __future__ import annotations

import argparse
import importlib
import re
import sys
import types

import pytest

from anygpt import cli
from anygpt.errors import AnyGPTError, UsageError


# ----------------------------------------------------------------------------- error convention
@pytest.fixture
def fake_command(monkeypatch):
    """`anygpt boom ARGV` runs a module whose main raises whatever the test puts in `raise_`."""
    module = types.ModuleType("anygpt_test_boom")
    state = {}

    def main(argv):
        p = argparse.ArgumentParser(prog="anygpt boom")
        p.add_argument("--n", type=int)
        p.parse_args(argv)
        raise state["error"]

    module.main = main
    monkeypatch.setitem(sys.modules, "anygpt_test_boom", module)
    monkeypatch.setitem(cli.COMMANDS, "boom", ("anygpt_test_boom", "raises", "anygpt boom"))
    return state


@pytest.mark.parametrize("error, code, line", [
    (AnyGPTError("data/x.json: not valid JSON (line 3)"), 1, "anygpt boom: data/x.json: not valid JSON (line 3)"),
    (UsageError("--limit: must be 1 or more"), 2, "anygpt boom: --limit: must be 1 or more"),
    (FileNotFoundError(2, "No such file or directory", "in.wav"), 1, "anygpt boom: in.wav: No such file or directory"),
    (PermissionError(13, "Permission denied", "/root/x"), 1, "anygpt boom: /root/x: Permission denied"),
    (IsADirectoryError(21, "Is a directory", "out"), 1, "anygpt boom: out: Is a directory"),
])
def test_errors_are_one_line_on_stderr_with_the_right_status(fake_command, capsys, error, code, line):
    fake_command["error"] = error
    assert cli.main(["boom"]) == code
    captured = capsys.readouterr()
    assert captured.err == line + "\n" and captured.out == ""


def test_debug_anywhere_shows_the_traceback(fake_command, capsys):
    fake_command["error"] = AnyGPTError("x: broken")
    for argv in (["--debug", "boom"], ["boom", "--debug"]):
        assert cli.main(argv) == 1
        err = capsys.readouterr().err
        assert "Traceback (most recent call last)" in err and err.rstrip().endswith("anygpt boom: x: broken")


def test_usage_errors_exit_2_and_a_bug_is_not_hidden(fake_command, capsys):
    assert cli.main(["boom", "--n", "two"]) == 2  # argparse
    assert "invalid int value" in capsys.readouterr().err
    fake_command["error"] = ZeroDivisionError("a bug")  # not a user's mistake: the traceback stays
    with pytest.raises(ZeroDivisionError):
        cli.main(["boom"])
    fake_command["error"] = KeyboardInterrupt()
    assert cli.main(["boom"]) == 130


def test_house_usage_errors_are_one_line(capsys):
    assert cli.main(["tokenize", "--corpus", "c", "--modality", "image", "--out", "o", "--parts", "0"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("anygpt tokenize: argument --parts: 0 is not allowed")
    assert "see anygpt tokenize --help" in err


# ----------------------------------------------------------------------------- help
def _commands() -> list[list[str]]:
    """Every command and sub-command, as the argv before --help."""
    from anygpt.eval.cli import HELP
    from anygpt.train.cli import TRAINERS

    out = [[name] for name in cli.COMMANDS]
    out += [["data", "build"], ["data", "stats"], ["instruct", "write"], ["instruct", "realise"]]
    out += [["eval", task] for task in HELP]
    out += [["train", name] for name in TRAINERS]
    return out


def test_top_level_help_lists_every_command_with_a_summary_and_an_example(capsys):
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    for name, (_, summary, example) in cli.COMMANDS.items():
        assert re.search(rf"^  {name}\s+{re.escape(summary)}\n\s+{re.escape(example)}$", out, re.M), name
        assert example.startswith(f"anygpt {name} ")
    assert cli.main([]) == 0 and capsys.readouterr().out == out
    assert cli.main(["fly"]) == 2
    err = capsys.readouterr().err
    assert "unknown command 'fly'" in err and "chat" in err


@pytest.mark.parametrize("argv", _commands(), ids=" ".join)
def test_every_help_has_an_example(argv, capsys):
    assert cli.main([*argv, "--help"]) == 0
    out = capsys.readouterr().out
    assert re.search(rf"^\s+anygpt {' '.join(argv)}( |$)", out, re.M), f"no example of `anygpt {' '.join(argv)}`"


def _parsers():
    """(name, parser) of every sub-command parser: each command's, each action's, each trainer's."""
    from anygpt import chat_cli
    from anygpt.data import blocks, codes_store
    from anygpt.data import cli as data_cli
    from anygpt.data.instruct import cli as instruct_cli
    from anygpt.eval import cli as eval_cli

    from anygpt.serve import cli as serve_cli
    from anygpt.serve import demo
    from anygpt.train.cli import TRAINERS

    todo = [("chat", chat_cli.build_parser()), ("data", data_cli.build_parser()), ("eval", eval_cli.build_parser()),
            ("tokenize", codes_store.build_parser()), ("blocks", blocks.build_parser()),
            ("instruct", instruct_cli.build_parser()), ("serve", serve_cli.build_parser()), ("demo", demo.build_parser())]
    todo += [(f"train {name}", importlib.import_module(TRAINERS[name][0]).build_parser()) for name in TRAINERS]
    out = []
    while todo:
        name, p = todo.pop()
        out.append((name, p))
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                todo += [(f"{name} {sub}", sp) for sub, sp in action.choices.items()]
    return out


def test_every_flag_has_help_and_old_spellings_are_hidden():
    seen = set()
    for name, p in _parsers():
        for action in p._actions:
            if not action.option_strings or action.help == argparse.SUPPRESS:
                continue
            assert action.help and action.help.strip(), f"anygpt {name} {action.option_strings[0]}: no help text"
            seen.update(action.option_strings)
    old = {"--output-dir", "--quiet", "--tokenizer-arg", "--minutes"}
    assert not seen & old, seen & old
    # one name per meaning
    assert {"--out", "--out-file", "--corpus", "--manifest", "--no-progress", "--workers", "--threads", "--seed",
            "--tokenizer-option", "--part", "--parts"} <= seen


def test_old_spellings_are_gone(capsys):
    """One flag vocabulary: the old spellings are usage errors now, in every parser."""
    for name, p in _parsers():
        flags = {o for action in p._actions for o in action.option_strings}
        assert not flags & {"--output-dir", "--quiet", "--tokenizer-arg", "--minutes", "--data", "--ship", "--debug"}, name
    assert cli.main(["chat", "--output-dir", "o", "--message", "hi"]) == 2
    assert "unrecognized arguments: --output-dir" in capsys.readouterr().err

# ----------------------------------------------------------------------------- exit
EXIT_PROBE = """
import atexit, sys
from anygpt import cli

class Teardown:  # prints when the interpreter's teardown clears this module
    def __del__(self):
        print("teardown ran", flush=True)

probe = Teardown()
atexit.register(lambda: print("atexit ran", flush=True))
cli.console(sys.argv[1:])
"""


@pytest.mark.parametrize("argv, status, fast", [
    (["chat", "--model", "random-64x2", "--message", "hi", "--max-new-tokens", "4"], 0, True),
    (["chat", "--model", "random-64x2", "--message", "hi", "--seed", "-1"], 2, True),
    (["--help"], 0, False),
])
def test_chat_leaves_without_the_teardown_but_with_its_output_status_and_atexit_hooks(tmp_path, argv, status, fast):
    """cli.console: after `chat` the process skips the interpreter's teardown (cold start), and
    still prints everything, runs the atexit hooks and exits with main's status; other commands
    exit normally."""
    import subprocess

    out = ["--out", str(tmp_path)] if argv[0] == "chat" else []
    done = subprocess.run([sys.executable, "-c", EXIT_PROBE, *argv, *out], capture_output=True, text=True,
                          env={**__import__("os").environ, "OMP_NUM_THREADS": "1"}, timeout=300)
    assert done.returncode == status, done.stderr[-2000:]
    assert "atexit ran" in done.stdout
    assert ("teardown ran" in done.stdout) is not fast
    if status == 0 and fast:
        assert done.stdout.startswith("assistant:")
    if status == 2:
        assert done.stderr.startswith("anygpt chat: argument --seed")
