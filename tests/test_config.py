"""Config files, dotted overrides and validation."""

from __future__ import annotations

from pathlib import Path

import pytest

from bafenet.cli.train import PACKAGED_CONFIGS
from bafenet.config import Config, ConfigError, config_to_dict, load_config, save_config

CONFIGS = sorted(PACKAGED_CONFIGS.glob("*.yaml"))


def test_defaults_are_the_official_recipe() -> None:
    cfg = load_config()
    assert (cfg.data.input.mode, cfg.data.input.size, cfg.data.input.keep_ratio) == ("resize", 512, False)
    assert (cfg.data.flip_prob, cfg.data.repeat, cfg.data.bagcp.mode) == (0.5, 3, "faithful")
    assert (cfg.train.epochs, cfg.train.milestones, cfg.train.batch_size) == (20, [8, 16], 2)
    assert (cfg.train.optimizer, cfg.train.lr, cfg.train.weight_decay) == ("dadapt_adam", 1.0, 0.05)
    assert cfg.train.warmup_factor == pytest.approx(1 / 3) and cfg.train.warmup_iters == 500
    assert (cfg.data.train_split, cfg.data.val_split) == ("train_v2", "val_v2")


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_every_shipped_config_loads(path: Path) -> None:
    cfg = load_config(path)
    assert cfg.model.name == path.stem.removesuffix("_cpu")
    assert cfg.train.milestones == sorted(cfg.train.milestones)


def test_shipped_configs_cover_the_published_models() -> None:
    names = {p.stem for p in CONFIGS}
    assert {"bafenet_r18", "bafenet_r50", "fcos_seg_r50", "fcos_r50", "bafenet_r18_cpu"} <= names


def test_dotted_overrides_are_parsed_as_yaml(tmp_path: Path) -> None:
    cfg = load_config(
        CONFIGS[0],
        [
            "train.epochs=3",
            "data.root=/some/where",
            "train.milestones=[1, 2]",
            "train.clip_grad_norm=10",
            "train.lr=1e-4",  # YAML 1.1 reads this as a string; float fields accept it
            "data.bagcp.enabled=false",
            "data.input.size=384",
            "model.kwargs.exchange=false",
            "model.weights_backbone=null",
        ],
    )
    assert cfg.train.epochs == 3 and cfg.data.root == "/some/where"
    assert cfg.train.milestones == [1, 2] and cfg.train.clip_grad_norm == 10.0
    assert isinstance(cfg.train.clip_grad_norm, float) and cfg.train.lr == pytest.approx(1e-4)
    assert cfg.data.bagcp.enabled is False and cfg.data.input.size == 384
    assert cfg.model.kwargs == {"exchange": False} and cfg.model.weights_backbone is None


def test_section_override_as_mapping_merges() -> None:
    cfg = load_config(None, ["data.bagcp={enabled: false}"])
    assert cfg.data.bagcp.enabled is False and cfg.data.bagcp.mode == "faithful"


def test_unknown_key_lists_the_valid_ones(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(None, ["train.epoch=3"])
    message = str(info.value)
    assert "'train.epoch'" in message and "did you mean 'epochs'" in message
    assert "valid keys in train: epochs, batch_size" in message
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  name: bafenet_r18\nmodle: {}\n")
    with pytest.raises(
        ConfigError, match=r"bad.yaml.*unknown key 'modle'.*valid keys in the config: model, data"
    ):
        load_config(bad)


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("train.epochs=two", "train.epochs: expected an integer"),
        ("train.epochs=2.5", "train.epochs: expected an integer"),
        ("train.amp=1", "train.amp: expected true or false"),
        ("train.optimizer=adam", "'adam' is not one of dadapt_adam, adamw, sgd"),
        ("train.milestones=8", "train.milestones: expected a list"),
        ("train.milestones=[16, 8]", "train.milestones must be increasing"),
        ("data.flip_prob=1.5", r"data.flip_prob must be in \[0, 1\]"),
        ("data.input.background_crop_prob=-0.1", r"data.input.background_crop_prob must be in \[0, 1\]"),
        ("data=3", "data must be a mapping"),
        ("train.epochs", "not of the form section.key=value"),
        ("train.epochs.max=3", "train.epochs: expected an integer, got {'max': 3}"),
    ],
)
def test_type_and_range_errors_are_clear(override: str, expected: str) -> None:
    with pytest.raises(ConfigError, match=expected):
        load_config(None, [override])


