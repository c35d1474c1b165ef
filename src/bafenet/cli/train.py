"""``bafenet train [CONFIG] [key=value ...]``: train a model; runs go to ``runs/NAME``."""

from __future__ import annotations

import argparse
from importlib import resources
from pathlib import Path

from bafenet.cli.data import add_layout_arguments, apply_layout_arguments
from bafenet.config import config_from_dict, load_config
from bafenet.engine import distributed as dist_utils
from bafenet.engine.runs import new_run_dir, remove_failed_run
from bafenet.errors import BafenetError

# the recipes shipped inside the package (package data: also there in an installed wheel)
PACKAGED_CONFIGS = Path(str(resources.files("bafenet") / "configs"))
# where a recipe name is looked up: the user's own ./configs first, then the packaged recipes
CONFIG_DIRS = (Path("configs"), PACKAGED_CONFIGS)


def resolve_config(name: str | None) -> Path | None:
    """A config path, or a recipe name looked up in ``./configs``, then in the packaged recipes."""
    if name is None:
        return None
    path = Path(name)
    if path.is_file():
        return path
    for folder in CONFIG_DIRS:
        for candidate in (folder / name, folder / f"{name}.yaml"):
            if candidate.is_file():
                return candidate
    known = sorted({p.stem for d in CONFIG_DIRS if d.is_dir() for p in d.glob("*.yaml")})
    raise BafenetError(f"config {name!r} not found (a YAML path or one of: {', '.join(known)})")


def split_overrides(values: list[str]) -> tuple[str | None, list[str]]:
    """The optional CONFIG (first value without '=') and the key=value overrides."""
    config = None
    overrides = []
    for value in values:
        if "=" in value:
            overrides.append(value)
        elif config is None:
            config = value
        else:
            raise BafenetError(f"unexpected argument {value!r} (overrides look like train.epochs=3)")
    return config, overrides


def _train(args: argparse.Namespace) -> int:
    from bafenet.engine.trainer import load_resume_checkpoint, train

    config_name, overrides = split_overrides(args.items)
    if args.data:
        overrides.append(f"data.root={args.data}")
    if args.init_weights:
        overrides.append(f"model.init_weights={args.init_weights}")
    if args.resume:
        ckpt = load_resume_checkpoint(args.resume)
        from bafenet.config import apply_override

        raw = ckpt["config"]
        for override in overrides:
            apply_override(raw, override)
        cfg = config_from_dict(raw)
        run_dir = Path(args.resume).resolve().parent
    else:
        cfg = load_config(resolve_config(config_name), overrides)
        device = dist_utils.local_device(cfg.train.device)
        dist_utils.init_from_env(device)
        run_dir = None
        if dist_utils.is_main_process():
            run_dir = new_run_dir(args.project, args.name or cfg.model.name)
        run_dir = Path(dist_utils.broadcast_object(str(run_dir) if run_dir else None))
    apply_layout_arguments(cfg.data, args)
    if dist_utils.is_main_process():
        print(f"run folder: {run_dir}")
    try:
        summary = train(cfg, run_dir, resume=args.resume, progress=not args.no_progress)
    except BaseException:
        if not args.resume and dist_utils.is_main_process():
            remove_failed_run(run_dir)  # the folder this call created, unless it holds a checkpoint
        raise
    if dist_utils.is_main_process():
        print(
            f"done: {summary.epochs_done} epochs, best val mAP07 {summary.best_map07:.4f}; "
            f"weights in {run_dir / 'best.pt'} and {run_dir / 'last.pt'}"
        )
        skipped = {split: len(lines) for split, lines in summary.skipped_samples.items() if lines}
        if skipped:
            counts = ", ".join(f"{n} of {split}" for split, n in skipped.items())
            print(f"left out invalid samples ({counts}); listed in {run_dir / 'summary.json'}")
    dist_utils.cleanup()
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``train`` verb."""
    p = subparsers.add_parser(
        "train",
        help="train a model from a recipe",
        description="Train from a recipe (a YAML path, or a NAME from ./configs or the recipes shipped "
        "with bafenet: bafenet_r18, bafenet_hr, ...) with dotted overrides, "
        "e.g. 'bafenet train bafenet_r18_cpu train.epochs=3 data.root=/data'. "
        "Multi-GPU: 'torchrun --nproc_per_node N -m bafenet train ...'.",
    )
    p.add_argument("items", nargs="*", metavar="CONFIG|key=value", help="recipe, then overrides")
    p.add_argument("--data", default=None, help="dataset folder (else $BAFENET_DATA, then the cache dir)")
    p.add_argument("--name", default=None, help="run name (default: the model name)")
    p.add_argument("--project", default="runs", help="folder holding the runs (default: runs)")
    p.add_argument("--resume", default=None, help="continue from a run's last.pt")
    p.add_argument(
        "--init-weights",
        default=None,
        metavar="PT",
        help="fine-tune: start from every weight of this checkpoint (a released .pt or a run's best.pt; "
        "same model and switches)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_layout_arguments(p, skip_invalid=True)
    p.set_defaults(func=_train, overrides_dest="items")
