"""Builders of the hostile-input corpus: every malformed or malicious input is made here, in tmp_path.

Nothing binary is committed. :class:`Hostile` (the ``hostile`` fixture of ``conftest.py``) is
what a case's setup function receives: it copies the valid devkit and checkpoint that the
fixtures write once per session, and its methods build one bad input each.
"""

from __future__ import annotations

import copy
import hashlib
import io
import os
import shutil
import stat
import struct
import tarfile
import zipfile
import zlib
from dataclasses import dataclass
from http.server import ThreadingHTTPServer
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision.models import resnet18

# the valid devkit: synth_0000..synth_0002 in the "train" split, synth_0003 in "val" (96 x 80 px)
TRAIN_IDS = ("synth_0000", "synth_0001", "synth_0002")
VAL_ID = "synth_0003"
SECRET = "TOP-SECRET-hostile-corpus-7f3a"  # content of a file that must never reach any output


def tiny_model_overrides(devkit: Path) -> list[str]:
    """Config overrides for a tiny, fast bafenet_hr run on the test devkit (CPU, no workers)."""
    return [
        "model.name=bafenet_hr",
        "model.weights_backbone=null",
        "model.kwargs={backbone_width: 8, channels: 16, mlp_hidden: 8}",
        f"data.root={devkit}",
        "data.train_split=train",
        "data.val_split=val",
        "data.input.mode=native",
        "data.input.scale=2.0",
        "data.input.crop_size=64",
        "data.repeat=1",
        "data.workers=0",
        "train.epochs=1",
        "train.device=cpu",
        "train.optimizer=adamw",
        "train.lr=0.001",
        "train.warmup_iters=1",
        "eval.split=val",
        "eval.protocol=native",
        "eval.scale=2.0",
    ]


# ---------------------------------------------------------------------------- files
def png_bytes(array: np.ndarray) -> bytes:
    """A valid PNG of a uint8 (H, W) array."""
    buffer = io.BytesIO()
    Image.fromarray(array.astype(np.uint8), mode="L").save(buffer, format="PNG")
    return buffer.getvalue()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def bomb_png_bytes(width: int = 12000, height: int = 12000, rows: int = 16) -> bytes:
    """A small 8-bit grey PNG whose header declares ``width`` x ``height`` pixels.

    Its compressed data holds ``rows`` rows of zeros, then a broken deflate block: a reader
    that decodes before checking the size fails with a decoding error (after allocating one
    ``width * height`` byte buffer) instead of going on to upsample gigabytes, so only a
    size check made on the header refuses it with a pixel-count message.
    """
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    deflate = zlib.compressobj(9)
    pixels = deflate.compress(b"\x00" * ((width + 1) * rows)) + deflate.flush(zlib.Z_SYNC_FLUSH)
    pixels += b"\xff" * 16  # a block of the reserved type 3: invalid
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", pixels)


BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<annotation><size><width>96</width><height>80</height></size>
<object><name>&lol9;</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>4</xmax><ymax>4</ymax></bndbox></object>
</annotation>
"""


def xxe_xml(secret: Path) -> str:
    """A box file whose object name is an external entity reading ``secret`` (file:// URL)."""
    return f"""<?xml version="1.0"?>
<!DOCTYPE annotation [<!ENTITY xxe SYSTEM "{secret.resolve().as_uri()}">]>
<annotation><size><width>96</width><height>80</height></size>
<object><name>&xxe;</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>4</xmax><ymax>4</ymax></bndbox></object>
</annotation>
"""


class Payload:
    """Unpickling this object creates the folder ``marker`` (a stand-in for any code)."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self) -> tuple:
        return (os.mkdir, (self.marker,))


# ---------------------------------------------------------------------------- archives
@dataclass(frozen=True)
class Member:
    """One archive member: a file (``data``), a folder, a symlink or a hard link (``target``)."""

    name: str
    data: bytes = b""
    kind: str = "file"  # file | dir | symlink | hardlink | chardev
    target: str = ""


# a devkit the archive would deliver if nothing were wrong with it
VALID_MEMBERS = (
    Member("DenseSIRST-main/data/SIRSTdevkit/PNGImages/a.png", png_bytes(np.zeros((8, 8)))),
    Member("DenseSIRST-main/data/SIRSTdevkit/Splits/trainval.txt", b"a"),
)


def tar_bytes(members: tuple[Member, ...]) -> bytes:
    """An uncompressed tar holding ``members`` in order."""
    buffer = io.BytesIO()
    kinds = {"dir": tarfile.DIRTYPE, "symlink": tarfile.SYMTYPE, "hardlink": tarfile.LNKTYPE}
    with tarfile.open(fileobj=buffer, mode="w") as tf:
        for member in members:
            info = tarfile.TarInfo(member.name)
            if member.kind == "file":
                info.size = len(member.data)
                tf.addfile(info, io.BytesIO(member.data))
                continue
            info.type = tarfile.CHRTYPE if member.kind == "chardev" else kinds[member.kind]
            info.linkname = member.target
            info.mode = 0o755 if member.kind == "dir" else 0o644
            tf.addfile(info)
    return buffer.getvalue()


def zip_bytes(members: tuple[Member, ...]) -> bytes:
    """A zip holding ``members`` in order (symlinks stored the Unix way: mode bits + target)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for member in members:
            info = zipfile.ZipInfo(member.name)
            if member.kind == "symlink":
                info.external_attr = (stat.S_IFLNK | 0o777) << 16
                zf.writestr(info, member.target)
            else:
                info.external_attr = (stat.S_IFREG | 0o644) << 16
                zf.writestr(info, member.data)
    return buffer.getvalue()


class Hostile:
    """The tmp_path of one case and the builders of its inputs.

    Everything a case writes or reads lives under ``tmp`` (the current folder during the
    case), so a snapshot of ``tmp`` shows anything the command left behind.
    """

    def __init__(self, tmp: Path, devkit: Path, checkpoint: dict, server: ThreadingHTTPServer) -> None:
        self.tmp = tmp
        self._devkit = devkit
        self._checkpoint = checkpoint
        self._server = server
        self.marker = tmp / "PAYLOAD_RAN"  # created by any payload that runs
        self.secret = tmp / "secret.txt"
        self.secret.write_text(SECRET)

    # -- datasets
    def devkit(self) -> Path:
        """A fresh copy of the valid devkit (``tmp/devkit``) to break."""
        target = self.tmp / "devkit"
        if not target.exists():
            shutil.copytree(self._devkit, target)
        return target

    def image(self, image_id: str) -> Path:
        return self.devkit() / "PNGImages" / f"{image_id}.png"

    def box_file(self, image_id: str) -> Path:
        return self.devkit() / "SIRST" / "BBox" / f"{image_id}.xml"

    def split(self, name: str, entries: list[str]) -> Path:
        """A split file ``Splits/<name>.txt`` of the devkit copy listing ``entries``."""
        path = self.devkit() / "Splits" / f"{name}.txt"
        path.write_text("\n".join(entries))
        return path

    def blank_frame(self, image_id: str, width: int, height: int) -> None:
        """A valid devkit sample without targets, ``width`` x ``height`` px, all files consistent."""
        root = self.devkit()
        zeros = np.zeros((height, width), np.uint8)
        Image.fromarray(zeros + 40, mode="L").save(root / "PNGImages" / f"{image_id}.png")
        (root / "SIRST/BBox" / f"{image_id}.xml").write_text(
            f"<annotation><size><width>{width}</width><height>{height}</height><depth>1</depth></size>"
            "</annotation>\n"
        )
        Image.fromarray(zeros, mode="L").save(root / "SIRST/BinaryMask" / f"{image_id}_pixels0.png")
        (root / "SIRST/Point_label" / f"{image_id}_pixels0.txt").write_text("")
        Image.fromarray(zeros + 255, mode="L").save(root / "SkySeg/BinaryMask" / f"{image_id}_pixels0.png")

    def maskset(self) -> Path:
        """A mask-only dataset (``images/`` + ``masks/``) made from the devkit's images."""
        root = self.tmp / "maskset"
        (root / "images").mkdir(parents=True)
        (root / "masks").mkdir()
        for image_id in (*TRAIN_IDS, VAL_ID):
            shutil.copy(self._devkit / "PNGImages" / f"{image_id}.png", root / "images")
            shutil.copy(
                self._devkit / "SIRST/BinaryMask" / f"{image_id}_pixels0.png",
                root / "masks" / f"{image_id}.png",
            )
        return root

    def file(self, name: str, data: bytes | str) -> Path:
        """A file ``tmp/name`` with ``data``."""
        path = self.tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(data, str):
            data = data.encode("utf-8")
        path.write_bytes(data)
        return path

    def valid_png(self, name: str, size: tuple[int, int] = (96, 80)) -> Path:
        """A valid grey PNG of ``size`` (width, height) with some texture."""
        rng = np.random.default_rng(0)
        return self.file(name, png_bytes(rng.integers(20, 60, size=size[::-1])))

    def truncated_png(self, name: str) -> Path:
        """The first half of a valid PNG."""
        data = png_bytes(np.random.default_rng(0).integers(0, 255, size=(80, 96)))
        return self.file(name, data[: len(data) // 2])

    # -- checkpoints
    def torchvision_resnet18(self, name: str) -> Path:
        """A torchvision ResNet-18 state dict (64 wide, random weights) saved as ``tmp/name``."""
        path = self.tmp / name
        torch.save(resnet18().state_dict(), path)
        return path

    def checkpoint_dict(self) -> dict:
        """A deep copy of the valid checkpoint, to alter."""
        return copy.deepcopy(self._checkpoint)

    def checkpoint(self, name: str, ckpt: dict | None = None) -> Path:
        """Save ``ckpt`` (default: the valid checkpoint) as ``tmp/name`` with ``torch.save``."""
        path = self.tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(self.checkpoint_dict() if ckpt is None else ckpt, path)
        return path

    def payload_checkpoint(self, name: str) -> Path:
        """A checkpoint-shaped pickle whose loading by full unpickling runs :class:`Payload`."""
        ckpt = self.checkpoint_dict()
        ckpt["metadata"] = {"note": Payload(self.marker)}
        return self.checkpoint(name, ckpt)

    # -- archives
    def archive_url(self, name: str, data: bytes) -> str:
        """Serve ``data`` from the local HTTP server; the URL ends in ``name``."""
        self._server.files[f"/{name}"] = data
        return f"http://127.0.0.1:{self._server.server_address[1]}/{name}"


# ---------------------------------------------------------------------------- leftovers
# folders that only hold runs or downloads (``cache`` is the corpus's download root): created
# empty, they are not output; what they hold is
CONTAINERS = frozenset({"runs", "val", "predict", "cache", "downloads", "DenseSIRST"})


def snapshot(root: Path) -> dict[str, str]:
    """Every path under ``root``: folders as ``"dir"``, files by the sha256 of their bytes."""
    state = {}
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root).as_posix()
        if path.is_symlink():
            state[relative] = f"link {os.readlink(path)}"
        elif path.is_dir():
            state[relative] = "dir"
        else:
            state[relative] = hashlib.sha256(path.read_bytes()).hexdigest()
    return state


def leftovers(before: dict[str, str], after: dict[str, str]) -> list[str]:
    """What a failed command changed: new files or folders (containers aside), changed or lost files."""
    problems = []
    for path, state in after.items():
        if path in before:
            if before[path] != state:
                problems.append(f"changed: {path}")
            continue
        if not (state == "dir" and Path(path).name in CONTAINERS):  # their content is checked
            problems.append(f"left behind: {path}")
    problems += [f"lost: {path}" for path in before if path not in after]
    return problems
