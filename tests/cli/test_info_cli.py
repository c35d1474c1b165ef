from __future__ import annotations

import json

from bafenet.cli import main


def test_info_json_is_one_object_with_the_reference_count(capsys):
    assert main(["info", "--model", "fcos_seg_r18", "--size", "64", "--json"]) == 0
    out = capsys.readouterr().out
    info = json.loads(out)
    assert list(info)[:4] == ["model", "params", "gflops", "size"]
    assert info["model"] == "fcos_seg_r18" and info["size"] == 64
    assert info["params"] == 20_277_066
    assert info["trainable_params"] == 20_277_066 - 9_600  # frozen backbone BN affine
    assert info["gflops"] > 0 and abs(info["gmacs"] * 2 - info["gflops"]) < 0.01


def test_info_text_and_options(capsys):
    assert main(["info", "--model", "bafenet_r18", "--size", "64", "-o", "exchange=false"]) == 0
    out = capsys.readouterr().out
    # without the exchange: 21,712,534 - 135,046 (selector + MLP)
    assert "21,577,488" in out and "GFLOPs" in out and "GMACs" in out


def test_info_errors_are_one_line(capsys):
    assert main(["info", "--model", "bafenet_r101", "--json"]) == 1
    err = capsys.readouterr().err
    assert "unknown model 'bafenet_r101'" in err and "Traceback" not in err
    assert main(["info", "--model", "fcos_r18", "-o", "lsk=false"]) == 1
    assert "has no option lsk" in capsys.readouterr().err
    assert main(["info", "--model", "fcos_r18", "-o", "p2"]) == 1
    assert "KEY=VALUE" in capsys.readouterr().err
