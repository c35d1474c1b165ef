"""Optimiser param groups, the warm-up + step schedule, exact resume of both, the time budget."""

from __future__ import annotations

import dataclasses
import io

import pytest
import torch
from torch import nn

from bafenet.config import ConfigError, TrainConfig, load_config
from bafenet.engine.optim import (
    TrainingBudget,
    budget_lr_factor,
    build_optimizer,
    build_scheduler,
    lr_factor,
    param_groups,
)


class Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.gn = nn.GroupNorm(2, 4)
        self.head = nn.Linear(4, 2)
        self.shared = self.head  # the same parameters reachable twice
        self.frozen = nn.Linear(4, 4)
        self.frozen.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.gn(self.bn(self.conv(x))).mean(dim=(2, 3))  # (B, 4)
        return self.shared(x + self.frozen(x))


def _names(model: nn.Module, params: list[nn.Parameter]) -> set[str]:
    by_id = {id(p): n for n, p in model.named_parameters()}
    return {by_id[id(p)] for p in params}


def test_param_groups_exclude_norms_biases_and_frozen() -> None:
    model = Tiny()
    groups = {g["name"]: g for g in param_groups(model, 0.05)}
    assert _names(model, groups["decay"]["params"]) == {"conv.weight", "head.weight"}
    assert _names(model, groups["no_decay"]["params"]) == {
        "conv.bias",
        "bn.weight",
        "bn.bias",
        "gn.weight",
        "gn.bias",
        "head.bias",
    }
    assert groups["decay"]["weight_decay"] == 0.05 and groups["no_decay"]["weight_decay"] == 0.0


@pytest.mark.parametrize("name", ["dadapt_adam", "adamw", "sgd"])
def test_each_optimizer_steps_and_skips_frozen(name: str) -> None:
    torch.manual_seed(0)
    model = Tiny()
    optimizer = build_optimizer(model, TrainConfig(optimizer=name, lr=1.0 if name == "dadapt_adam" else 0.01))
    frozen_before = model.frozen.weight.clone()
    weight_before = model.conv.weight.detach().clone()
    for _ in range(3):
        optimizer.zero_grad()
        model(torch.randn(2, 1, 6, 6)).square().sum().backward()
        optimizer.step()
    assert torch.equal(model.frozen.weight, frozen_before)
    assert not torch.equal(model.conv.weight, weight_before)
    if name == "dadapt_adam":
        assert all(g["decouple"] for g in optimizer.param_groups)


def test_schedule_values() -> None:
    cfg = TrainConfig(warmup_iters=5, warmup_factor=1 / 3, milestones=[2, 3], gamma=0.1)
    iters_per_epoch = 4
    expected = [1 / 3] * 4 + [1 / 3, 1, 1, 1] + [0.1] * 4 + [0.01] * 4
    got = [lr_factor(i, cfg, iters_per_epoch) for i in range(16)]
    assert got == pytest.approx(expected)
    model = nn.Linear(2, 1)
    optimizer = build_optimizer(model, dataclasses.replace(cfg, optimizer="sgd", lr=0.5))
    scheduler = build_scheduler(optimizer, cfg, iters_per_epoch)
    seen = []
    for _ in range(16):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert seen == pytest.approx([0.5 * f for f in expected])


def _train(model: nn.Module, optimizer, scheduler, steps: range) -> None:
    for step in steps:
        generator = torch.Generator().manual_seed(step)
        optimizer.zero_grad()
        model(torch.randn(2, 1, 6, 6, generator=generator)).square().sum().backward()
        optimizer.step()
        scheduler.step()


