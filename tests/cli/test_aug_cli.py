"""``bafenet aug preview`` and ``bafenet aug stats`` on a small synthetic devkit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from bafenet.cli import main
from bafenet.data.synthetic import write_synthetic_devkit


@pytest.fixture(scope="module")
def devkit(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic_devkit(tmp_path_factory.mktemp("synth") / "devkit", n=8, seed=0)


def test_preview_writes_panels_and_json(devkit: Path, tmp_path: Path) -> None:
    out = tmp_path / "preview"
    code = main(
        ["aug", "preview", str(devkit), "--split", "train", "--n", "3", "--size", "128", "--out", str(out)]
    )
    assert code == 0
    report = json.loads((out / "preview.json").read_text())
    assert report["mode"] == "faithful" and len(report["images"]) == 3
    total = 0
    for entry in report["images"]:
        with Image.open(out / entry["panel"]) as panel:
            assert panel.mode == "RGB" and panel.width >= 2 * 128
        for pasted in entry["pasted"]:
            assert {"box", "size", "source_id", "lam", "peak_contrast", "in_window"} <= set(pasted)
            assert 0.5 <= pasted["lam"] <= 1.0
            total += 1
    assert total > 0
    again = tmp_path / "again"
    main(
        ["aug", "preview", str(devkit), "--split", "train", "--n", "3", "--size", "128", "--out", str(again)]
    )
    assert json.loads((again / "preview.json").read_text()) == report  # same seed, same output


def test_stats_writes_report_with_ks_distances(devkit: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "stats"
    code = main(
        ["aug", "stats", "--data", str(devkit), "--split", "train", "--size", "128", "--out", str(out)]
    )
    assert code == 0
    summary = json.loads((out / "realism.json").read_text())
    assert summary["images"] == 6 and summary["real"]["targets"] > 0
    assert set(summary["modes"]) == {"faithful", "improved", "plain"}
    for mode in summary["modes"].values():
        for q in ("box_side", "peak_contrast", "nearest_gap", "cluster_size"):
            if mode["ks"][q] is not None:
                assert 0.0 <= mode["ks"][q]["statistic"] <= 1.0
    assert (out / "realism.png").stat().st_size > 0
    assert "| quantity | real |" in (out / "realism.md").read_text()
    assert "faithful:" in capsys.readouterr().out


def test_bad_input_is_one_clear_error(tmp_path: Path, capsys, devkit: Path) -> None:
    assert main(["aug", "preview", str(tmp_path / "missing"), "--out", str(tmp_path / "o")]) == 1
    assert "missing" in capsys.readouterr().err
    assert main(["aug", "preview", str(devkit), "--n", "0", "--out", str(tmp_path / "o")]) == 1
    assert "--n" in capsys.readouterr().err
    assert main(["aug", "stats", str(devkit), "--split", "nosuchsplit", "--out", str(tmp_path / "s")]) == 1
    assert "nosuchsplit" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize("verb", ["preview", "stats"])
def test_repeated_split_entry_is_one_clear_error(devkit: Path, tmp_path: Path, capsys, verb: str) -> None:
    first = sorted(p.stem for p in (devkit / "PNGImages").glob("*.png"))[0]
    split = tmp_path / "dup.txt"
    split.write_text(f"{first}\n{first}\n")
    out = tmp_path / "out"
    assert main(["aug", verb, str(devkit), "--split", str(split), "--size", "64", "--out", str(out)]) == 1
    captured = capsys.readouterr()
    assert captured.err.splitlines() == [f"bafenet: error: {split}: {first!r} is listed more than once"]
    assert "Traceback" not in captured.out + captured.err and not out.exists()
