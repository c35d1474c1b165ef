from __future__ import annotations

import torch

from bafenet.models.targets import OFFICIAL_REGRESS_RANGES, LocationGrid, assign_targets, level_points

BG = 1  # background label with one class


def _grid(ranges=((-1.0, 64.0),)) -> LocationGrid:
    """One stride-8 level of 4 x 4 locations at x, y in {4, 12, 20, 28}."""
    return LocationGrid([(4, 4)], [8], list(ranges))


def _assign(boxes, grid=None, **kwargs):
    grid = grid or _grid()
    boxes = torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)
    return assign_targets(grid, boxes, torch.zeros(len(boxes), dtype=torch.int64), 1, **kwargs)


def test_points_are_cell_centres_row_major():
    points = level_points(2, 3, 8)
    assert points.tolist() == [[4, 4], [12, 4], [20, 4], [4, 12], [12, 12], [20, 12]]


def test_point_strictly_inside_is_positive_with_distances():
    labels, targets = _assign([[10, 10, 14, 15]])
    positive = (labels == 0).nonzero().flatten().tolist()
    assert positive == [5]  # location (12, 12)
    assert targets[5].tolist() == [2, 2, 2, 3]
    assert targets[labels == BG].abs().sum() == 0


def test_box_with_no_location_strictly_inside_gets_no_positive():
    labels, _ = _assign([[12, 12, 15, 15]])  # (12, 12) lies on the left/top edge
    assert (labels == BG).all()


def test_smallest_box_wins_and_regress_range_applies():
    labels, targets = _assign([[0, 0, 32, 32], [10, 10, 14, 14]])
    assert (labels == 0).sum() == 16  # the large box covers all 16 locations
    assert targets[5].tolist() == [2, 2, 2, 2]  # (12, 12) goes to the small box
    assert targets[0].tolist() == [4, 4, 28, 28]
    labels, _ = _assign([[0, 0, 32, 32]], grid=_grid(((-1.0, 20.0),)))
    # only locations whose largest distance is <= 20 stay positive
    assert (labels == 0).nonzero().flatten().tolist() == [5, 6, 9, 10]


def test_center_sampling_restricts_to_the_centre_region():
    labels, _ = _assign([[0, 0, 32, 32]], center_sampling=True, center_radius=1.0)
    # centre 16 +- 8 -> (8, 24): locations 12 and 20 in each axis
    assert (labels == 0).nonzero().flatten().tolist() == [5, 6, 9, 10]
    labels, _ = _assign([[0, 0, 32, 32]])
    assert (labels == 0).all()


def test_empty_image_is_all_background():
    grid = LocationGrid([(8, 8), (4, 4), (2, 2)], [8, 16, 32], OFFICIAL_REGRESS_RANGES)
    labels, targets = assign_targets(grid, torch.zeros(0, 4), torch.zeros(0, dtype=torch.int64), 1)
    assert labels.shape == (84,) and (labels == BG).all()
    assert targets.shape == (84, 4) and targets.abs().sum() == 0


def test_official_ranges_send_boxes_to_levels_by_size():
    grid = LocationGrid([(32, 32), (16, 16), (8, 8)], [8, 16, 32], OFFICIAL_REGRESS_RANGES)
    level = torch.cat([torch.full((n,), i) for i, n in enumerate(grid.counts)])
    one = torch.zeros(1, dtype=torch.int64)
    small, _ = assign_targets(grid, torch.tensor([[40.0, 40.0, 60.0, 60.0]]), one, 1)
    assert set(level[small == 0].tolist()) == {0}  # max distance < 20: P3 only
    large, targets = assign_targets(grid, torch.tensor([[0.0, 0.0, 200.0, 200.0]]), one, 1)
    # no P3 location has all distances <= 64; P4 takes max in [64, 128], P5 in [128, 256]
    assert set(level[large == 0].tolist()) == {1, 2}
    largest = targets.amax(dim=1)
    assert (largest[(large == 0) & (level == 1)] <= 128).all()
    assert (largest[(large == 0) & (level == 2)] >= 128).all()
