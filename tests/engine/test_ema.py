"""engine/ema.py and ``train.ema_decay``: the averaged weights are the ones evaluated and saved,
and a resumed run continues the same average."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from tiny_training import TINY_RECIPE
from torch import nn

from bafenet.cli.train import resolve_config
from bafenet.config import ConfigError, load_config
from bafenet.data.synthetic import write_synthetic_devkit
from bafenet.engine.checkpoint import load_checkpoint
from bafenet.engine.ema import build_ema, ramped_decay
from bafenet.engine.trainer import Trainer, train


def test_the_decay_ramps_up_then_stays_at_its_cap() -> None:
    assert ramped_decay(0.999, 0) == pytest.approx(0.1)
    assert ramped_decay(0.999, 90) == pytest.approx(0.91)
    assert ramped_decay(0.999, 10**6) == 0.999


def test_an_update_moves_floats_by_one_minus_the_decay_and_copies_integer_buffers() -> None:
    model = nn.BatchNorm1d(2)
    with torch.no_grad():
        model.weight.fill_(1.0)
    ema = build_ema(model, decay=0.5)
    ema.update_parameters(model)  # the first update copies
    with torch.no_grad():
        model.weight.fill_(3.0)
    model.num_batches_tracked.fill_(7)
    ema.update_parameters(model)  # second update (n = 1): decay min(0.5, 2 / 11)
    weight = 1.0 - 2.0 / 11.0
    assert torch.allclose(ema.module.weight, torch.full((2,), 1.0 + 2.0 * weight))
    assert int(ema.module.num_batches_tracked) == 7 and int(ema.n_averaged) == 2
    with pytest.raises(ValueError, match="ema_decay"):
        build_ema(model, decay=1.0)


@pytest.fixture(scope="module")
def devkit(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic_devkit(tmp_path_factory.mktemp("ema") / "devkit", n=10, seed=3, sizes=((96, 80),))


def _cfg(devkit: Path, *extra: str):
    return load_config(
        resolve_config(TINY_RECIPE[0]), [*TINY_RECIPE[1:], f"data.root={devkit}", "data.repeat=1", *extra]
    )


def test_the_average_is_evaluated_and_saved_and_a_resume_continues_it(devkit: Path, tmp_path: Path) -> None:
    whole = _cfg(devkit, "train.epochs=2", "train.ema_decay=0.999")
    train(whole, tmp_path / "whole", progress=False)
    last = load_checkpoint(tmp_path / "whole" / "last.pt")
    best = load_checkpoint(tmp_path / "whole" / "best.pt")
    assert last["metadata"]["ema_updates"] == last["metadata"]["global_step"] > 0
    assert "train_model" in last and "train_model" not in best
    differs = [
        k
        for k, v in last["model"].items()
        if v.is_floating_point() and not torch.equal(v, last["train_model"][k])
    ]
    assert differs, "the saved weights are the optimised ones, not their average"

    # the metrics of the run are those of the averaged weights
    trainer = Trainer(whole, tmp_path / "check", resume=tmp_path / "whole" / "last.pt", progress=False)
    trainer.logger.close()
    trainer.validate(keep_predictions=False)
    assert trainer.state.metrics["mAP07"] == pytest.approx(last["metadata"]["metrics"]["mAP07"])

    # one epoch, then resumed for the second: the same average and the same optimised weights
    train(_cfg(devkit, "train.epochs=1", "train.ema_decay=0.999"), tmp_path / "cut", progress=False)
    train(whole, tmp_path / "cut", resume=tmp_path / "cut" / "last.pt", progress=False)
    resumed = load_checkpoint(tmp_path / "cut" / "last.pt")
    for entry in ("model", "train_model"):
        assert all(torch.equal(last[entry][k], resumed[entry][k]) for k in last[entry]), entry


def test_resuming_a_run_without_the_average_with_it_is_refused(devkit: Path, tmp_path: Path) -> None:
    train(_cfg(devkit, "train.epochs=1"), tmp_path / "plain", progress=False)
    with pytest.raises(Exception, match="train.ema_decay") as caught:
        Trainer(
            _cfg(devkit, "train.epochs=2", "train.ema_decay=0.99"),
            tmp_path / "x",
            resume=tmp_path / "plain" / "last.pt",
        )
    assert str(tmp_path / "plain" / "last.pt") in str(caught.value)
    with pytest.raises(ConfigError, match="train.ema_decay"):
        _cfg(devkit, "train.ema_decay=1.5")
