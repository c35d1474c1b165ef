"""The hostile-input corpus: every case runs a real ``bafenet`` verb on one bad or malicious input.

Each case must end with exit status 1 and exactly one ``bafenet: error:`` line on stderr (no
traceback, no warning, nothing printed onto a progress bar) that names the offending file, or
the key for a config error, and the problem; the command leaves nothing behind (no run folder,
no temporary file, pre-existing files untouched) and no payload runs. ``data check`` reports
problems on stdout instead (one line per problem, each starting with the file) and exits 1.

The verbs run in this process (``bafenet.cli.main``) so that the corpus stays fast; a command
that lets an exception escape ``main`` is what prints a traceback in a terminal. Output is
captured at the file-descriptor level, so data-loader worker processes are heard too.
"""

from __future__ import annotations

import io
import re
import shlex
import subprocess
import sys
import tarfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from hostile_inputs import (
    BILLION_LAUGHS,
    SECRET,
    TRAIN_IDS,
    VAL_ID,
    VALID_MEMBERS,
    Hostile,
    Member,
    bomb_png_bytes,
    leftovers,
    snapshot,
    tar_bytes,
    tiny_model_overrides,
    xxe_xml,
    zip_bytes,
)
from PIL import Image

from bafenet.cli import main

# what a message may say about each kind of problem (any one of the words)
DECODE = ("decode", "truncated", "cannot read", "cannot identify", "not a png", "not an image", "empty")
DTD = ("dtd", "entit")
PIXELS = (("px", "pixel"), ("limit", "max"))  # the size and the limit
TOO_SMALL = ("small", "at least", "minimum")
DUPLICATE = ("more than once", "duplicate", "twice", "repeated")
ESCAPE = ("outside", "escape", "unsafe", "absolute", "link", "'..'")
NOT_FINITE = ("nan", "finite")
UNSAFE_ADVICE = ("weights_only=False", "likely succeed")
REFUSED = ("refuse", "not loaded", "python object", "unsafe", "weights-only", "weights only")
UNREADABLE = ("readable", "corrupt", "truncated", "damaged", "not a")
BAD_VALUE = ("expected", "must", "invalid", "not a")
NOT_A_NAME = ("path", "outside", "not in", "no image")
COMMANDS = {
    "val": "val --weights {ckpt} --data {devkit} --out out --device cpu",
    "predict": "predict --weights {ckpt} --out out --device cpu",
    "train": "train --project runs --name hostile --no-progress {tiny}",
    "download": "data download densesirst --root cache --url {input}",
}


@dataclass(frozen=True)
class Case:
    """One hostile input: ``setup`` builds it and returns its path (or URL), ``{input}`` in ``argv``.

    ``expect``: texts the error line must hold (a tuple: one of them), compared without case.
    ``forbid``: texts that must not appear in it.
    """

    id: str
    topic: str
    setup: Callable[[Hostile], Path | str | None]
    argv: str
    expect: tuple[str | tuple[str, ...], ...]
    forbid: tuple[str, ...] = ()


def _cmd(verb: str, extra: str = "") -> str:
    return f"{COMMANDS[verb]} {extra}".strip()


# val / predict of a hostile checkpoint (the case's input)
VAL_WEIGHTS = "val --weights {input} --data {devkit} --out out --device cpu"
PREDICT_WEIGHTS = "predict --weights {input} {devkit}/PNGImages/synth_0000.png --out out --device cpu"


