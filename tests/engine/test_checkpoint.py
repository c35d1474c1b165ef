"""Checkpoints: weights-only loading, model-name check, corrupt files, RNG states, fp16 export."""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from bafenet.config import config_to_dict, load_config
from bafenet.engine.checkpoint import (
    capture_rng_states,
    check_weights_only_safe,
    load_checkpoint,
    load_weights,
    restore_rng_states,
    save_checkpoint,
)
from bafenet.engine.optim import build_optimizer, build_scheduler
from bafenet.errors import BafenetError, DataError


def _model() -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.LazyLinear(2))


def _trained() -> tuple[nn.Module, torch.optim.Optimizer, object]:
    torch.manual_seed(0)
    model = _model()
    model(torch.randn(2, 1, 5, 5))  # materialise the lazy layer
    cfg = load_config()
    optimizer = build_optimizer(model, cfg.train)
    scheduler = build_scheduler(optimizer, cfg.train, iters_per_epoch=3)
    for _ in range(2):
        optimizer.zero_grad()
        model(torch.randn(2, 1, 5, 5)).sum().backward()
        optimizer.step()
        scheduler.step()
    return model, optimizer, scheduler


def test_round_trip_with_training_state(tmp_path: Path) -> None:
    model, optimizer, scheduler = _trained()
    path = save_checkpoint(
        tmp_path / "last.pt",
        model,
        "bafenet_r18",
        config_to_dict(load_config()),
        optimizer=optimizer,
        scheduler=scheduler,
        epoch=4,
        metadata={"best_mAP07": 0.25, "step": 12, "sampler": np.random.default_rng(1).bit_generator.state},
        rng_states=capture_rng_states(),
    )
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # no temporary left
    torch.load(path, weights_only=True)  # the guarantee itself
    checkpoint = load_checkpoint(path, expected_model="bafenet_r18")
    assert checkpoint["epoch"] == 4 and checkpoint["metadata"]["best_mAP07"] == 0.25
    assert checkpoint["config"]["train"]["epochs"] == 20
    fresh = _model()
    fresh(torch.randn(1, 1, 5, 5))
    load_weights(fresh, checkpoint)
    for key, value in model.state_dict().items():
        assert torch.equal(fresh.state_dict()[key], value)
    assert checkpoint["optimizer"]["param_groups"][0]["d"] == optimizer.param_groups[0]["d"]
    assert checkpoint["scheduler"]["last_epoch"] == 2
    generator = np.random.Generator(np.random.PCG64())
    generator.bit_generator.state = checkpoint["metadata"]["sampler"]
    assert generator.random() == np.random.default_rng(1).random()


def test_wrong_model_name_says_so(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path / "x.pt", nn.Linear(2, 2), "fcos_r18", {})
    with pytest.raises(BafenetError, match=r"checkpoint .*x\.pt holds fcos_r18, not bafenet_r18"):
        load_checkpoint(path, expected_model="bafenet_r18")


def test_missing_corrupt_and_foreign_files(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="missing.pt: checkpoint file not found"):
        load_checkpoint(tmp_path / "missing.pt")
    truncated = tmp_path / "truncated.pt"
    save_checkpoint(truncated, nn.Linear(2, 2), "fcos_r18", {})
    truncated.write_bytes(truncated.read_bytes()[:100])
    with pytest.raises(DataError, match="truncated.pt: not a readable checkpoint"):
        load_checkpoint(truncated)
    garbage = tmp_path / "garbage.pt"
    garbage.write_text("not a checkpoint")
    with pytest.raises(DataError, match="garbage.pt: not a readable checkpoint"):
        load_checkpoint(garbage)
    plain = tmp_path / "plain.pt"
    torch.save(nn.Linear(2, 2).state_dict(), plain)
    with pytest.raises(DataError, match="plain.pt: not a bafenet checkpoint"):
        load_checkpoint(plain)


def test_unsafe_values_are_refused_before_writing(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"\['metadata'\]\['where'\] is a PosixPath"):
        save_checkpoint(tmp_path / "x.pt", nn.Linear(2, 2), "m", {}, metadata={"where": tmp_path})
    assert not (tmp_path / "x.pt").exists()
    check_weights_only_safe({"a": [1, 2.0, (None, "s")], "t": torch.zeros(2)})


def test_half_export_is_smaller_and_loads_into_float32(tmp_path: Path) -> None:
    model = nn.Sequential(nn.Linear(64, 64), nn.BatchNorm1d(64))
    full = save_checkpoint(tmp_path / "full.pt", model, "m", {})
    half = save_checkpoint(tmp_path / "half.pt", model, "m", {}, half=True)
    assert half.stat().st_size < 0.7 * full.stat().st_size
    checkpoint = load_checkpoint(half)
    assert checkpoint["weights_dtype"] == "float16"
    assert checkpoint["model"]["1.num_batches_tracked"].dtype == torch.int64
    fresh = nn.Sequential(nn.Linear(64, 64), nn.BatchNorm1d(64))
    load_weights(fresh, checkpoint)
    assert fresh[0].weight.dtype == torch.float32
    torch.testing.assert_close(fresh[0].weight, model[0].weight, atol=1e-3, rtol=1e-3)
    with pytest.raises(ValueError, match="weights only"):
        save_checkpoint(
            tmp_path / "bad.pt", model, "m", {}, optimizer=torch.optim.SGD(model.parameters()), half=True
        )


