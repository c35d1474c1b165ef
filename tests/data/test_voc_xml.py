"""Safe VOC box-file parsing: values, conventions and every kind of bad file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bafenet.data.voc_xml import parse_voc_xml
from bafenet.errors import DataError


def _write(tmp_path: Path, text: str, name: str = "x.xml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_parses_boxes_unchanged_and_size(tmp_path: Path, tiny_data) -> None:
    path = _write(
        tmp_path, tiny_data.voc_xml_text("a", 320, 240, [(203, 36, 206, 40), (215.0, 38, 219, 41.5)])
    )
    annotation = parse_voc_xml(path)
    assert annotation.boxes.dtype == np.float32
    np.testing.assert_array_equal(annotation.boxes, [[203, 36, 206, 40], [215, 38, 219, 41.5]])
    assert (annotation.width, annotation.height) == (320, 240)


def test_no_objects_and_no_size(tmp_path: Path) -> None:
    annotation = parse_voc_xml(_write(tmp_path, "<annotation><filename>a</filename></annotation>"))
    assert annotation.boxes.shape == (0, 4)
    assert annotation.width is None and annotation.height is None


def test_billion_laughs_is_refused_naming_the_file(tmp_path: Path, tiny_data) -> None:
    path = _write(tmp_path, tiny_data.billion_laughs, "bomb.xml")
    with pytest.raises(DataError, match="entity") as info:
        parse_voc_xml(path)
    assert info.value.path == path
    assert str(path) in str(info.value)


def test_external_entity_is_refused(tmp_path: Path) -> None:
    secret = _write(tmp_path, "secret", "secret.txt")
    text = f'<?xml version="1.0"?><!DOCTYPE a [<!ENTITY e SYSTEM "file://{secret}">]><annotation>&e;</annotation>'
    with pytest.raises(DataError, match="DTD"):
        parse_voc_xml(_write(tmp_path, text))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("<annotation><object><name>Target</name>", "malformed XML"),
        ("", "malformed XML"),
        ("<notes/>", "expected <annotation>"),
        ("<annotation><object><name>Plane</name></object></annotation>", "'Plane'"),
        ("<annotation><object><name>Target</name></object></annotation>", "no <bndbox>"),
        (
            "<annotation><object><name>Target</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>4</xmax>"
            "</bndbox></object></annotation>",
            "no <ymax>",
        ),
        (
            "<annotation><object><name>Target</name><bndbox><xmin>one</xmin><ymin>1</ymin><xmax>4</xmax>"
            "<ymax>4</ymax></bndbox></object></annotation>",
            "not a number",
        ),
        (
            "<annotation><object><name>Target</name><bndbox><xmin>nan</xmin><ymin>1</ymin><xmax>4</xmax>"
            "<ymax>4</ymax></bndbox></object></annotation>",
            "not finite",
        ),
        ("<annotation><size><width>3.5</width><height>2</height></size></annotation>", "positive integers"),
    ],
)
def test_bad_files_raise_data_error(tmp_path: Path, text: str, message: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(DataError, match=message) as info:
        parse_voc_xml(path)
    assert info.value.path == path


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="file not found"):
        parse_voc_xml(tmp_path / "absent.xml")
