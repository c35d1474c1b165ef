"""benchmarks/deploy_speed.py --smoke: every measurement of two tiny checkpoints (plain, and sky
with context) end to end in isolated processes; the records, the table, resuming and --force."""

from __future__ import annotations

import hashlib
import json
import shutil
import statistics
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from PIL import Image

from bafenet.data import open_dataset
from bafenet.data.video import VideoReader
from bafenet.errors import BafenetError

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))

import budget_common as bc  # noqa: E402
import deploy_speed as ds  # noqa: E402

SIZES = ["96x80", "128x96"]
MEASUREMENTS = [
    "onnx",
    "frame/96x80",
    "frame/128x96",
    *(f"memory/{r.name}" for r in ds.RUNTIMES),
    "int8_accuracy/every1",
    "video/draw",
    "video/no_draw",
]


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(work, results) of one ``--smoke`` run."""
    work = tmp_path_factory.mktemp("deploy") / "work"
    out = work.parent / "results"
    assert ds.main(["--smoke", "--work", str(work), "--out", str(out)]) == 0
    return work, out


def _records(out: Path) -> dict[str, dict]:
    return json.loads((out / "deploy_speed.json").read_text())


def _checkpoints(work: Path) -> dict[str, Path]:
    """Record key prefix -> checkpoint file of the smoke run."""
    paths = [work / "tiny_fcos_hr.pt", work / "tiny_sky_context.pt"]
    return {f"{p.stem}@{hashlib.sha256(p.read_bytes()).hexdigest()[:8]}": p for p in paths}


def test_every_measurement_of_both_checkpoints_is_recorded(smoke) -> None:
    work, out = smoke
    records = _records(out)
    checkpoints = _checkpoints(work)
    assert list(records) == [f"{c}/{m}" for c in checkpoints for m in MEASUREMENTS]
    for key, r in records.items():
        prefix, _, measurement = key.partition("/")
        assert r["key"] == key and r["kind"] == measurement.split("/")[0] and r["smoke"] is True
        assert r["checkpoint"]["sha256"] == hashlib.sha256(checkpoints[prefix].read_bytes()).hexdigest()
        assert r["checkpoint"]["eval"] == {"protocol": "native", "scale": 2.0, "amp": True}
        assert r["machine"]["cpu"] == bc.cpu_model() and r["machine"]["threads"] == 1
    assert {r["checkpoint"]["model_name"] for r in records.values()} == {"fcos_hr", "fcos_seg_hr"}


def test_frame_times_cover_every_runtime_on_real_frames_at_x2(smoke) -> None:
    work, out = smoke
    records = _records(out)
    val = open_dataset(work / "devkit", "val_v2")
    for prefix in _checkpoints(work):
        for size in SIZES:
            r = records[f"{prefix}/frame/{size}"]
            width, height = (int(v) for v in size.split("x"))
            assert r["image_id"] in val.ids
            assert Image.open(work / "devkit" / "PNGImages" / f"{r['image_id']}.png").size == (width, height)
            assert r["network_input"] == [2 * height, 2 * width]  # the checkpoint's eval scale
            assert list(r["runtimes"]) == [runtime.name for runtime in ds.RUNTIMES]
            for name, t in r["runtimes"].items():
                assert len(t["frame_all_s"]) == len(t["network_all_s"]) == r["reps"] == 2
                assert t["frame_s"] == pytest.approx(statistics.median(t["frame_all_s"]), abs=1e-4)
                assert t["frame_s"] > 0 and t["network_s"] > 0
                assert t["detections"] > 0 and t["score_thr"] == 0.0
                if name.startswith("ort_"):
                    assert t["ort_intra_op_threads"] == 1  # onnxruntime got the thread setting
            assert r["runtimes"]["ort_fp32"]["detections"] == r["runtimes"]["torch_fp32"]["detections"]


def test_memory_peaks_are_per_runtime_and_per_size(smoke) -> None:
    work, out = smoke
    records = _records(out)
    for prefix in _checkpoints(work):
        for runtime in ds.RUNTIMES:
            r = records[f"{prefix}/memory/{runtime.name}"]
            assert r["runtime"] == runtime.name and list(r["peak_mib"]) == SIZES
            small, large = r["peak_mib"].values()
            assert 0 < r["rss_start_mib"] < r["rss_loaded_mib"]  # the model and its runtime
            assert r["rss_loaded_mib"] <= small + 1 and small <= large  # RSS counters sync lazily
            assert large <= r["process_peak_rss_mib"]


def test_onnx_files_and_int8_accuracy(smoke) -> None:
    work, out = smoke
    records = _records(out)
    for prefix in _checkpoints(work):
        r = records[f"{prefix}/onnx"]
        folder = work / prefix.replace("@", "-")
        fp32, int8 = onnx.load(folder / "model_fp32.onnx"), onnx.load(folder / "model_int8.onnx")
        ops = {node.op_type for node in int8.graph.node}
        assert {"QuantizeLinear", "DequantizeLinear"} <= ops
        assert "QuantizeLinear" not in {node.op_type for node in fp32.graph.node}
        assert {p.key: p.value for p in int8.metadata_props}["bafenet.format"] == "bafenet-onnx"
        assert [i.name for i in int8.graph.input] == [i.name for i in fp32.graph.input]
        assert 0 < r["int8_mib"] < r["fp32_mib"]
        assert r["quantisation"]["calibration_frames"].startswith("train_v2: ")
        accuracy = records[f"{prefix}/int8_accuracy/every1"]
        assert accuracy["subset"] == {
            "split": "val_v2",
            "every": 1,
            "frames": 2,
            "name": "every val_v2 frame",
        }
        assert sorted(accuracy["runtimes"]) == ["ort_fp32", "ort_int8"]
        for m in accuracy["runtimes"].values():
            assert 0.0 <= m["mAP07"] <= 1.0 and 0.0 <= m["recall"] <= 1.0


def test_predict_on_the_video_with_and_without_drawing(smoke) -> None:
    work, out = smoke
    records = _records(out)
    for prefix in _checkpoints(work):
        for mode, draw in (("draw", True), ("no_draw", False)):
            r = records[f"{prefix}/video/{mode}"]
            short, long = r["runs"]["short"], r["runs"]["long"]
            assert r["draw"] is draw and r["video"]["size"] == "96x80"
            assert (short["frames"], long["frames"]) == (ds.SHORT_VIDEO, r["video"]["frames"]) == (5, 8)
            assert long["overlays"] == (["video_96x80_8f.mp4"] if draw else [])
            assert r["fps_end_to_end"] == pytest.approx(8 / long["wall_s"])
            extra = long["wall_s"] - short["wall_s"]
            assert r["fps_steady"] == (pytest.approx(3 / extra) if extra > 0 else None)
            assert r["video"]["source"].startswith("synthetic motion of real val_v2 frames")
            assert r["peak_mib"] == long["process_peak_rss_mib"] > 0


def test_the_video_pans_over_a_real_frame(smoke) -> None:
    work, _ = smoke
    records = _records(work.parent / "results")
    source_id = next(r for r in records.values() if r["kind"] == "video")["video"]["source"]
    image_id = source_id.split("(")[1].split(")")[0]
    real = np.asarray(Image.open(work / "devkit" / "PNGImages" / f"{image_id}.png").convert("L"), dtype=float)
    with VideoReader(work / "video_96x80_8f.mp4") as video:
        frames = [f.image.astype(float) for f in video]
    assert len(frames) == 8 and frames[0].shape == (80, 96)
    step = ds.VIDEO_STEP
    assert np.abs(frames[0] - real).mean() < 6  # H.264 is lossy
    assert np.abs(frames[1][:, :-step] - real[:, step:]).mean() < 6  # panned by VIDEO_STEP px
    assert np.abs(frames[1] - real).mean() > np.abs(frames[1][:, :-step] - real[:, step:]).mean()


def test_the_table_shows_the_records(smoke) -> None:
    work, out = smoke
    records = _records(out)
    text = (out / "deploy_speed.md").read_text()
    assert "**Smoke run**" in text and bc.cpu_model() in text
    assert "## tiny_fcos_hr (fcos_hr, " in text and "## tiny_sky_context (fcos_seg_hr, " in text
    assert "| runtime | 96x80: s / frame | network s | x PyTorch fp32 | peak MiB | 128x96: s / frame" in text
    sections = {part.split(" ", 1)[0]: part for part in text.split("\n## ")[1:]}  # by checkpoint
    for prefix in _checkpoints(work):
        section = sections[prefix.split("@")[0]]  # two checkpoints can share a rounded time
        for runtime in ds.RUNTIMES:
            times = [records[f"{prefix}/frame/{s}"]["runtimes"][runtime.name]["frame_s"] for s in SIZES]
            peaks = records[f"{prefix}/memory/{runtime.name}"]["peak_mib"]
            row = next(
                line
                for line in section.splitlines()
                if line.startswith(f"| {runtime.label} | {times[0]:.3f} |")
            )
            assert f"| {peaks['96x80']:.0f} | {times[1]:.3f} |" in row
        m = records[f"{prefix}/int8_accuracy/every1"]["runtimes"]["ort_int8"]
        assert f"| onnxruntime int8 (static, QDQ) | {m['mAP07']:.4f} | {m['mAP12']:.4f} |" in text
        video = records[f"{prefix}/video/no_draw"]
        assert f"| `--no-draw` (tables only) | {ds._cell(video['fps_steady'], 2)} |" in text
    assert "every val_v2 frame (2 frames; a subset, not the full split)" in text


def test_finished_records_are_skipped(smoke, monkeypatch: pytest.MonkeyPatch) -> None:
    work, out = smoke
    before = _records(out)

    def no_measuring(*args, **kwargs):
        raise AssertionError("a finished record was measured again")

    monkeypatch.setattr(ds, "isolated", no_measuring)
    assert ds.main(["--smoke", "--work", str(work), "--out", str(out)]) == 0
    assert _records(out) == before


def test_force_redoes_the_keys_holding_a_substring(smoke, tmp_path, monkeypatch) -> None:
    work, out = smoke
    shutil.copytree(out, tmp_path / "results")
    before = _records(out)
    measured = []

    def fake(fn, threads, **kwargs):
        measured.append(fn.__name__)
        old = next(r for r in before.values() if r["kind"] == "int8_accuracy")
        return {k: v for k, v in old.items() if k not in ("key", "checkpoint", "measured_at")} | {"faked": 1}

    monkeypatch.setattr(ds, "isolated", fake)
    args = ["--smoke", "--work", str(work), "--out", str(tmp_path / "results"), "--force", "int8_accuracy"]
    assert ds.main(args) == 0
    after = _records(tmp_path / "results")
    assert measured == ["measure_int8_accuracy"] * 2
    assert list(after) == list(before)
    for key, r in after.items():
        assert ("faked" in r) == ("int8_accuracy" in key)
        if "int8_accuracy" not in key:
            assert r == before[key]


def test_a_data_error_in_a_measurement_comes_back_as_one_line(smoke) -> None:
    work, _ = smoke
    files = {"pt": str(work / "tiny_fcos_hr.pt")}
    with pytest.raises(BafenetError, match=r"devkit: val_v2 holds no frame of 50x40$"):
        ds.isolated(
            ds.measure_memory,
            1,
            files=files,
            data=str(work / "devkit"),
            runtime="torch_fp32",
            sizes=[(50, 40)],
        )


def test_forced() -> None:
    assert not ds.forced(None, "a@1/frame/640x512")
    assert ds.forced([], "a@1/frame/640x512")
    assert ds.forced(["video", "frame/640"], "a@1/frame/640x512")
    assert not ds.forced(["video"], "a@1/frame/640x512")
