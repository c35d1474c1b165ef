"""Safe parsing of DenseSIRST's Pascal-VOC-style box files (``SIRST/BBox/<id>.xml``).

Parsed with :mod:`defusedxml` and DTDs refused outright, so entity-expansion ("billion
laughs") and external-entity files fail fast with a :class:`~bafenet.errors.DataError`
naming the file instead of eating memory. Coordinates are read as numbers (``203`` or
``203.0``) and used unchanged: they are 0-based half-open pixel edges (see
:mod:`bafenet.data.sample`). Every object must be named ``Target``.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import defusedxml
import defusedxml.ElementTree as SafeET
import numpy as np

from bafenet.data.sample import voc_to_boxes
from bafenet.errors import DataError

TARGET_CLASS = "Target"
_COORDS = ("xmin", "ymin", "xmax", "ymax")


@dataclass(frozen=True)
class VocAnnotation:
    """The content of one box file: ``boxes`` (N, 4) float32 x1 y1 x2 y2 and the ``<size>``."""

    boxes: np.ndarray
    width: int | None
    height: int | None


def _number(path: Path, element: ET.Element, tag: str, where: str) -> float:
    child = element.find(tag)
    if child is None or child.text is None or not child.text.strip():
        raise DataError(path, f"{where} has no <{tag}>")
    try:
        value = float(child.text.strip())
    except ValueError:
        raise DataError(path, f"{where}: <{tag}> is not a number ({child.text.strip()!r})") from None
    if not math.isfinite(value):
        raise DataError(path, f"{where}: <{tag}> is not finite ({child.text.strip()!r})")
    return value


def _size(path: Path, root: ET.Element) -> tuple[int | None, int | None]:
    size = root.find("size")
    if size is None:
        return None, None
    width = _number(path, size, "width", "<size>")
    height = _number(path, size, "height", "<size>")
    if width != int(width) or height != int(height) or width <= 0 or height <= 0:
        raise DataError(path, f"<size> must be positive integers, got {width} x {height}")
    return int(width), int(height)


def parse_voc_xml(path: str | Path, *, skip_objects_without_box: bool = False) -> VocAnnotation:
    """Read a VOC box file. Raises :class:`DataError` (naming ``path``) on any problem.

    ``skip_objects_without_box``: pass over an ``<object>`` without ``<bndbox>`` (SIRST v1/v2
    write one into target-free frames) instead of refusing the file.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DataError(path, "file not found") from None
    except OSError as exc:
        raise DataError(path, f"cannot read ({exc.strerror or exc})") from None
    try:
        root = SafeET.fromstring(data, forbid_dtd=True)
    except defusedxml.DefusedXmlException as exc:
        raise DataError(
            path,
            f"XML with a DTD or entity declarations is refused (possible entity-expansion attack: {exc})",
        ) from None
    except ET.ParseError as exc:
        raise DataError(path, f"malformed XML ({exc})") from None
    if root.tag != "annotation":
        raise DataError(path, f"root element is <{root.tag}>, expected <annotation>")
    width, height = _size(path, root)
    rows = []
    for index, obj in enumerate(root.iter("object")):
        where = f"object {index}"
        name = (obj.findtext("name") or "").strip()
        if name != TARGET_CLASS:
            raise DataError(path, f"{where} is named {name!r}, expected {TARGET_CLASS!r}")
        bndbox = obj.find("bndbox")
        if bndbox is None:
            if skip_objects_without_box:
                continue
            raise DataError(path, f"{where} has no <bndbox>")
        rows.append([_number(path, bndbox, tag, where) for tag in _COORDS])
    return VocAnnotation(boxes=voc_to_boxes(np.array(rows, dtype=np.float64)), width=width, height=height)
