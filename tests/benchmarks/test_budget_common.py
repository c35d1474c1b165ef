"""benchmarks/budget_common.py: calibration, budget, the tables (sky gate: tests/engine/test_sky_gate.py)."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from bafenet.cli.train import PACKAGED_CONFIGS
from bafenet.config import load_config

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))

import budget_common as bc  # noqa: E402


# ------------------------------------------------------------------------------ calibration
class CountingModel(nn.Module):
    """Stands in for the reference detector: counts calls and the threads each one saw."""

    def __init__(self) -> None:
        super().__init__()
        self.threads: list[int] = []
        self.inputs = None

    def forward(self, inputs):
        self.threads.append(torch.get_num_threads())
        self.inputs = inputs
        return inputs


def test_forward_times_warm_up_on_the_given_threads_and_restore_them() -> None:
    model = CountingModel()
    before = torch.get_num_threads()
    times = bc.forward_times_ms(model, [torch.zeros(1)], reps=3, threads=2)
    assert len(model.threads) == 4 and set(model.threads) == {2}  # one warm-up + 3 timed calls
    assert torch.get_num_threads() == before
    assert len(times) == 3 and min(times) >= 0.0 and not model.training


def test_calibrate_times_the_reference_detector(monkeypatch: pytest.MonkeyPatch) -> None:
    built = {}
    stand_in = CountingModel()

    def fake_fcos(**kwargs):
        built.update(kwargs)
        return stand_in

    monkeypatch.setattr(bc, "fcos_resnet50_fpn", fake_fcos)
    result = bc.calibrate(reps=2)
    assert built == {
        "weights": None,
        "weights_backbone": None,
        "num_classes": 2,
        "min_size": 512,
        "max_size": 512,
    }
    (image,) = stand_in.inputs
    assert image.shape == (3, 512, 512)  # batch 1, 512 x 512
    assert stand_in.threads == [2, 2, 2]
    assert result["reps"] == 2 and result["threads"] == 2
    assert 0.0 <= result["ms_min"] <= result["ms"] <= result["ms_max"]
    assert result["cpu_model"] == bc.cpu_model() and "fcos_resnet50_fpn" in result["spec"]


def test_budget_is_normalised_to_the_reference_cpu() -> None:
    assert bc.budget_minutes(40.0, 638.0) == 40.0
    assert bc.budget_minutes(40.0, 361.0) == pytest.approx(22.63, abs=0.01)  # faster CPU: fewer minutes
    budget = bc.Budget(bc.budget_minutes(40.0, 319.0), {"ms": 319.0}, reference_minutes=40.0)
    assert budget.record() == {
        "minutes": 20.0,
        "reference_minutes": 40.0,
        "reference_ms": 638.0,
        "calibration_ms": 319.0,
        "rule": "40 min x 319 / 638 ms",
    }
    given = bc.Budget(10.0, {"ms": 319.0}).record()
    assert (
        given["minutes"] == 10.0
        and given["reference_minutes"] is None
        and given["rule"] == "given (--minutes)"
    )


def test_cpu_model_reads_cpuinfo_and_falls_back(tmp_path: Path) -> None:
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nvendor_id\t: X\nmodel name\t: Some CPU @ 2.00GHz\n")
    assert bc.cpu_model(info) == "Some CPU @ 2.00GHz"
    fallback = bc.cpu_model(tmp_path / "missing")
    assert fallback and fallback != "Some CPU @ 2.00GHz"


# ------------------------------------------------------------------------------ tables
def _record(run: str, config: str, seed: int, map07: float, cpu: str | None, gate_map07=None) -> dict:
    record = {
        "run": run,
        "config": config,
        "what": f"what {config}",
        "seed": seed,
        "minutes": 22.6,
        "images_seen": 1000 + seed,
        "images_per_s": 1.0,
        "frame_1280x1024_s": 0.5,
        "metrics": {
            "mAP07": map07,
            "mAP12": map07 + 0.05,
            "strict_mAP07": map07 - 0.05,
            "sky_iou": 0.8,
            "irstd_fa_per_mpix_at_pd_0.85": 2.0 + seed,
            "irstd_fa_off_sky_share_at_best_f1": 0.8,
        },
    }
    if cpu is None:
        record.update(cpu="x86_64", minutes=40.0)
    else:
        record.update(
            cpu_model=cpu,
            calibration={"ms": 360.0 + seed},
            budget={"minutes": 22.6, "reference_minutes": 40.0, "reference_ms": 638.0},
        )
    if gate_map07 is not None:
        record["gate"] = {
            "threshold": 0.2 + 0.1 * seed,
            "metrics": {"mAP07": gate_map07, "irstd_fa_off_sky_share_at_best_f1": 0.5},
        }
    return record


def test_report_groups_seeds_and_keeps_cpus_apart() -> None:
    records = {
        "fcos_hr_s0": _record("fcos_hr_s0", "fcos_hr", 0, 0.70, "CPU A"),
        "fcos_hr_s1": _record("fcos_hr_s1", "fcos_hr", 1, 0.80, "CPU A"),
        "sky_s0": _record("sky_s0", "sky", 0, 0.75, "CPU A", gate_map07=0.85),
        "sky_s1": _record("sky_s1", "sky", 1, 0.77, "CPU A", gate_map07=0.87),
        "fcos_hr": _record("fcos_hr", "fcos_hr", 0, 0.60, None),
    }
    text = "\n".join(bc.report_lines(records))
    assert "separate tables" in text
    section_a, section_old = text.split("## CPU: CPU A")[1].split("## CPU: not recorded (x86_64)")
    assert "360-361 ms over 4 of 4 records" in section_a
    assert "No calibration recorded; 40.0 minutes" in section_old
    rows = {line.split(" | ")[0]: line for line in section_a.splitlines() if line.startswith("| ")}
    assert "| fcos_hr | what fcos_hr | 40 min at 638 ms | 0, 1 | 0.750 (0.700-0.800) |" in rows["| fcos_hr"]
    assert "2.50 (2.00-3.00)" in rows["| fcos_hr"]  # FA / Mpx at Pd 0.85
    assert "1000 (1000-1001)" in rows["| fcos_hr"]  # crops seen
    gate = rows["| sky + gate"]
    assert "threshold 0.25 (0.20-0.30)" in gate and "0.860 (0.850-0.870)" in gate and "0.50" in gate
    assert "| fcos_hr + gate" not in section_a  # no gate for a model without sky
    summary_old = [
        line for line in section_old.splitlines() if line.startswith("| fcos_hr | what fcos_hr | 40")
    ]
    assert summary_old == [
        "| fcos_hr | what fcos_hr | 40 min | 0 | 0.600 | 0.650 | 0.550 | 0.800 | 2.00 | 0.80 | 1000 | 0.50 |"
    ]  # not averaged with CPU A's fcos_hr


def test_image_budget_runs_stay_with_the_cpu_that_set_the_budget() -> None:
    moved = _record("fcos_hr_s2", "fcos_hr", 2, 0.90, "CPU B")
    moved["budget"]["images"] = {"max_images": 1000, "cpu_model": "CPU A"}
    moved["frame_1280x1024_s"] = 9.0
    records = {
        "fcos_hr_s0": _record("fcos_hr_s0", "fcos_hr", 0, 0.70, "CPU A"),
        "fcos_hr_s1": _record("fcos_hr_s1", "fcos_hr", 1, 0.80, "CPU A"),
        "fcos_hr_s2": moved,
    }
    for record in records.values():
        record["budget"]["images"] = {"max_images": 1000, "cpu_model": "CPU A"}
    text = "\n".join(bc.report_lines(records))
    assert "## CPU: CPU B" not in text and "separate tables" not in text
    assert "360-361 ms over 2 of 3 records" in text  # CPU B's calibration is not CPU A's
    assert "Ran on CPU B with this CPU's image budget" in text
    summary = next(line for line in text.splitlines() if line.startswith("| fcos_hr | what"))
    assert "| 0, 1, 2 | 0.800 (0.700-0.900) |" in summary  # all three seeds trained the same
    assert summary.endswith("| 0.50 (0.50-0.50) |")  # CPU B's 9.0 s is not averaged in
    run_row = next(line for line in text.splitlines() if line.startswith("| fcos_hr_s2 |"))
    assert run_row.endswith("| 9.00 (CPU B) |")


def test_spread_of_one_value_and_of_none() -> None:
    assert bc._spread([0.5]) == "0.500"
    assert bc._spread([None, None]) == "—"
    assert bc._spread([0.25, None, 0.75]) == "0.500 (0.250-0.750)"


def test_a_busy_machine_does_not_stretch_the_budget(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(bc, "calibrate", lambda reps: {"ms": 2.5 * bc.REFERENCE_MS, "cpu_model": "busy"})
    results = tmp_path / "results"
    argv = ["budget_hr.py", "--data", str(tmp_path), "--results", str(results), "--work", str(tmp_path / "w")]
    monkeypatch.setattr(sys, "argv", argv)
    runs = [bc.Run("r", "what", ["model.name=fcos_hr"])]
    with pytest.raises(SystemExit, match="calibration 1595 ms is over 2 x the reference 638 ms"):
        bc.budget_main("doc", runs, "budget_hr", 40.0, "title", "header", normalised=True)
    assert not results.exists()  # nothing started, nothing written


# ------------------------------------------------------------------------------ image budget
@pytest.fixture(scope="module")
def tiny_cfg(tmp_path_factory: pytest.TempPathFactory):
    """The smoke recipe of ``fcos_hr`` on a few synthetic frames."""
    from bafenet.data.synthetic import write_synthetic_devkit

    devkit = write_synthetic_devkit(
        tmp_path_factory.mktemp("budget") / "devkit", n=8, seed=0, sizes=((96, 80), (112, 96))
    )
    overrides = [*bc.budget_overrides(str(devkit), 1.0, 0, workers=0), *bc.SMOKE_OVERRIDES]
    overrides += ["model.name=fcos_hr", "data.train_split=train", "data.val_split=val", "eval.split=val"]
    return load_config(PACKAGED_CONFIGS / "bafenet_hr.yaml", overrides)


def test_image_budget_is_measured_once_per_configuration_and_then_shared(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, tiny_cfg
) -> None:
    calls = []

    def fake_rate(cfg, work, seconds=bc.RATE_SECONDS):
        calls.append(cfg.train.seed)
        return 2.5

    monkeypatch.setattr(bc, "measure_images_per_s", fake_rate)
    budget = bc.Budget(10.0, {"ms": 900.0, "cpu_model": "cpu A"}, reference_minutes=7.0)
    seed0, seed1 = bc.seeded_runs("fcos_hr", "what", [], seeds=(0, 1))
    first = bc.image_budget(seed0, tiny_cfg, budget, tmp_path, tmp_path / "work")
    second = bc.image_budget(seed1, tiny_cfg, budget, tmp_path, tmp_path / "work")
    assert len(calls) == 1 and first == second
    assert first["max_images"] == 1500 and first["images_per_s"] == 2.5  # 2.5 images/s x 600 s
    assert first["cpu_model"] == "cpu A" and first["calibration_ms"] == 900.0
    assert (tmp_path / "image_budgets.json").is_file()


def test_measured_images_per_s_counts_steps_on_the_cpu_and_leaves_no_run_folder(
    tmp_path: Path, tiny_cfg
) -> None:
    rate = bc.measure_images_per_s(tiny_cfg, tmp_path)
    assert rate > 0 and not (tmp_path / "_images_per_s").exists()
    assert torch.get_num_threads() >= 1


def test_a_run_with_an_image_budget_stops_there_and_records_it(tmp_path: Path, tiny_cfg) -> None:
    budget = bc.Budget(10.0, bc.calibrate(reps=1), reference_minutes=7.0)
    images = {"max_images": 6, "images_per_s": 0.01, "minutes": 10.0, "cpu_model": "x", "calibration_ms": 1}
    overrides = [*bc.budget_overrides(str(tiny_cfg.data.root), 10.0, 0, workers=0), *bc.SMOKE_OVERRIDES]
    overrides += ["train.epochs=50", "data.train_split=train", "data.val_split=val", "eval.split=val"]
    run = bc.Run("fcos_hr_s0", "what", ["model.name=fcos_hr"])
    record = bc.run_one(run, overrides, tmp_path, budget, frame_reps=1, images=images)
    assert record["images_seen"] == 6 and record["epochs_done"] == 1  # steps of 4 + 2 images
    assert record["budget"]["images"] == images and record["minutes"] == 10.0
    assert "mAP07" in record["metrics"] and record["device"] == "cpu"


def test_an_interrupted_run_continues_from_its_last_epoch(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, tiny_cfg
) -> None:
    budget = bc.Budget(10.0, {"ms": 1.0, "cpu_model": "x", "measured_at": "now"}, reference_minutes=7.0)
    images = {"max_images": 15, "images_per_s": 0.01, "minutes": 10.0, "cpu_model": "x", "calibration_ms": 1}
    overrides = [*bc.budget_overrides(str(tiny_cfg.data.root), 10.0, 0, workers=0), *bc.SMOKE_OVERRIDES]
    overrides += ["train.epochs=50", "data.train_split=train", "data.val_split=val", "eval.split=val"]
    run = bc.Run("fcos_hr_s0", "what", ["model.name=fcos_hr"])
    save_epoch = bc.Trainer.save_epoch

    def killed_after_first_save(self, *args, **kwargs):
        save_epoch(self, *args, **kwargs)
        raise KeyboardInterrupt  # the session ends after epoch 1 of 3

    monkeypatch.setattr(bc.Trainer, "save_epoch", killed_after_first_save)
    with pytest.raises(KeyboardInterrupt):
        bc.run_one(run, overrides, tmp_path, budget, frame_reps=1, images=images)
    monkeypatch.setattr(bc.Trainer, "save_epoch", save_epoch)
    record = bc.run_one(run, overrides, tmp_path, budget, frame_reps=1, images=images)
    # epochs of 6 images in steps of 4 + 2: the budget of 15 is reached by the first step of epoch 3
    assert record["resumed"] and record["images_seen"] == 16 and record["epochs_done"] == 3
    epochs = (tmp_path / "fcos_hr_s0" / "epochs.csv").read_text().splitlines()
    assert [row.split(",")[0] for row in epochs[1:]] == ["1", "2", "3"]  # epoch 1 not trained twice
    # another configuration never continues that run
    other = bc.Run("fcos_hr_s0", "what", ["model.name=fcos_hr", "train.lr=0.001"])
    assert not bc.run_one(other, overrides, tmp_path, budget, frame_reps=1, images=images)["resumed"]


def test_budget_label_states_the_images_of_an_image_budget() -> None:
    timed = {"minutes": 48.4, "budget": {"reference_minutes": 40.0, "reference_ms": 638.0}}
    assert bc.budget_label(timed) == "40 min at 638 ms"
    by_images = {"minutes": 48.4, "budget": {**timed["budget"], "images": {"max_images": 14834}}}
    assert bc.budget_label(by_images) == "40 min at 638 ms = 14834 images"
    assert bc.budget_label({"minutes": 20.0}) == "20 min"


def test_a_later_configuration_gets_the_reference_budget_scaled_by_rates_of_one_window(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, tiny_cfg
) -> None:
    rates = {"ref": iter([4.0, 6.0]), "new": iter([2.5, 3.0])}
    order = []

    def fake_rate(cfg, work, seconds=bc.RATE_SECONDS):
        key = "new" if cfg.train.seed == 1 else "ref"
        order.append(key)
        return next(rates[key])

    monkeypatch.setattr(bc, "measure_images_per_s", fake_rate)
    budget = bc.Budget(10.0, {"ms": 900.0, "cpu_model": "cpu A"}, reference_minutes=7.0)
    (tmp_path / "image_budgets.json").write_text(
        json.dumps({"fcos_hr": {"max_images": 1000, "minutes": 12.0}})
    )
    new_cfg = dataclasses.replace(tiny_cfg, train=dataclasses.replace(tiny_cfg.train, seed=1))
    run = bc.Run("other_s0", "what", [], config="other")
    entry = bc.image_budget(
        run, new_cfg, budget, tmp_path, tmp_path / "work", reference=("fcos_hr", tiny_cfg)
    )
    assert order == ["ref", "new", "ref"]
    assert entry["max_images"] == 500  # 1000 x 2.5 / mean(4, 6)
    assert entry["relative_to"] == "fcos_hr" and entry["reference_images_per_s"] == 5.0
    assert entry["minutes"] == 12.0 and entry["images_per_s"] == 2.5
    stored = json.loads((tmp_path / "image_budgets.json").read_text())
    assert stored["other"] == entry and stored["fcos_hr"]["max_images"] == 1000
    # the reference itself, or any group when the reference has no budget yet, is timed alone
    alone = bc.image_budget(
        bc.Run("third", "what", [], config="third"),
        new_cfg,
        budget,
        tmp_path / "empty",
        tmp_path,
        reference=("fcos_hr", tiny_cfg),
    )
    assert order[3:] == ["new"] and "relative_to" not in alone and alone["max_images"] == 1800  # 3 x 600 s
