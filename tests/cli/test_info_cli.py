from __future__ import annotations

import json

import pytest

from bafenet.cli import main
from bafenet.models.switches import switch_types
from bafenet.models.zoo import BAFENET_OPTIONS, COMMON_OPTIONS, SKY_OPTIONS


def test_info_json_is_one_object_with_the_reference_count(capsys):
    assert main(["info", "--model", "fcos_seg_r18", "--size", "64", "--json"]) == 0
    out = capsys.readouterr().out
    info = json.loads(out)
    assert list(info)[:4] == ["model", "params", "gflops", "size"]
    assert info["model"] == "fcos_seg_r18" and info["size"] == 64
    assert info["params"] == 20_277_066
    assert info["trainable_params"] == 20_277_066 - 9_600  # frozen backbone BN affine
    assert info["gflops"] > 0 and abs(info["gmacs"] * 2 - info["gflops"]) < 0.01


@pytest.mark.parametrize(
    "argv",
    [
        ["--model", "bafenet_r18", "--size", "64", "exchange=false"],  # key=value, as train and val take
        ["exchange=false", "--model", "bafenet_r18", "--size", "64"],
        ["--model", "bafenet_r18", "--size", "64", "-o", "exchange=false"],  # -o: the same switch
    ],
)
def test_info_text_and_switches(capsys, argv):
    assert main(["info", *argv]) == 0
    out = capsys.readouterr().out
    # without the exchange: 21,712,534 - 135,046 (selector + MLP)
    assert "21,577,488" in out and "GFLOPs" in out and "GMACs" in out
    assert "{'exchange': False}" in out


def test_info_errors_are_one_line(capsys):
    assert main(["info", "--model", "bafenet_r101", "--json"]) == 1
    err = capsys.readouterr().err
    assert "unknown model 'bafenet_r101'" in err and "Traceback" not in err
    assert main(["info", "--model", "fcos_r18", "-o", "lsk=false"]) == 1
    assert "has no option lsk" in capsys.readouterr().err
    assert main(["info", "--model", "fcos_r18", "-o", "p2"]) == 1
    assert "model switch 'p2' is not of the form key=value" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("switch", "message"),
    [
        ("channels=-4", "model switch channels=-4: expected an integer >= 0"),
        ("exchange=notabool", "model switch exchange='notabool': expected true or false"),
        ("exchange=1", "model switch exchange=1: expected true or false"),
        ("channels=2.5", "model switch channels=2.5: expected an integer >= 0"),
        ("exchange_ratio=high", "model switch exchange_ratio='high': expected a number"),
        ("selector=random", "model switch selector='random': expected one of fixed, learned"),
        ("regress_ranges=[1, 2, 3]", "model switch regress_ranges=[1, 2, 3]: expected a list or null"),
        # right type, but a value the layers refuse: the builder's reason, naming the switch
        ("channels=0", "model bafenet_r18 cannot be built with channels=0: "),
        (
            "exchange_ratio=2",
            "model bafenet_r18 cannot be built with exchange_ratio=2: exchange ratio must be",
        ),
    ],
)
def test_info_refuses_bad_switch_values_in_one_line(capsys, switch, message):
    assert main(["info", "--model", "bafenet_r18", "--size", "64", switch]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    err = captured.err.splitlines()
    assert len(err) == 1 and err[0].startswith(f"bafenet: error: {message}"), captured.err


def test_switch_types_come_from_the_builders_signatures():
    assert switch_types("fcos_hr")["channels"] is int and "exchange" not in switch_types("fcos_hr")
    assert switch_types("bafenet_hr")["exchange"] is bool
    assert set(switch_types("bafenet_r50")) == set(COMMON_OPTIONS + SKY_OPTIONS + BAFENET_OPTIONS)
    assert switch_types("fcos_seg_hr")["sky_context"] is bool and "sky_context" not in switch_types("fcos_hr")
    assert switch_types("no_such_model") == {}
