"""Invalid samples: training and evaluation read every sample once before they start.

A sample is invalid when its reader refuses it (a missing or undecodable file, a mask of
another size than its image, a broken box file, ...). By default the first one stops the
run, naming its file and every other invalid sample of the split; with
``data.skip_invalid`` (``--skip-invalid``) they are all left out with one warning, and the
caller records them (``summary.json`` of a training run, ``metrics.json`` of ``bafenet val``)
so that a number always says what it excluded. ``bafenet data check`` lists every problem.
"""

from __future__ import annotations

import warnings
from typing import Any

from tqdm import tqdm

from bafenet.errors import DataError

SKIP_HINT = "leave invalid samples out with --skip-invalid or data.skip_invalid=true"


def find_invalid(dataset: Any, progress: bool = True) -> list[tuple[str, DataError]]:
    """``(image_id, error)`` of every sample of ``dataset`` its reader refuses, in order.

    ``dataset`` is a reader with ``ids`` and ``load(image_id)`` (every reader of bafenet.data);
    each sample is decoded once (and kept, for a reader with ``cache=True``). ``progress``:
    a tqdm bar on stderr.
    """
    invalid = []
    for image_id in tqdm(dataset.ids, desc="read", unit="img", disable=not progress, leave=False):
        try:
            dataset.load(image_id)
        except DataError as exc:
            invalid.append((image_id, exc))
    return invalid


def screen_samples(dataset: Any, split: str | None, skip_invalid: bool, progress: bool = True) -> list[str]:
    """Refuse a dataset holding an invalid sample, or (``skip_invalid``) leave every one out.

    Returns:
        One line per left-out sample (``"<file>: <problem>"``), empty when all are valid.

    Raises:
        DataError: naming the first invalid sample's file, the names of all of them and how
            to leave them out (without ``skip_invalid``).
    """
    invalid = find_invalid(dataset, progress)
    if not invalid:
        return []
    where = f"split {split!r}" if split is not None else "the dataset"
    names = ", ".join(image_id for image_id, _ in invalid)
    if not skip_invalid:
        first = invalid[0][1]
        raise DataError(
            first.path, f"{first.problem} ({len(invalid)} invalid sample(s) in {where}: {names}; {SKIP_HINT})"
        )
    bad = {image_id for image_id, _ in invalid}
    if len(bad) == len(set(dataset.ids)):
        first = invalid[0][1]
        raise DataError(first.path, f"{first.problem} (every sample of {where} is invalid: {names})")
    dataset.ids = [image_id for image_id in dataset.ids if image_id not in bad]
    lines = [str(error) for _, error in invalid]
    warnings.warn(
        f"left out {len(invalid)} invalid sample(s) of {where} ({names}): " + "; ".join(lines), stacklevel=2
    )
    return lines
