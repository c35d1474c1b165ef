"""Where a dataset folder keeps its images, masks, box files and split lists.

One function, :func:`detect_layout`, decides it for every reader, ``bafenet data check``
and the command line. The published layouts are recognised by their folder names, as
released (``ROOT/...``):

* ``densesirst``: ``PNGImages/``; masks ``SIRST/BinaryMask/``; boxes ``SIRST/BBox/``;
  splits ``Splits/`` (read by :class:`~bafenet.data.densesirst.DenseSIRST`).
* ``sirst_v2``: ``mixed/`` and ``images/*/`` (``targets``, ``backgrounds``); masks
  ``annotations/masks/``; boxes ``annotations/bboxes/``; splits ``splits/``.
* ``sirst_v1``: ``images/``; masks ``masks/``; boxes ``masks/*.xml`` (one box per image
  around all its targets); splits ``idx_427/``, ``idx_320/``.
* ``nudt_sirst``: ``images/``; masks ``masks/``; splits ``50_50/`` or ``img_idx/``.
* ``irstd1k``: ``IRSTD1k_Img/``; masks ``IRSTD1k_Label/``; splits in the root or one folder down.
* ``masks``: one image folder (``images/``, ``imgs/``, ...) and one mask folder (``masks/``,
  ``labels/``, ...); splits in the root or one folder down.
* ``folders``: the folders given as ``images=`` and ``masks=`` (``--images DIR --masks DIR``,
  ``data.images``, ``data.masks``), for any other arrangement; splits as for ``masks``.

Every layout can also be named (``layout=``, ``--layout``, ``data.layout``). The mask of
image ``S`` is ``<masks>/S<suffix>.<ext>``, the suffix detected from the file names
(``_pixels0`` for SIRST v1/v2). Images spread over several folders (SIRST-V2's
``images/targets`` and ``images/backgrounds``) are indexed together; where two folders
hold the same name, the first listed wins.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bafenet.errors import DataError

LAYOUT_NAMES = ("densesirst", "sirst_v2", "sirst_v1", "nudt_sirst", "irstd1k", "masks", "folders")
IMAGE_DIR_NAMES = ("images", "image", "imgs", "img", "irstd1k_img", "pngimages")
MASK_DIR_NAMES = ("masks", "mask", "labels", "label", "irstd1k_label", "gt", "groundtruth")


@dataclass(frozen=True)
class Layout:
    """Where one dataset folder keeps its files (every path absolute or relative to the cwd)."""

    name: str  # one of LAYOUT_NAMES
    root: Path
    image_dirs: tuple[Path, ...]  # searched in order; the first folder holding a name wins
    mask_dir: Path
    mask_suffix: str | None  # None: detected from the file names
    split_dirs: tuple[Path, ...]  # folders whose .txt files are split lists
    box_dir: Path | None = None  # VOC box files <id>.xml, if the layout has them

    @property
    def is_devkit(self) -> bool:
        return self.name == "densesirst"

    def box_file(self, image_id: str) -> Path | None:
        """The box file of ``image_id`` (it may not exist), or None for a layout without them."""
        return None if self.box_dir is None else self.box_dir / f"{image_id}.xml"


def detect_layout(
    root: str | Path,
    layout: str | None = None,
    images: str | Path | None = None,
    masks: str | Path | None = None,
) -> Layout:
    """The layout of a dataset folder: the one named, the ``images``/``masks`` folders, or detected.

    Args:
        root: the dataset folder (split lists are looked up under it).
        layout: a name of :data:`LAYOUT_NAMES`, or None to detect it from the folder names.
        images, masks: the image and mask folders, absolute or relative to ``root``
            (layout ``folders``; both are needed).

    Raises:
        DataError: naming the folder, when it is missing, a named layout's folders are not
            there, or no layout fits (the message lists the layouts and ``--images/--masks``).
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(root, "dataset folder not found")
    if images is not None or masks is not None:
        return _folders(root, images, masks)
    if layout is not None:
        if layout not in LAYOUT_NAMES:
            raise DataError(root, f"unknown layout {layout!r}; known layouts: {', '.join(LAYOUT_NAMES)}")
        if layout == "folders":
            raise DataError(root, "layout 'folders' needs --images DIR and --masks DIR")
        found = _BUILDERS[layout](root)
        if found is None:
            raise DataError(root, f"not a {layout} folder ({_EXPECTED[layout]} missing)")
        return found
    for name in LAYOUT_NAMES[:-1]:
        found = _BUILDERS[name](root)
        if found is not None:
            return found
    raise DataError(root, f"no known dataset layout ({NO_LAYOUT_HINT})")


NO_LAYOUT_HINT = (
    "expected PNGImages/ of a DenseSIRST devkit, or the images and masks of SIRST-V2, SIRST v1, "
    "NUDT-SIRST or IRSTD-1k; for any other layout give --images DIR --masks DIR"
)
"""What :func:`detect_layout` looked for, for error messages."""


