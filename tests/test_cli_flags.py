"""anygpt.cli_flags: range-checked numbers, KEY=VALUE lists, the parser's error form, threads."""

import argparse

import pytest
import torch

from anygpt import cli_flags
from anygpt.cli_flags import Number, key_values
from anygpt.errors import UsageError


@pytest.mark.parametrize("text", ["nan", "inf", "-inf"])
def test_number_refuses_nan_and_infinity(text):
    with pytest.raises(argparse.ArgumentTypeError, match="not NaN or infinite"):
        Number(float)(text)


def test_number_bounds_and_messages():
    assert cli_flags.fraction("0.25") == 0.25
    assert cli_flags.port_int("65535") == 65535
    with pytest.raises(argparse.ArgumentTypeError, match=r"-1 is not allowed; it must be a whole number >= 0"):
        cli_flags.count_or_zero("-1")
    with pytest.raises(argparse.ArgumentTypeError, match=r"it must be a number >= 0 and <= 1"):
        cli_flags.fraction("1.5")
    with pytest.raises(argparse.ArgumentTypeError, match=r"'1.5' is not a whole number"):
        cli_flags.positive_int("1.5")
    with pytest.raises(argparse.ArgumentTypeError, match="a number > 0"):
        cli_flags.positive_float("0")


def test_number_check_on_json_values():
    assert cli_flags.positive_int.check(3.0, "cfg: n") == 3
    assert cli_flags.positive_float.check(2, "cfg: lr") == 2.0
    for bad in (True, "3", [3], 2.5):
        with pytest.raises(ValueError, match="cfg: n: .* is not a whole number >= 1"):
            cli_flags.positive_int.check(bad, "cfg: n")
    with pytest.raises(ValueError, match="cfg: p: 65536 is not allowed"):
        cli_flags.port_int.check(65536, "cfg: p")


def test_key_values():
    assert key_values(["a=1", "b=x=y", "c="], "--opt") == {"a": "1", "b": "x=y", "c": ""}
    assert key_values(None, "--opt") == {}
    for bad in ("novalue", "=v"):
        with pytest.raises(UsageError, match=f"--opt '{bad}': expected KEY=VALUE"):
            key_values([bad], "--opt")


def test_parser_error_is_one_line_with_exit_2(capsys):
    p = cli_flags.parser("anygpt demo", "a demo", "anygpt demo --parts 2")
    cli_flags.add_parts(p)
    assert vars(p.parse_args(["--part", "1", "--parts", "2"])) == {"part": 1, "parts": 2}
    with pytest.raises(SystemExit) as e:
        p.parse_args(["--part", "2", "--parts", "2"])
    assert e.value.code == 2
    assert capsys.readouterr().err == ("anygpt demo: argument --part: 2 is not a part of --parts 2 (0..1) "
                                       "(see anygpt demo --help)\n")
    assert p.epilog == "example:\n  anygpt demo --parts 2"


def test_workers_or_cores_and_set_threads():
    assert cli_flags.workers_or_cores(0) == 0
    assert cli_flags.workers_or_cores(None) == cli_flags.cores() >= 1
    before = torch.get_num_threads()
    try:
        cli_flags.set_threads(2)
        assert torch.get_num_threads() == 2
        cli_flags.set_threads(None)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
