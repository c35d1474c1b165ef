import numpy as np
import pytest

from bafenet.data.imageio import to_gray
from bafenet.data.sample import Sample, box_sizes, pixel_points_to_coords, voc_to_boxes


def test_voc_numbers_are_half_open_edges():
    # <xmin>203</xmin><xmax>206</xmax>: columns 203, 204, 205 -> width 3, no "-1"
    boxes = voc_to_boxes([203, 36, 206, 39])
    assert boxes.tolist() == [[203.0, 36.0, 206.0, 39.0]]
    assert box_sizes(boxes).tolist() == [[3.0, 3.0]]


def test_points_become_pixel_centres():
    assert pixel_points_to_coords([[4, 7]]).tolist() == [[4.5, 7.5]]


def test_sample_defaults_and_shape_checks():
    s = Sample(image=np.zeros((5, 6), np.uint8), image_id="x")
    assert s.image.dtype == np.float32 and s.target_mask.shape == (5, 6)
    assert (s.sky_mask == 255).all() and s.num_targets == 0
    with pytest.raises(ValueError, match="sky_mask"):
        Sample(image=np.zeros((5, 6)), sky_mask=np.zeros((5, 5), np.uint8))


def test_gray_conversions():
    rgb = np.zeros((2, 2, 3), np.uint8)
    rgb[..., :] = 100
    assert np.allclose(to_gray(rgb), 100.0, atol=1e-3)
    rgba = np.concatenate([rgb, np.full((2, 2, 1), 255, np.uint8)], axis=2)
    assert np.allclose(to_gray(rgba), 100.0, atol=1e-3)
    sixteen = np.array([[1000, 2000], [3000, 1000]], np.uint16)
    out = to_gray(sixteen)
    assert out.min() == 0 and out.max() == 255 and out.dtype == np.float32
    assert to_gray(np.full((2, 2), 7, np.uint16)).max() == 0