def find_layout(root: str | Path) -> Layout | None:
    """The detected layout of ``root``, or None when it is not a dataset folder."""
    try:
        return detect_layout(root)
    except DataError:
        return None


# ---------------------------------------------------------------------------- builders
def _subdirs(root: Path) -> dict[str, Path]:
    """``lower-case name -> folder`` of the folders in ``root``."""
    return {path.name.lower(): path for path in sorted(root.iterdir()) if path.is_dir()}


def _one_level_down(root: Path) -> tuple[Path, ...]:
    return (root, *(path for path in sorted(root.iterdir()) if path.is_dir()))


def _densesirst(root: Path) -> Layout | None:
    if not (root / "PNGImages").is_dir():
        return None
    return Layout(
        "densesirst",
        root,
        (root / "PNGImages",),
        root / "SIRST" / "BinaryMask",
        "_pixels0",
        (root / "Splits",),
        root / "SIRST" / "BBox",
    )


def _sirst_v2(root: Path) -> Layout | None:
    mask_dir = root / "annotations" / "masks"
    image_dirs = [root / "mixed"] if (root / "mixed").is_dir() else []
    if (root / "images").is_dir():
        image_dirs += [path for path in sorted((root / "images").iterdir()) if path.is_dir()]
    if not (mask_dir.is_dir() and image_dirs):
        return None
    box_dir = root / "annotations" / "bboxes"
    return Layout(
        "sirst_v2",
        root,
        tuple(image_dirs),
        mask_dir,
        None,
        (root / "splits",),
        box_dir if box_dir.is_dir() else None,
    )


def _with_split_dirs(name: str, root: Path, split_names: tuple[str, ...], box_files: bool) -> Layout | None:
    """``images/`` + ``masks/`` and at least one of the named split folders."""
    split_dirs = tuple(root / folder for folder in split_names if (root / folder).is_dir())
    if not ((root / "images").is_dir() and (root / "masks").is_dir() and split_dirs):
        return None
    box_dir = root / "masks" if box_files else None
    return Layout(name, root, (root / "images",), root / "masks", None, split_dirs, box_dir)


def _sirst_v1(root: Path) -> Layout | None:
    return _with_split_dirs("sirst_v1", root, ("idx_427", "idx_320"), box_files=True)


def _nudt_sirst(root: Path) -> Layout | None:
    return _with_split_dirs("nudt_sirst", root, ("50_50", "img_idx"), box_files=False)


def _irstd1k(root: Path) -> Layout | None:
    images, masks = root / "IRSTD1k_Img", root / "IRSTD1k_Label"
    if not (images.is_dir() and masks.is_dir()):
        return None
    return Layout("irstd1k", root, (images,), masks, None, _one_level_down(root))


def _masks(root: Path) -> Layout | None:
    """Any folder with one recognisable image folder and one mask folder."""
    subdirs = _subdirs(root)
    images = _pick(subdirs, IMAGE_DIR_NAMES, ("img", "image"))
    masks = _pick(subdirs, MASK_DIR_NAMES, ("mask", "label"))
    if images is None or masks is None:
        return None
    return Layout("masks", root, (images,), masks, None, _one_level_down(root))


def _pick(subdirs: dict[str, Path], names: tuple[str, ...], hints: tuple[str, ...]) -> Path | None:
    """The folder with one of ``names``, else the only one whose name contains a hint."""
    for name in names:
        if name in subdirs:
            return subdirs[name]
    guesses = [path for name, path in subdirs.items() if any(hint in name for hint in hints)]
    return guesses[0] if len(guesses) == 1 else None


def _folders(root: Path, images: str | Path | None, masks: str | Path | None) -> Layout:
    if images is None or masks is None:
        raise DataError(root, "give both the image folder (--images DIR) and the mask folder (--masks DIR)")
    image_dir, mask_dir = root / Path(images).expanduser(), root / Path(masks).expanduser()
    for folder in (image_dir, mask_dir):
        if not folder.is_dir():
            raise DataError(folder, "folder not found")
    return Layout("folders", root, (image_dir,), mask_dir, None, _one_level_down(root))


_BUILDERS = {
    "densesirst": _densesirst,
    "sirst_v2": _sirst_v2,
    "sirst_v1": _sirst_v1,
    "nudt_sirst": _nudt_sirst,
    "irstd1k": _irstd1k,
    "masks": _masks,
}
_EXPECTED = {
    "densesirst": "PNGImages/",
    "sirst_v2": "annotations/masks/ with mixed/ or images/*/",
    "sirst_v1": "images/, masks/ and idx_427/ or idx_320/",
    "nudt_sirst": "images/, masks/ and 50_50/ or img_idx/",
    "irstd1k": "IRSTD1k_Img/ and IRSTD1k_Label/",
    "masks": "an image folder (images/, imgs/, ...) and a mask folder (masks/, labels/, ...)",
}
