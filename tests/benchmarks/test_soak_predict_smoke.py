"""benchmarks/soak_predict.py: the verdict rule, a --smoke soak written as record and table,
resuming, and a run too short for its warm-up."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))

import soak_predict as sp  # noqa: E402
from bafenet.engine.allocator import allocator_setting, can_trim, fix_mmap_threshold  # noqa: E402
from deploy_speed import Checkpoint  # noqa: E402


def test_verdict_allows_five_percent_or_twenty_mib_whichever_is_more() -> None:
    assert sp.verdict(1000.0, 1049.0) == {"growth_mib": 49.0, "allowed_mib": 50.0, "no_growth": True}
    assert sp.verdict(1000.0, 1050.0)["no_growth"] is False  # at the limit: growth
    assert sp.verdict(100.0, 119.0) == {"growth_mib": 19.0, "allowed_mib": 20.0, "no_growth": True}
    assert sp.verdict(100.0, 121.0)["no_growth"] is False
    assert sp.verdict(500.0, 450.0)["no_growth"] is True  # memory given back


def _main(argv: list[str]) -> int:
    threads = torch.get_num_threads()
    try:
        return sp.main(argv)
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(work, results) of one ``--smoke`` soak."""
    work = tmp_path_factory.mktemp("soak") / "work"
    out = work.parent / "results"
    assert _main(["--smoke", "--work", str(work), "--out", str(out)]) == 0
    return work, out


def test_smoke_soak_samples_memory_and_states_the_verdict(smoke) -> None:
    work, out = smoke
    records = json.loads((out / "soak_predict.json").read_text())
    ckpt = Checkpoint.of(work / "tiny_fcos_hr.pt")
    tag = "fixed-mmap-threshold" if fix_mmap_threshold() else "default-allocator"
    tag += "+heap-trim-32mib" if can_trim() else ""
    key = f"{ckpt.key}/torch/n12/{tag}"
    assert list(records) == [key]
    r = records[key]
    assert r["allocator"] == allocator_setting()
    assert r["key"] == key and r["smoke"] is True and r["backend"] == "torch"
    assert r["frames"]["count"] == 2 and r["warmup_calls"] == 2  # one pass over the val_v2 frames
    assert [(s["calls"], s["at"]) for s in r["samples"]] == [
        (0, "start"),
        (2, "after warm-up"),
        (4, "periodic"),
        (8, "periodic"),
        (12, "periodic, end"),
    ]
    assert r["detections"] == 12 * 100  # every call detected (the tiny model keeps its 100 best)
    assert r["calls_per_s"] == pytest.approx(12 / r["seconds"])
    after, end = r["samples"][1]["rss_mib"], r["samples"][-1]["rss_mib"]
    assert {k: r[k] for k in ("growth_mib", "allowed_mib", "no_growth")} == sp.verdict(after, end)
    # the kernel syncs its per-thread RSS counters lazily: the two readings may differ a little
    assert r["peak_rss_mib"] >= max(s["rss_mib"] for s in r["samples"]) - 1 > 0
    assert r["rule"] == sp.RULE and r["machine"]["threads"] == 1

    text = (out / "soak_predict.md").read_text()
    assert "**Smoke run**" in text and f"Verdict rule: {sp.RULE}." in text and f"## {key}" in text
    for s in r["samples"]:
        assert f"| {s['calls']} | {s['at']} | {s['rss_mib']:.1f} |" in text
    outcome = "no growth beyond noise" if r["no_growth"] else "**memory grew beyond noise**"
    assert f"Verdict: {outcome}: {r['growth_mib']:+.1f} MiB" in text


def test_a_finished_soak_is_skipped(smoke, monkeypatch: pytest.MonkeyPatch) -> None:
    work, out = smoke
    before = (out / "soak_predict.json").read_text()

    def no_soak(*args, **kwargs):
        raise AssertionError("a finished soak ran again")

    monkeypatch.setattr(sp, "soak", no_soak)
    assert _main(["--smoke", "--work", str(work), "--out", str(out)]) == 0
    assert (out / "soak_predict.json").read_text() == before


def test_fewer_calls_than_the_warm_up_is_one_error_line(smoke, tmp_path, capsys) -> None:
    work, _ = smoke
    argv = ["--data", str(work / "devkit"), "--weights", str(work / "tiny_fcos_hr.pt"), "--n", "2"]
    assert _main([*argv, "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err == "soak_predict: error: --n 2 leaves nothing after the warm-up (one pass over 2 frames)\n"
    assert list(tmp_path.iterdir()) == []
