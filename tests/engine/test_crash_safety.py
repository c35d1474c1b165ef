"""A training run killed with SIGKILL at several moments, and resumed each time.

Every kill is triggered by an event the run makes visible in its folder (the first
``last.pt``, a new row of ``epochs.csv``, the temporary file of a ``last.pt`` being saved),
never by a sleep. Whether the kill lands before or after the moment that the event
announces depends on timing, so both outcomes are accepted; what must always hold is that
the run folder holds a loadable checkpoint of a whole epoch, and that the resumed run ends
with the same weights, logs and summary as a run that was never interrupted.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from tiny_training import TINY_RECIPE, train_env

from bafenet.data.synthetic import write_synthetic_devkit
from bafenet.engine.checkpoint import load_checkpoint

EPOCHS = 4
TINY = [*TINY_RECIPE, "data.repeat=1", f"train.epochs={EPOCHS}"]
DEADLINE_S = 300.0  # a safety net only: every wait ends on an event


def _start(args: list[str], log: Path) -> subprocess.Popen:
    with open(log, "ab") as fh:  # the child keeps its own handle
        return subprocess.Popen(
            [sys.executable, "-m", "bafenet", "train", *args, "--no-progress"],
            env=train_env(),
            stdout=fh,
            stderr=subprocess.STDOUT,
        )


def _run(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "bafenet", "train", *args, "--no-progress"],
        env=train_env(),
        capture_output=True,
        text=True,
        timeout=DEADLINE_S,
    )


def _kill_when(proc: subprocess.Popen, event: Callable[[], bool], log: Path) -> bool:
    """SIGKILL ``proc`` as soon as ``event()`` holds; False when the run finished first."""
    deadline = time.monotonic() + DEADLINE_S
    while proc.poll() is None:
        if event():
            proc.kill()
            proc.wait()
            return True
        if time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            pytest.fail(f"no event within {DEADLINE_S:.0f} s:\n{log.read_text()[-2000:]}")
        time.sleep(0.002)
    assert proc.returncode == 0, log.read_text()[-2000:]
    return False


def _rows(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _saved_epoch(run: Path) -> int:
    """The epoch of the run's ``last.pt``, which must load; also checks ``best.pt``."""
    checkpoint = load_checkpoint(run / "last.pt", expected_model="fcos_r18")
    assert checkpoint["optimizer"] is not None and checkpoint["rng_states"] is not None
    if (run / "best.pt").exists():
        assert load_checkpoint(run / "best.pt")["epoch"] <= checkpoint["epoch"]
    return int(checkpoint["epoch"])


def _new_last_temp(run: Path) -> Callable[[], bool]:
    """An event: a ``last.pt`` save has started (a temporary file not there before)."""
    before = set(run.glob(".last.*.tmp.pt"))
    return lambda: bool(set(run.glob(".last.*.tmp.pt")) - before)


def test_sigkill_at_any_moment_then_resume_matches_uninterrupted_run(tmp_path: Path) -> None:
    devkit = write_synthetic_devkit(tmp_path / "devkit", n=10, seed=3, sizes=((96, 80), (112, 96)))
    common = [*TINY, f"data.root={devkit}", "--project", str(tmp_path)]
    reference = _run([*common, "--name", "ref"])
    assert reference.returncode == 0, reference.stderr[-2000:]

    run, log = tmp_path / "cut", tmp_path / "cut.log"
    last = run / "last.pt"
    resume = ["--resume", str(last)]
    # 1. in the epoch after the first checkpoint (or later)
    _kill_when(_start([*common, "--name", "cut"], log), last.exists, log)
    epoch = _saved_epoch(run)
    assert epoch >= 1

    # 2. right after the next epoch's row is logged, when its checkpoint may not exist yet
    _kill_when(_start(resume, log), lambda: len(_rows(run / "epochs.csv")) > epoch, log)
    assert _saved_epoch(run) >= epoch
    epoch = _saved_epoch(run)

    # 3. while last.pt is being saved: the old or the new file survives, never a torn one
    _kill_when(_start(resume, log), _new_last_temp(run), log)
    assert _saved_epoch(run) >= epoch

    # stale temporary files of killed writes are removed on resume; nothing else is
    (run / ".last.zz00zz00.tmp.pt").write_bytes(b"torn")
    (run / ".summary.ab12cd34.tmp.json").write_text("{")
    (run / "notes.txt").write_text("mine")
    finish = _run(resume)
    assert finish.returncode == 0, finish.stderr[-2000:]
    assert not list(run.glob(".*.tmp.*")) and (run / "notes.txt").read_text() == "mine"

    ref = tmp_path / "ref"
    a, b = load_checkpoint(ref / "last.pt"), load_checkpoint(last)
    assert b["epoch"] == EPOCHS and a["model"].keys() == b["model"].keys()
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    assert b["metadata"]["global_step"] == a["metadata"]["global_step"]

    # every epoch logged exactly once, with the uninterrupted run's values
    assert [r["epoch"] for r in _rows(run / "epochs.csv")] == [str(e) for e in range(1, EPOCHS + 1)]
    assert _rows(run / "epochs.csv") == _rows(ref / "epochs.csv")
    deterministic = ("step", "loss", "loss_cls", "loss_box", "loss_centerness", "lr")
    ref_iters = [{k: r[k] for k in deterministic} for r in _rows(ref / "iters.csv")]
    assert [{k: r[k] for k in deterministic} for r in _rows(run / "iters.csv")] == ref_iters
    summary, ref_summary = (json.loads((d / "summary.json").read_text()) for d in (run, ref))
    assert summary["epochs_done"] == EPOCHS
    assert summary["images_seen"] == ref_summary["images_seen"]
    assert summary["last_metrics"] == ref_summary["last_metrics"]