@pytest.mark.parametrize("name", ["dadapt_adam", "adamw"])
def test_state_round_trip_gives_an_exact_resume(name: str) -> None:
    cfg = TrainConfig(
        optimizer=name, lr=1.0 if name == "dadapt_adam" else 0.01, warmup_iters=3, milestones=[1]
    )
    torch.manual_seed(0)
    reference = Tiny()
    start = {k: v.clone() for k, v in reference.state_dict().items()}
    optimizer = build_optimizer(reference, cfg)
    scheduler = build_scheduler(optimizer, cfg, iters_per_epoch=4)
    _train(reference, optimizer, scheduler, range(8))

    resumed = Tiny()
    resumed.load_state_dict(start)
    optimizer = build_optimizer(resumed, cfg)
    scheduler = build_scheduler(optimizer, cfg, iters_per_epoch=4)
    _train(resumed, optimizer, scheduler, range(5))
    buffer = io.BytesIO()
    torch.save(
        {"model": resumed.state_dict(), "opt": optimizer.state_dict(), "sched": scheduler.state_dict()},
        buffer,
    )
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)

    again = Tiny()
    again.load_state_dict(state["model"])
    optimizer = build_optimizer(again, cfg)
    scheduler = build_scheduler(optimizer, cfg, iters_per_epoch=4)
    optimizer.load_state_dict(state["opt"])
    scheduler.load_state_dict(state["sched"])
    assert optimizer.param_groups[0]["lr"] == pytest.approx(cfg.lr * lr_factor(5, cfg, 4))
    _train(again, optimizer, scheduler, range(5, 8))
    for key, value in reference.state_dict().items():
        assert torch.equal(again.state_dict()[key], value), key


class FakeClock:
    """A clock the test moves by hand (seconds)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_time_milestones_decay_the_lr_after_their_share_of_the_budget() -> None:
    cfg = TrainConfig(max_time_minutes=10, time_milestones=[0.5, 0.9], gamma=0.1)
    assert [budget_lr_factor(u, cfg) for u in (0.0, 0.49, 0.5, 0.89, 0.9, 1.2)] == pytest.approx(
        [1.0, 1.0, 0.1, 0.1, 0.01, 0.01]
    )
    clock = FakeClock()
    budget = TrainingBudget(cfg, clock=clock)
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    assert budget.step(optimizer) == 0.0 and optimizer.param_groups[0]["lr"] == 1.0
    clock.now += 360.0  # 60 % of the 600-s budget
    assert budget.step(optimizer) == pytest.approx(0.6)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.1)
    optimizer.param_groups[0]["lr"] = 1.0  # what the epoch scheduler sets at each step
    clock.now += 240.0
    assert budget.step(optimizer) == pytest.approx(1.0)  # used up: the trainer stops
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.01)


def test_a_resumed_budget_continues_from_the_time_already_spent() -> None:
    cfg = TrainConfig(max_time_minutes=10, time_milestones=[0.5], gamma=0.1)
    clock = FakeClock()
    budget = TrainingBudget(cfg, spent_seconds=420.0, clock=clock)  # 70 % used before the kill
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    assert budget.elapsed() == pytest.approx(420.0)
    assert budget.step(optimizer) == pytest.approx(0.7)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.1)
    clock.now += 180.0
    assert budget.used() == pytest.approx(1.0)


def test_no_time_budget_changes_nothing() -> None:
    clock = FakeClock()
    budget = TrainingBudget(TrainConfig(), clock=clock)
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.5)
    clock.now += 1e6
    assert budget.step(optimizer) == 0.0 and optimizer.param_groups[0]["lr"] == 0.5


def test_an_image_budget_counts_images_not_time() -> None:
    cfg = TrainConfig(max_images=1000, time_milestones=[0.8], gamma=0.1)
    clock = FakeClock()
    budget = TrainingBudget(cfg, clock=clock)
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    clock.now += 1e6  # a slow or busy machine: time does not count
    assert budget.step(optimizer, images_seen=400) == pytest.approx(0.4)
    assert optimizer.param_groups[0]["lr"] == 1.0
    assert budget.step(optimizer, images_seen=800) == pytest.approx(0.8)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.1)
    assert budget.used(images_seen=1000) == pytest.approx(1.0)


def test_with_both_budgets_the_one_used_up_first_decides() -> None:
    cfg = TrainConfig(max_time_minutes=10, max_images=1000)
    clock = FakeClock()
    budget = TrainingBudget(cfg, clock=clock)
    clock.now += 300.0  # half the time
    assert budget.used(images_seen=100) == pytest.approx(0.5)
    assert budget.used(images_seen=900) == pytest.approx(0.9)


def test_time_milestones_are_validated() -> None:
    with pytest.raises(ConfigError, match="time_milestones need"):
        load_config(None, ["train.time_milestones=[0.8]"])
    assert load_config(None, ["train.max_images=100", "train.time_milestones=[0.8]"]).train.max_images == 100
    with pytest.raises(ConfigError, match="max_images must be > 0"):
        load_config(None, ["train.max_images=0"])
    with pytest.raises(ConfigError, match="fractions"):
        load_config(None, ["train.max_time_minutes=1", "train.time_milestones=[1.5]"])