def test_bad_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(tmp_path / "missing.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("train: [\n")
    with pytest.raises(ConfigError, match="broken.yaml: not valid YAML"):
        load_config(broken)
    listing = tmp_path / "list.yaml"
    listing.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="must hold a mapping"):
        load_config(listing)


def test_save_load_round_trip(tmp_path: Path) -> None:
    cfg = load_config(
        CONFIGS[0], ["train.epochs=7", "model.kwargs={a: 1, b: [1, 2]}", "train.max_time_minutes=30"]
    )
    path = tmp_path / "run" / "config.yaml"
    save_config(cfg, path)
    again = load_config(path)
    assert again == cfg
    assert config_to_dict(again)["train"]["epochs"] == 7
    assert [p.name for p in path.parent.iterdir()] == ["config.yaml"]  # no temporary left behind
    assert isinstance(again, Config)


@pytest.mark.parametrize(
    "override",
    [
        "train.lr=.inf",
        "train.lr=.nan",
        "train.lr=inf",  # a string that float() reads as infinity
        "train.lr=1e999",
        "train.gamma=-.inf",
        "train.clip_grad_norm=.nan",  # float | None
        "eval.scale=.inf",
        "train.time_milestones=[0.5, .nan]",
        pytest.param(f"train.lr={10**400}", id="train.lr=10**400"),  # an int too large for a float
    ],
)
def test_every_float_must_be_finite(override: str) -> None:
    key = override.partition("=")[0]
    with pytest.raises(ConfigError, match=rf"{key}(\[1\])?: expected a finite number"):
        load_config(None, [override])


def test_a_file_that_is_not_utf8_is_one_line(tmp_path: Path) -> None:
    latin1 = tmp_path / "latin1.yaml"
    latin1.write_bytes("model:\n  name: caf\xe9\n".encode("latin-1"))
    with pytest.raises(ConfigError) as info:
        load_config(latin1)
    assert str(info.value) == f"{latin1}: not UTF-8 text (byte 0xe9 at offset 18); save the config as UTF-8"


def test_yaml_errors_are_one_line(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("train:\n  milestones: [8, 16\n")
    with pytest.raises(
        ConfigError, match=r"broken\.yaml: not valid YAML \(.* at line 3, column 1\)$"
    ) as info:
        load_config(broken)
    assert "\n" not in str(info.value)
    tagged = tmp_path / "tagged.yaml"
    tagged.write_text("train: !!python/object/apply:os.system ['true']\n")
    with pytest.raises(
        ConfigError, match=r"tagged\.yaml: not valid YAML \(could not determine a constructor"
    ) as info:
        load_config(tagged)
    assert "\n" not in str(info.value)
    with pytest.raises(ConfigError) as info:
        load_config(None, ["train.milestones=[8"])
    assert "\n" not in str(info.value)


def test_input_size_limits() -> None:
    assert load_config().eval.max_pixels == 40_000_000
    with pytest.raises(ConfigError, match="eval.max_pixels must be > 0"):
        load_config(None, ["eval.max_pixels=0"])
    with pytest.raises(ConfigError, match="data.input.size must be >= 33"):
        load_config(None, ["data.input.size=32"])
    with pytest.raises(ConfigError, match="data.input.crop_size must be >= 33"):
        load_config(None, ["data.input.crop_size=16"])
    assert load_config(None, ["data.input.size=33", "data.input.crop_size=33"]).data.input.size == 33