# ---------------------------------------------------------------------------- setups
def _write(path: Path, data: bytes | str) -> Path:
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def _truncate(path: Path) -> Path:
    data = path.read_bytes()
    return _write(path, data[: len(data) // 2])


def _noise(n: int = 4096) -> bytes:
    return np.random.default_rng(1).integers(0, 256, n, dtype=np.uint8).tobytes()


def _ckpt(h: Hostile, name: str, change: Callable[[dict], None]) -> Path:
    ckpt = h.checkpoint_dict()
    change(ckpt)
    return h.checkpoint(name, ckpt)


def _reshape_first_conv(ckpt: dict) -> None:
    key = next(k for k, v in ckpt["model"].items() if v.ndim == 4)
    ckpt["model"][key] = torch.zeros(3, 3, 3, 3)


def _nan_first_conv(ckpt: dict) -> None:
    key = next(k for k, v in ckpt["model"].items() if v.ndim == 4)
    ckpt["model"][key] = torch.full_like(ckpt["model"][key], float("nan"))


def _weights_only(ckpt: dict) -> None:
    ckpt.update(optimizer=None, scheduler=None, rng_states=None)


def _broken_in_a_folder(h: Hostile) -> Path:
    # alone: with a good frame beside it, predict writes the good frame's results and exits 1
    # (tests/cli/test_predict_outputs.py)
    return h.truncated_png("images/b_broken.png")


def _tiny_val_frame(h: Hostile) -> None:
    h.blank_frame("tiny_0000", 16, 16)
    h.split("val", ["tiny_0000"])


def _maskset_escape(h: Hostile) -> Path:
    """A mask-only set whose split names tmp/devkit/PNGImages/synth_0000.png (it exists)."""
    h.devkit()
    root = h.maskset()
    _write(root / "escape.txt", "synth_0000\n../devkit/PNGImages/synth_0000\n")
    return root


def _archive(name: str, members: tuple[Member, ...]) -> Callable[[Hostile], str]:
    build = tar_bytes if name.endswith(".tar") else zip_bytes
    return lambda h: h.archive_url(name, build(VALID_MEMBERS + members))


def _absolute_member_archive(name: str) -> Callable[[Hostile], str]:
    def setup(h: Hostile) -> str:
        build = tar_bytes if name.endswith(".tar") else zip_bytes
        member = Member(str(h.tmp / "abs_escaped.txt"), b"pwned")
        return h.archive_url(name, build((*VALID_MEMBERS, member)))

    return setup


def _hardlink_to_secret(h: Hostile) -> str:
    member = Member("DenseSIRST-main/data/SIRSTdevkit/hard.txt", kind="hardlink", target=str(h.secret))
    return h.archive_url("hardlink.tar", tar_bytes((*VALID_MEMBERS, member)))


def _cut_zip(h: Hostile) -> str:
    data = zip_bytes(VALID_MEMBERS)
    return h.archive_url("cut.zip", data[: len(data) // 2])


LINK_DIR = "DenseSIRST-main/data/SIRSTdevkit/link"
CASES = [
    # -- 1: archives whose members escape the target folder, directly or through links
    Case("tar_chained_links", "1 archive links",
         _archive("chain.tar", (Member("a", kind="symlink", target="."),
                                Member("a/b", kind="symlink", target=".."),
                                Member("b/escaped.txt", b"pwned"))),
         _cmd("download"), ("chain.tar", ("'a/b'", "b/escaped.txt"), ESCAPE)),
    Case("tar_symlink_out_then_file", "1 archive links",
         _archive("symlink.tar", (Member(LINK_DIR, kind="symlink", target="../../../.."),
                                  Member(f"{LINK_DIR}/escaped.txt", b"pwned"))),
         _cmd("download"), ("symlink.tar", LINK_DIR)),
    Case("tar_hardlink_to_secret", "1 archive links", _hardlink_to_secret,
         _cmd("download"), ("hardlink.tar", "hard.txt")),
    Case("tar_traversal", "archives",
         _archive("traversal.tar", (Member("DenseSIRST-main/../../escaped.txt", b"pwned"),)),
         _cmd("download"), ("traversal.tar", "escaped.txt")),
    Case("tar_absolute", "archives", _absolute_member_archive("absolute.tar"),
         _cmd("download"), ("absolute.tar", "abs_escaped.txt")),
    Case("tar_device", "archives",
         _archive("device.tar", (Member("DenseSIRST-main/dev0", kind="chardev"),)),
         _cmd("download"), ("device.tar", "DenseSIRST-main/dev0")),
    Case("zip_symlink_then_file", "1 archive links",
         _archive("link_then_file.zip", (Member(LINK_DIR, kind="symlink", target="PNGImages"),
                                         Member(f"{LINK_DIR}/escaped.txt", b"pwned"))),
         _cmd("download"), ("link_then_file.zip", LINK_DIR)),
    Case("zip_symlink_out_then_file", "1 archive links",
         _archive("symlink.zip", (Member(LINK_DIR, kind="symlink", target="../../../.."),
                                  Member(f"{LINK_DIR}/escaped.txt", b"pwned"))),
         _cmd("download"), ("symlink.zip", LINK_DIR)),
    Case("zip_traversal", "archives",
         _archive("traversal.zip", (Member("DenseSIRST-main/../../escaped.txt", b"pwned"),)),
         _cmd("download"), ("traversal.zip", "escaped.txt")),
    Case("zip_absolute", "archives", _absolute_member_archive("absolute.zip"),
         _cmd("download"), ("absolute.zip", "abs_escaped.txt")),
    Case("tar_same_member_twice", "archives",
         _archive("twice.tar", (Member("DenseSIRST-main/data/SIRSTdevkit/Splits/trainval.txt", b"../x"),)),
         _cmd("download"), ("twice.tar", "Splits/trainval.txt")),
    Case("archive_random_bytes", "archives", lambda h: h.archive_url("noise.zip", _noise()),
         _cmd("download"), ("noise.zip", "archive")),
    Case("archive_truncated", "archives", _cut_zip, _cmd("download"), ("cut.zip", "archive")),
    # -- 2: a small PNG declaring 12000 x 12000 pixels: refused before decoding
    Case("predict_bomb", "2 pixel limit", lambda h: h.file("bomb.png", bomb_png_bytes()),
         _cmd("predict", "{input}"), ("bomb.png", *PIXELS)),
    Case("val_bomb", "2 pixel limit", lambda h: _write(h.image(VAL_ID), bomb_png_bytes()),
         _cmd("val"), (f"{VAL_ID}.png", *PIXELS)),
    Case("train_bomb", "2 pixel limit", lambda h: _write(h.image(TRAIN_IDS[0]), bomb_png_bytes()),
         _cmd("train"), (f"{TRAIN_IDS[0]}.png", *PIXELS)),
    Case("data_stats_bomb", "2 pixel limit", lambda h: _write(h.image(TRAIN_IDS[0]), bomb_png_bytes()),
         "data stats {devkit}", (f"{TRAIN_IDS[0]}.png", *PIXELS)),
    Case("val_network_input_above_the_limit", "2 pixel limit", lambda h: None,
         _cmd("val", "eval.max_pixels=5000"), (f"{VAL_ID}.png", "eval.max_pixels")),
    Case("data_check_bomb", "2 pixel limit", lambda h: _write(h.image(TRAIN_IDS[0]), bomb_png_bytes()),
         "data check {devkit}", (f"{TRAIN_IDS[0]}.png", *PIXELS)),
    # -- 4: a bad training file read in a data-loader worker process
    Case("train_truncated_image_in_worker", "4 worker errors", lambda h: _truncate(h.image(TRAIN_IDS[0])),
         _cmd("train", "data.workers=1"), (f"{TRAIN_IDS[0]}.png", DECODE)),
    Case("train_billion_laughs_in_worker", "4 worker errors",
         lambda h: _write(h.box_file(TRAIN_IDS[1]), BILLION_LAUGHS),
         _cmd("train", "data.workers=1"), (f"{TRAIN_IDS[1]}.xml", DTD)),
    # -- 5: one line instead of a traceback
    Case("predict_frame_16px", "5 tracebacks", lambda h: h.valid_png("tiny.png", (16, 16)),
         _cmd("predict", "{input}"), ("tiny.png", TOO_SMALL)),
    Case("val_frame_16px", "5 tracebacks", _tiny_val_frame, _cmd("val"), ("tiny_0000", TOO_SMALL)),
    Case("train_validating_a_frame_16px", "5 tracebacks", _tiny_val_frame, _cmd("train"),
         ("tiny_0000", TOO_SMALL)),
    Case("predict_out_is_a_file", "5 tracebacks", lambda h: h.file("taken.txt", "keep me"),
         "predict --weights {ckpt} {devkit}/PNGImages/synth_0000.png --out {input} --device cpu",
         ("taken.txt", ("exists", "not a folder", "not a directory"))),
    Case("predict_out_under_a_file", "5 tracebacks", lambda h: h.file("taken.txt", "keep me"),
         "predict --weights {ckpt} {devkit}/PNGImages/synth_0000.png --out {input}/sub --device cpu",
         ("taken.txt", ("not a folder", "not a directory", "cannot"))),
    Case("train_resume_weights_only", "5 tracebacks", lambda h: _ckpt(h, "run/best.pt", _weights_only),
         "train --resume {input} --no-progress",
         ("best.pt", ("resume", "optimizer", "training state", "weights only", "weights-only"))),
    Case("train_config_not_utf8", "5 tracebacks",
         lambda h: h.file("latin1.yaml", b"train:\n  epochs: 1  # caf\xe9\n"),
         _cmd("train", "{input}"), ("latin1.yaml", "utf")),
    Case("val_checkpoint_without_config", "5 tracebacks",
         lambda h: _ckpt(h, "partial.pt", lambda c: c.pop("config")),
         VAL_WEIGHTS, ("partial.pt", "config")),
    Case("predict_checkpoint_without_model", "5 tracebacks",
         lambda h: _ckpt(h, "partial.pt", lambda c: c.pop("model")),
         PREDICT_WEIGHTS,
         ("partial.pt", "model")),
    Case("predict_threshold_not_a_number", "5 tracebacks",
         lambda h: _ckpt(h, "meta.pt", lambda c: c["metadata"].update(operating_score_thr="high")),
         PREDICT_WEIGHTS,
         ("meta.pt", ("threshold", "operating_score_thr"))),
    Case("train_weights_backbone_file_with_hr_model", "5 tracebacks",
         lambda h: h.torchvision_resnet18("resnet18.pth"),
         _cmd("train", "model.weights_backbone={input}"), ("resnet18.pth", ("width", "wide", "shape"))),
    Case("info_negative_channels", "5 tracebacks", lambda h: None,
         "info --model bafenet_hr --size 64 -o channels=-4", ("channels", BAD_VALUE)),
    # -- 6: a split file listing an image twice
    Case("data_stats_duplicate_entry", "6 duplicate entries",
         lambda h: h.split("dup", [TRAIN_IDS[0], TRAIN_IDS[1], TRAIN_IDS[0]]),
         "data stats {devkit} --split dup", ("dup.txt", TRAIN_IDS[0], DUPLICATE)),
    Case("aug_preview_duplicate_entry", "6 duplicate entries",
         lambda h: h.split("dup", [TRAIN_IDS[0], TRAIN_IDS[1], TRAIN_IDS[0]]),
         "aug preview {devkit} --split dup --n 2 --size 64 --out out", ("dup.txt", TRAIN_IDS[0], DUPLICATE)),
    Case("val_duplicate_entry", "6 duplicate entries", lambda h: h.split("dup", [VAL_ID, VAL_ID]),
         _cmd("val", "--split dup"), ("dup.txt", VAL_ID, DUPLICATE)),
    Case("train_duplicate_entry", "6 duplicate entries",
         lambda h: h.split("dup", [TRAIN_IDS[0], TRAIN_IDS[0]]),
         _cmd("train", "data.train_split=dup"), ("dup.txt", TRAIN_IDS[0], DUPLICATE)),
    Case("data_check_duplicate_entry", "6 duplicate entries",
         lambda h: h.split("dup", [TRAIN_IDS[0], TRAIN_IDS[0]]),
         "data check {devkit} --split dup", ("dup.txt", TRAIN_IDS[0], DUPLICATE)),
    # -- 7: a training run that fails leaves no run folder (checked for every case); lr = inf
    Case("train_lr_inf", "7 leftovers", lambda h: None, _cmd("train", "train.lr=.inf"),
         ("train.lr", ("finite", "inf"))),
    # -- 8: messages
    Case("val_weight_shape_mismatch", "8 messages", lambda h: _ckpt(h, "mismatch.pt", _reshape_first_conv),
         VAL_WEIGHTS, ("mismatch.pt", "shape")),
    Case("predict_nan_weights", "8 messages", lambda h: _ckpt(h, "broken.pt", _nan_first_conv),
         PREDICT_WEIGHTS,
         ("broken.pt", NOT_FINITE)),
    Case("val_nan_weights", "8 messages", lambda h: _ckpt(h, "broken.pt", _nan_first_conv),
         VAL_WEIGHTS, ("broken.pt", NOT_FINITE)),
    Case("predict_broken_image_after_the_bar_started", "8 messages", _broken_in_a_folder,
         _cmd("predict", "images"), ("b_broken.png", DECODE)),
    Case("info_option_not_a_bool", "8 messages", lambda h: None,
         "info --model bafenet_hr --size 64 -o exchange=notabool", ("exchange", BAD_VALUE)),
    # -- checkpoints with a pickled payload: refused, never run, no unsafe advice
    Case("val_pickle_payload", "pickle payload", lambda h: h.payload_checkpoint("evil.pt"),
         VAL_WEIGHTS, ("evil.pt", REFUSED), UNSAFE_ADVICE),
    Case("predict_pickle_payload", "pickle payload", lambda h: h.payload_checkpoint("evil.pt"),
         PREDICT_WEIGHTS,
         ("evil.pt", REFUSED), UNSAFE_ADVICE),
    Case("export_pickle_payload", "pickle payload", lambda h: h.payload_checkpoint("evil.pt"),
         "export --weights {input} --out out/model.onnx", ("evil.pt", REFUSED), UNSAFE_ADVICE),
    Case("train_resume_pickle_payload", "pickle payload", lambda h: h.payload_checkpoint("run/last.pt"),
         "train --resume {input} --no-progress", ("last.pt", REFUSED), UNSAFE_ADVICE),
    Case("export_nan_weights", "checkpoints", lambda h: _ckpt(h, "broken.pt", _nan_first_conv),
         "export --weights {input} --out out/model.onnx", ("broken.pt", NOT_FINITE)),
    Case("val_onnxruntime_random_bytes", "checkpoints", lambda h: h.file("noise.onnx", _noise()),
         VAL_WEIGHTS + " --backend onnxruntime", ("noise.onnx", UNREADABLE)),
    Case("val_truncated_checkpoint", "checkpoints",
         lambda h: _truncate(h.checkpoint("cut.pt")), VAL_WEIGHTS, ("cut.pt", UNREADABLE)),
    Case("predict_random_bytes_checkpoint", "checkpoints", lambda h: h.file("noise.pt", _noise()),
         PREDICT_WEIGHTS,
         ("noise.pt", UNREADABLE)),
    Case("val_stored_config_unknown_key", "checkpoints",
         lambda h: _ckpt(h, "stored.pt", lambda c: c["config"]["model"].update(colour="red")),
         VAL_WEIGHTS, ("model.colour", "unknown")),
    # -- XML box files with entity expansion or an external entity
    Case("data_stats_billion_laughs", "xml entities",
         lambda h: _write(h.box_file(TRAIN_IDS[0]), BILLION_LAUGHS),
         "data stats {devkit}", (f"{TRAIN_IDS[0]}.xml", DTD)),
    Case("train_billion_laughs", "xml entities", lambda h: _write(h.box_file(TRAIN_IDS[0]), BILLION_LAUGHS),
         _cmd("train"), (f"{TRAIN_IDS[0]}.xml", DTD)),
    Case("val_xxe", "xml entities", lambda h: _write(h.box_file(VAL_ID), xxe_xml(h.secret)),
         _cmd("val"), (f"{VAL_ID}.xml", DTD)),
    Case("aug_preview_xxe", "xml entities", lambda h: _write(h.box_file(TRAIN_IDS[2]), xxe_xml(h.secret)),
         "aug preview {devkit} --n 4 --size 64 --out out", (f"{TRAIN_IDS[2]}.xml", DTD)),
    Case("data_check_xxe", "xml entities", lambda h: _write(h.box_file(VAL_ID), xxe_xml(h.secret)),
         "data check {devkit}", (f"{VAL_ID}.xml", DTD)),
    # -- broken image files
    Case("predict_truncated_png", "broken images", lambda h: h.truncated_png("cut.png"),
         _cmd("predict", "{input}"), ("cut.png", DECODE)),
    Case("predict_zero_byte_png", "broken images", lambda h: h.file("empty.png", b""),
         _cmd("predict", "{input}"), ("empty.png", DECODE)),
    Case("predict_random_bytes_png", "broken images", lambda h: h.file("noise.png", _noise()),
         _cmd("predict", "{input}"), ("noise.png", DECODE)),
    Case("data_stats_truncated_png", "broken images", lambda h: _truncate(h.image(TRAIN_IDS[1])),
         "data stats {devkit}", (f"{TRAIN_IDS[1]}.png", DECODE)),
    Case("data_check_zero_byte_png", "broken images", lambda h: _write(h.image(TRAIN_IDS[1]), b""),
         "data check {devkit}", (f"{TRAIN_IDS[1]}.png", DECODE)),
    Case("val_random_bytes_png", "broken images", lambda h: _write(h.image(VAL_ID), _noise()),
         _cmd("val"), (f"{VAL_ID}.png", DECODE)),
    Case("aug_preview_truncated_png", "broken images", lambda h: _truncate(h.image(TRAIN_IDS[2])),
         "aug preview {devkit} --n 4 --size 64 --out out", (f"{TRAIN_IDS[2]}.png", DECODE)),
    Case("aug_stats_zero_byte_png", "broken images", lambda h: _write(h.image(TRAIN_IDS[0]), b""),
         "aug stats {devkit} --size 64 --out out", (f"{TRAIN_IDS[0]}.png", DECODE)),
    # -- split files naming paths outside the dataset
    Case("data_stats_traversal_entry", "split paths",
         lambda h: h.split("escape", [TRAIN_IDS[0], "../../outside/evil"]),
         "data stats {devkit} --split escape", ("escape.txt", "../../outside/evil", NOT_A_NAME)),
    Case("val_absolute_entry", "split paths", lambda h: h.split("escape", [VAL_ID, str(h.secret)]),
         _cmd("val", "--split escape"), ("escape.txt", "secret.txt", NOT_A_NAME)),
    Case("train_traversal_entry", "split paths", lambda h: h.split("escape", ["../../outside/evil"]),
         _cmd("train", "data.train_split=escape"), ("escape.txt", "../../outside/evil", NOT_A_NAME)),
    Case("aug_preview_absolute_entry", "split paths", lambda h: h.split("escape", [str(h.secret)]),
         "aug preview {devkit} --split escape --n 1 --size 64 --out out",
         ("escape.txt", "secret.txt", NOT_A_NAME)),
    Case("maskset_traversal_to_a_real_image", "split paths", _maskset_escape,
         "data stats {input} --split escape", ("escape.txt", "../devkit/PNGImages/synth_0000", NOT_A_NAME)),
    # -- config files and overrides
    Case("train_config_unknown_key", "config files",
         lambda h: h.file("unknown.yaml", "train:\n  epochz: 3\n"),
         _cmd("train", "{input}"), ("unknown.yaml", "train.epochz")),
    Case("train_config_wrong_type", "config files",
         lambda h: h.file("wrong.yaml", "train:\n  batch_size: many\n"),
         _cmd("train", "{input}"), ("wrong.yaml", "train.batch_size")),
    Case("train_config_python_tag", "config files",
         lambda h: h.file("payload.yaml", f"train: !!python/object/apply:os.mkdir ['{h.marker}']\n"),
         _cmd("train", "{input}"), ("payload.yaml", ("python", "tag", "constructor"))),
    Case("train_config_not_a_mapping", "config files", lambda h: h.file("list.yaml", "- a\n- b\n"),
         _cmd("train", "{input}"), ("list.yaml", "mapping")),
    Case("train_model_switch_not_a_bool", "config files", lambda h: None,
         _cmd("train", "'model.kwargs={{exchange: notabool}}'"), ("exchange", BAD_VALUE)),
    Case("train_override_wrong_type", "config files", lambda h: None,
         _cmd("train", "train.epochs=abc"), ("train.epochs", BAD_VALUE)),
    Case("val_override_unknown_key", "config files", lambda h: None,
         _cmd("val", "eval.scroe_thr=0.1"), ("eval.scroe_thr", "unknown")),
    Case("val_override_python_tag", "config files", lambda h: None,
         _cmd("val", "'eval.score_thr=!!python/object/apply:os.mkdir [{marker}]'"),
         ("eval.score_thr", ("python", "tag", "constructor"))),
]  # fmt: skip


# ---------------------------------------------------------------------------- running
PROGRESS_BAR = re.compile(r"\[\d+:\d\d")  # tqdm's elapsed-time field, e.g. "[00:00<?, ?it/s]"


@dataclass
class Result:
    code: int
    out: str
    err: str
    warnings: list[str]


def _argv(case: Case, h: Hostile, made: Path | str | None) -> list[str]:
    values = {"input": made, "marker": h.marker}
    if "{devkit}" in case.argv or "{ckpt}" in case.argv:
        values["devkit"] = h.devkit()
    if "{ckpt}" in case.argv:
        values["ckpt"] = h.checkpoint("weights/model.pt")
    if "{tiny}" in case.argv:
        values["tiny"] = shlex.join(tiny_model_overrides(h.devkit()))
    return shlex.split(case.argv.format(**values))


def run_verb(argv: list[str], capfd: pytest.CaptureFixture[str]) -> Result:
    """Run ``bafenet ARGV`` in this process; fail the test if an exception escapes (a traceback)."""
    capfd.readouterr()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")  # every warning a terminal would show, each time
        for hidden in (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning):
            warnings.simplefilter("ignore", hidden)  # Python hides these outside __main__
        try:
            code = main(argv)
        except SystemExit as exc:  # argparse: the case itself is wrong
            pytest.fail(f"argparse refused {argv}: exit {exc.code}\n{capfd.readouterr().err}")
        except Exception as exc:
            pytest.fail(f"{type(exc).__name__} escaped main(): a user would see a traceback: {exc}")
    captured = capfd.readouterr()
    return Result(code, captured.out, captured.err, [f"{w.category.__name__}: {w.message}" for w in caught])


def _contains(text: str, expected: str | tuple[str, ...]) -> bool:
    options = (expected,) if isinstance(expected, str) else expected
    return any(option.lower() in text.lower() for option in options)


def check_failure(case: Case, result: Result) -> None:
    """Exit 1, one clear line naming the file and problem, nothing else on stderr."""
    assert "Traceback" not in result.out + result.err, result.err
    assert result.code == 1, f"exit {result.code}; stdout:\n{result.out}\nstderr:\n{result.err}"
    assert not result.warnings, f"warnings reach the user: {result.warnings}"
    lines = [line for line in result.err.splitlines() if line.strip()]
    noise = [line for line in lines if "bafenet: error:" not in line and not PROGRESS_BAR.search(line)]
    if case.argv.startswith("data check"):  # problems are listed on stdout, one per line
        assert not noise, f"unexpected stderr: {noise}"
        candidates = result.out.splitlines()
    else:
        errors = [line for line in lines if "bafenet: error:" in line]
        assert len(errors) == 1, f"expected one error line, stderr:\n{result.err}"
        assert errors[0].startswith("bafenet: error:"), f"error printed onto another line: {errors[0]!r}"
        assert not noise, f"more than the error line on stderr: {noise}"
        candidates = errors
    matching = [line for line in candidates if all(_contains(line, e) for e in case.expect)]
    assert matching, f"no line holds all of {case.expect}:\n" + "\n".join(candidates)
    for text in case.forbid:
        assert text not in matching[0], f"{text!r} in {matching[0]!r}"


def run_case(case: Case, hostile: Hostile, capfd: pytest.CaptureFixture[str]) -> tuple[Result, list[str]]:
    """Build the case's input, run its command; its result and the files it left behind."""
    made = case.setup(hostile)
    argv = _argv(case, hostile, made)
    before = snapshot(hostile.tmp)
    result = run_verb(argv, capfd)
    return result, leftovers(before, snapshot(hostile.tmp))


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_hostile_input_is_one_clear_error(case: Case, hostile: Hostile, capfd) -> None:
    result, left = run_case(case, hostile, capfd)
    check_failure(case, result)  # exit 1, one error line naming the file and the problem
    assert not hostile.marker.exists(), "the payload ran"
    assert SECRET not in result.out + result.err, "the secret file's content was printed"
    assert left == []


def test_chained_links_refused_without_the_tar_data_filter(hostile: Hostile, capfd, monkeypatch) -> None:
    """Python 3.10.0-3.10.11 and 3.11.0-3.11.3 have no tar ``data`` filter: the chain is refused anyway."""
    monkeypatch.delattr(tarfile, "data_filter", raising=False)
    case = next(case for case in CASES if case.id == "tar_chained_links")
    result, left = run_case(case, hostile, capfd)
    assert result.code == 1
    check_failure(case, result)
    assert left == [] and not list(hostile.tmp.rglob("escaped.txt")), "a member escaped"


# ---------------------------------------------------------------------------- the corpus itself
TAKES_USER_INPUT = {
    "data check", "data stats", "data download", "aug preview", "aug stats",
    "train", "val", "predict", "info", "export",
}  # fmt: skip
TOPICS = {
    "1 archive links", "2 pixel limit", "4 worker errors", "5 tracebacks", "6 duplicate entries",
    "7 leftovers", "8 messages", "xml entities", "broken images", "split paths", "archives",
    "pickle payload", "checkpoints", "config files",
}  # fmt: skip


def _verb(argv: str) -> str:
    words = argv.split()
    return " ".join(words[:2]) if words[0] in ("data", "aug") else words[0]


def test_corpus_covers_every_verb_and_topic() -> None:
    assert {_verb(case.argv) for case in CASES} == TAKES_USER_INPUT
    assert {case.topic for case in CASES} == TOPICS
    assert len({case.id for case in CASES}) == len(CASES)


VALID = [
    ("data check {devkit}", lambda h: None),
    ("data stats {devkit}", lambda h: None),
    ("aug preview {devkit} --n 4 --size 64 --out out", lambda h: None),
    ("aug stats {devkit} --size 64 --out out", lambda h: None),
    (_cmd("val"), lambda h: None),
    (_cmd("predict", "{devkit}/PNGImages"), lambda h: None),
    (_cmd("train", "data.workers=1"), lambda h: None),
    (_cmd("download"), lambda h: h.archive_url("good.tar", tar_bytes(VALID_MEMBERS))),
    (_cmd("download"), lambda h: h.archive_url("good.zip", zip_bytes(VALID_MEMBERS))),
    ("info --model bafenet_hr --size 64", lambda h: None),
    ("export --weights {ckpt} --out out/model.onnx", lambda h: None),
]


@pytest.mark.parametrize(("argv", "setup"), VALID, ids=[f"{i}-{_verb(a)}" for i, (a, _) in enumerate(VALID)])
def test_the_same_commands_succeed_on_valid_input(argv: str, setup, hostile: Hostile, capfd) -> None:
    """Control: the verbs and fixtures of the corpus work, so each case fails for its input alone."""
    case = Case("valid", "", setup, argv, ())
    result = run_verb(_argv(case, hostile, setup(hostile)), capfd)
    assert result.code == 0, result.err


def test_payload_runs_when_unpickled_without_weights_only(hostile: Hostile) -> None:
    """Control: the corpus's pickle payload is live (so 'it did not run' means it was refused)."""
    path = hostile.payload_checkpoint("evil.pt")
    torch.load(path, weights_only=False)  # a file this test built: the payload is harmless
    assert hostile.marker.is_dir()


def test_bomb_declares_a_huge_image_in_a_small_file() -> None:
    """Control: the corpus's bomb is a small PNG whose header says 12000 x 12000 pixels."""
    data = bomb_png_bytes()
    assert len(data) < 10_000
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        image = Image.open(io.BytesIO(data))
        assert image.size == (12000, 12000)
        with pytest.raises(OSError):  # without a size check it fails to decode, it does not blow up
            image.load()


def test_pickle_payload_in_a_real_process(hostile: Hostile) -> None:
    """The console command as a user runs it: one line on stderr, no traceback, payload not run."""
    weights = hostile.payload_checkpoint("evil.pt")
    image = hostile.valid_png("frame.png")
    before = snapshot(hostile.tmp)
    out = subprocess.run(
        [sys.executable, "-m", "bafenet", "predict", "--weights", str(weights), str(image), "--out", "out"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=hostile.tmp,
    )
    assert out.returncode == 1, out.stderr
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("bafenet: error:") and "evil.pt" in lines[0], out.stderr
    assert not any(text in lines[0] for text in UNSAFE_ADVICE), lines[0]
    assert not hostile.marker.exists()
    assert leftovers(before, snapshot(hostile.tmp)) == []