def test_load_weights_mismatch_is_clear(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path / "x.pt", nn.Linear(2, 2), "fcos_r18", {})
    with pytest.raises(BafenetError, match="do not fit the model"):
        load_weights(nn.Linear(3, 2), load_checkpoint(path))


def test_rng_states_round_trip_through_a_checkpoint(tmp_path: Path) -> None:
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    random.random(), np.random.normal(), torch.rand(1)  # advance, leave a cached gaussian
    path = save_checkpoint(tmp_path / "x.pt", nn.Linear(2, 2), "m", {}, rng_states=capture_rng_states())
    expected = (random.random(), np.random.normal(), np.random.rand(), torch.rand(3))
    random.seed(99)
    np.random.seed(99)
    torch.manual_seed(99)
    restore_rng_states(load_checkpoint(path)["rng_states"])
    got = (random.random(), np.random.normal(), np.random.rand(), torch.rand(3))
    assert got[:3] == expected[:3]
    assert torch.equal(got[3], expected[3])


def test_ddp_like_wrapper_is_unwrapped(tmp_path: Path) -> None:
    inner = nn.Linear(2, 2)
    wrapper = nn.Module()
    wrapper.module = inner
    checkpoint = load_checkpoint(save_checkpoint(tmp_path / "x.pt", wrapper, "m", {}))
    assert set(checkpoint["model"]) == {"weight", "bias"}


class _Payload:
    """Unpickling this creates ``marker``: the test asserts that it never happens."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (os.makedirs, (str(self.marker),))


def test_a_pickle_with_code_is_refused_without_unsafe_advice(tmp_path: Path) -> None:
    marker = tmp_path / "payload-ran"
    hostile = tmp_path / "hostile.pt"
    torch.save({"format": "bafenet-checkpoint", "model": _Payload(marker)}, hostile)
    with pytest.raises(DataError) as info:
        load_checkpoint(hostile)
    message = str(info.value)
    assert message.startswith(f"{hostile}: not loaded: it holds Python objects (")
    assert "that a weights-only load refuses" in message
    assert "weights_only" not in message and "succeed" not in message and "\n" not in message
    assert not marker.exists()


def test_corrupt_files_get_one_line_without_unsafe_advice(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(DataError) as info:
        load_checkpoint(garbage)
    assert str(info.value).startswith(f"{garbage}: not a readable checkpoint (")
    assert "weights_only" not in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("entry", "value"), [("config", None), ("model", None), ("model_name", None), ("config", [1])]
)
def test_missing_or_mistyped_entries_name_the_file(tmp_path: Path, entry: str, value: object) -> None:
    checkpoint = load_checkpoint(save_checkpoint(tmp_path / "x.pt", nn.Linear(2, 2), "m", {"a": 1}))
    if value is None:
        del checkpoint[entry]
    else:
        checkpoint[entry] = value
    torch.save(checkpoint, tmp_path / "bad.pt")
    expected = f"has no '{entry}' entry" if value is None else f"entry '{entry}' is a list, not a dict"
    with pytest.raises(DataError, match=rf"bad\.pt: checkpoint {expected}$"):
        load_checkpoint(tmp_path / "bad.pt")


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_weights_are_refused_at_load(tmp_path: Path, bad: float) -> None:
    model = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2))
    with torch.no_grad():
        model[1].bias[1] = bad
    path = save_checkpoint(tmp_path / "broken.pt", model, "m", {}, half=True)
    with pytest.raises(DataError, match=r"broken\.pt: weight '1\.bias' holds NaN or infinite values"):
        load_checkpoint(path)


def test_weights_that_do_not_fit_name_the_file(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path / "x.pt", nn.Linear(2, 2), "fcos_r18", {})
    with pytest.raises(DataError) as info:
        load_weights(nn.Linear(3, 2), load_checkpoint(path), path=path)
    assert str(info.value) == (
        f"{path}: weights of fcos_r18 do not fit the model (wrong shape: weight [2, 2] instead of [2, 3])"
    )
    with pytest.raises(
        DataError, match=r"x\.pt: .*\(missing: 2\.weight, 2\.bias; unexpected: weight, bias\)"
    ):
        load_weights(nn.Sequential(nn.ReLU(), nn.ReLU(), nn.Linear(2, 2)), load_checkpoint(path), path=path)
