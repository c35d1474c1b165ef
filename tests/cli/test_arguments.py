"""Shared argument types: a bad number is refused by argparse before any work starts."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from bafenet.cli import main
from bafenet.cli.arguments import int_at_least


def test_int_at_least_takes_integers_from_the_minimum() -> None:
    parse = int_at_least(32)
    assert parse("32") == 32 and parse("512") == 512
    for bad in ("31", "-1", "x", "1.5", ""):
        with pytest.raises(argparse.ArgumentTypeError, match=f"expected an integer >= 32, got {bad!r}"):
            parse(bad)


@pytest.mark.parametrize(
    ("argv", "flag"),
    [
        (["demo", "--epochs", "0"], "--epochs"),
        (["demo", "--n", "-2"], "--n"),
        (["demo", "--threads", "two"], "--threads"),
        (["predict", "--weights", "w.pt", "--batch-size", "0", "frames"], "--batch-size"),
        (["val", "--weights", "w.pt", "--batch-size", "x"], "--batch-size"),
        (["info", "--model", "bafenet_hr", "--size", "16"], "--size"),
    ],
)
def test_a_bad_number_stops_before_any_output(
    argv: list[str], flag: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as stop:
        main([*argv, "--out", str(out)] if argv[0] in ("demo", "predict", "val") else argv)
    assert stop.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert f"argument {flag}: expected an integer >= " in last and "Traceback" not in last
    assert not out.exists()
