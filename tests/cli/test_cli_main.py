"""``bafenet.cli.main``: an error line is never glued onto a progress bar."""

from __future__ import annotations

from pathlib import Path

import torch

from bafenet.cli import main
from bafenet.config import config_to_dict, load_config
from bafenet.data.synthetic import write_synthetic_devkit
from bafenet.engine.checkpoint import save_checkpoint
from bafenet.engine.setup import build_model_from_config


def terminal_lines(text: str) -> list[str]:
    """What a terminal shows for ``text``: ``\\r`` returns to the line start, later text overwrites."""
    lines = []
    for raw in text.split("\n"):
        shown = ""
        for part in raw.split("\r"):
            shown = part + shown[len(part) :]
        lines.append(shown)
    return lines


def test_terminal_lines() -> None:
    assert terminal_lines("abcdef\rXY\nz") == ["XYcdef", "z"]
    assert terminal_lines("bar 50%\r       \rbafenet: error: x\n") == ["bafenet: error: x", ""]


def test_error_during_a_progress_bar_gets_a_line_of_its_own(tmp_path: Path, capsys) -> None:
    """``val`` fails on a truncated frame while a progress bar (reading the split) is open."""
    devkit = write_synthetic_devkit(tmp_path / "devkit", n=2, seed=0, sizes=((96, 80),))
    image = devkit / "PNGImages" / "synth_0000.png"
    image.write_bytes(image.read_bytes()[:100])
    split = tmp_path / "one.txt"
    split.write_text("synth_0000\n")
    cfg = load_config(None, ["model.name=fcos_hr", "model.weights_backbone=null"])
    torch.manual_seed(0)
    weights = save_checkpoint(
        tmp_path / "w.pt", build_model_from_config(cfg), cfg.model.name, config_to_dict(cfg)
    )

    code = main(["val", "--weights", str(weights), "--data", str(devkit), "--split", str(split)])
    err = capsys.readouterr().err
    assert code == 1
    assert "| 0/1 [" in err, err  # the bar was drawn before the error
    expected = f"bafenet: error: {image}: cannot decode image (image file is truncated)"
    assert any(line.startswith(expected) for line in terminal_lines(err)), err
