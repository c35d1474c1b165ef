"""FCOS locations and point-to-box assignment (reference §1.8).

Locations of level ``l`` (stride ``s``) sit at ``((j + 0.5) s, (i + 0.5) s)``, row-major.
A location is a candidate for a box when it lies strictly inside the box (all four
distances > 0) and the largest distance is inside the level's regress range
(``lo <= max(l, t, r, b) <= hi``); among several candidates the box of smallest area wins;
otherwise the location is background. Distances are in input pixels (not stride units).

Official regress ranges for P3..P5: (-1, 64), (64, 128), (128, 256). Centre sampling
(off by default, as the official model) restricts candidates to a square of half-side
``radius * stride`` around the box centre, clipped to the box.
"""

from __future__ import annotations

import torch
from torch import Tensor

OFFICIAL_REGRESS_RANGES: tuple[tuple[float, float], ...] = ((-1.0, 64.0), (64.0, 128.0), (128.0, 256.0))
_INF = 1e8


def level_points(height: int, width: int, stride: int, device: torch.device | None = None) -> Tensor:
    """(height * width, 2) location centres ``x y`` of one level, row-major."""
    xs = (torch.arange(width, device=device, dtype=torch.float32) + 0.5) * stride
    ys = (torch.arange(height, device=device, dtype=torch.float32) + 0.5) * stride
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([grid_x.reshape(-1), grid_y.reshape(-1)], dim=1)


class LocationGrid:
    """All locations of a pyramid, with the stride and regress range of each (P total)."""

    def __init__(
        self,
        sizes: list[tuple[int, int]],
        strides: list[int],
        regress_ranges: list[tuple[float, float]] | tuple[tuple[float, float], ...],
        device: torch.device | None = None,
    ) -> None:
        if not len(sizes) == len(strides) == len(regress_ranges):
            raise ValueError("one stride and one regress range per level are needed")
        self.sizes = list(sizes)
        self.counts = [h * w for h, w in sizes]
        self.points = torch.cat(
            [level_points(h, w, s, device) for (h, w), s in zip(sizes, strides, strict=True)]
        )  # (P, 2)
        self.strides = torch.cat(
            [torch.full((n,), float(s), device=device) for n, s in zip(self.counts, strides, strict=True)]
        )  # (P,)
        self.ranges = torch.cat(
            [
                torch.tensor([lohi], device=device, dtype=torch.float32).expand(n, 2)
                for n, lohi in zip(self.counts, regress_ranges, strict=True)
            ]
        )  # (P, 2)


def assign_targets(
    grid: LocationGrid,
    boxes: Tensor,
    labels: Tensor,
    num_classes: int,
    center_sampling: bool = False,
    center_radius: float = 1.5,
) -> tuple[Tensor, Tensor]:
    """Assign every location of ``grid`` to at most one box.

    Args:
        grid: the locations.
        boxes: (N, 4) x1 y1 x2 y2 in input pixels (N may be 0).
        labels: (N,) class indices in [0, num_classes).
        num_classes: the background label is ``num_classes``.
        center_sampling: restrict candidates to the box centre region.
        center_radius: half-side of that region in strides.

    Returns:
        labels (P,) int64 (``num_classes`` = background) and distance targets (P, 4)
        ``l t r b`` (zeros on background).
    """
    points = grid.points
    num_points = points.shape[0]
    if boxes.numel() == 0:
        return (
            torch.full((num_points,), num_classes, dtype=torch.int64, device=points.device),
            points.new_zeros((num_points, 4)),
        )
    boxes = boxes.to(points)
    x, y = points[:, 0:1], points[:, 1:2]  # (P, 1)
    distances = torch.stack(
        [x - boxes[:, 0], y - boxes[:, 1], boxes[:, 2] - x, boxes[:, 3] - y], dim=2
    )  # (P, N, 4)
    if center_sampling:
        centre_x = (boxes[:, 0] + boxes[:, 2]) / 2
        centre_y = (boxes[:, 1] + boxes[:, 3]) / 2
        radius = grid.strides[:, None] * center_radius  # (P, 1)
        region = torch.stack(
            [
                torch.maximum(centre_x - radius, boxes[:, 0]),
                torch.maximum(centre_y - radius, boxes[:, 1]),
                torch.minimum(centre_x + radius, boxes[:, 2]),
                torch.minimum(centre_y + radius, boxes[:, 3]),
            ],
            dim=2,
        )  # (P, N, 4)
        inside = (
            torch.stack(
                [x - region[..., 0], y - region[..., 1], region[..., 2] - x, region[..., 3] - y], dim=2
            ).amin(dim=2)
            > 0
        )
    else:
        inside = distances.amin(dim=2) > 0  # (P, N)
    largest = distances.amax(dim=2)  # (P, N)
    in_range = (largest >= grid.ranges[:, 0:1]) & (largest <= grid.ranges[:, 1:2])
    areas = ((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))[None].expand(num_points, -1)
    areas = torch.where(inside & in_range, areas, torch.full_like(areas, _INF))
    min_area, best = areas.min(dim=1)  # (P,)
    assigned = labels.to(points.device, torch.int64)[best]
    background = min_area >= _INF
    assigned = torch.where(background, torch.full_like(assigned, num_classes), assigned)
    box_targets = distances[torch.arange(num_points, device=points.device), best]  # (P, 4)
    box_targets = box_targets.masked_fill(background[:, None], 0.0)
    return assigned, box_targets
