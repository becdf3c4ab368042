"""Mask post-processing against analytic ground truth (algorithms.md §1.5, §1.6)."""
import numpy as np
import pytest
from scipy import ndimage
from skimage.morphology import ball

from cryoseg.core.errors import CryoSegInputError
from cryoseg.core.morphology import grow_mask, postprocess_mask

OFF = dict(min_region_size=0, open_radius=0, keep_largest=False, fill_holes=False, grow=0)


def sphere(shape, centre, radius):
    z, y, x = np.indices(shape)
    return (z - centre[0]) ** 2 + (y - centre[1]) ** 2 + (x - centre[2]) ** 2 <= radius ** 2


def _ball(radius):
    """Ball of a possibly fractional radius (skimage.morphology.ball takes whole radii)."""
    reach = int(np.floor(radius))
    z, y, x = np.mgrid[-reach:reach + 1, -reach:reach + 1, -reach:reach + 1]
    return z ** 2 + y ** 2 + x ** 2 <= radius ** 2


def test_all_steps_off_returns_the_mask_as_uint8():
    mask = np.random.default_rng(0).random((10, 12, 14)) > 0.5
    result = postprocess_mask(mask * 7, **OFF)
    assert result.dtype == np.uint8 and result.shape == mask.shape
    np.testing.assert_array_equal(result, mask)


def test_filling_a_spherical_shell_gives_the_solid_ball():
    solid = sphere((32, 32, 32), (15.5, 15.5, 15.5), 12)
    shell = solid & ~sphere((32, 32, 32), (15.5, 15.5, 15.5), 9)
    result = postprocess_mask(shell, **{**OFF, 'fill_holes': True})
    np.testing.assert_array_equal(result, solid)


def test_background_touching_a_face_is_not_a_hole():
    cup = sphere((24, 24, 24), (12, 12, 12), 10) & ~sphere((24, 24, 24), (12, 12, 12), 7)
    cup[12:] = False  # open half shell: its inside reaches the face z = 23 through background
    np.testing.assert_array_equal(postprocess_mask(cup, **{**OFF, 'fill_holes': True}), cup)


@pytest.mark.parametrize('radius', [1, 2.5, 4])
def test_growth_by_distance_equals_dilation_with_a_ball(radius):
    np.testing.assert_array_equal(_ball(int(radius)), ball(int(radius)))
    rng = np.random.default_rng(1)
    mask = np.zeros((30, 28, 26), bool)
    mask[tuple(rng.integers(0, [30, 28, 26], size=(6, 3)).T)] = True
    mask |= sphere(mask.shape, (10, 14, 13), 5)
    expected = ndimage.binary_dilation(mask, structure=_ball(radius))
    np.testing.assert_array_equal(postprocess_mask(mask, **{**OFF, 'grow': radius}), expected)
    # slab by slab equals the whole volume at once, whatever the slab thickness
    for slab in (1, 3, 30):
        np.testing.assert_array_equal(grow_mask(mask, radius, slab=slab), expected)


@pytest.mark.parametrize('radius', [1, 3])
def test_erosion_by_distance_equals_erosion_with_a_ball(radius):
    mask = sphere((30, 30, 30), (14, 15, 15), 9) | sphere((30, 30, 30), (20, 8, 20), 6)
    mask[:, :, 25:] = True  # touches a face: the outside counts as mask, so it does not erode from there
    expected = ndimage.binary_erosion(mask, structure=ball(radius), border_value=1)
    np.testing.assert_array_equal(postprocess_mask(mask, **{**OFF, 'grow': -radius}), expected)
    for slab in (2, 7):
        np.testing.assert_array_equal(grow_mask(mask, -radius, slab=slab), expected)


def test_keep_largest_keeps_the_bigger_of_two_balls():
    big = sphere((30, 40, 40), (15, 12, 12), 8)
    small = sphere((30, 40, 40), (15, 30, 30), 5)
    result = postprocess_mask(big | small, **{**OFF, 'keep_largest': True})
    np.testing.assert_array_equal(result, big)


def test_components_touching_by_a_corner_are_one_component():
    mask = np.zeros((10, 10, 10), bool)
    mask[2:4, 2:4, 2:4] = True
    mask[4:6, 4:6, 4:6] = True  # touches the first cube at one corner only (26-connectivity)
    np.testing.assert_array_equal(postprocess_mask(mask, **{**OFF, 'min_region_size': 16}), mask)
    np.testing.assert_array_equal(postprocess_mask(mask, **{**OFF, 'min_region_size': 17}), 0)


def test_min_region_removes_an_eight_voxel_speck():
    body = sphere((30, 30, 30), (12, 12, 12), 7)
    speck = np.zeros_like(body)
    speck[24:26, 24:26, 24:26] = True
    result = postprocess_mask(body | speck, **{**OFF, 'min_region_size': 9})
    np.testing.assert_array_equal(result, body)
    np.testing.assert_array_equal(postprocess_mask(body | speck, **{**OFF, 'min_region_size': 8}),
                                  body | speck)


def test_per_slice_opening_removes_a_thin_line_but_keeps_a_big_disk():
    shape = (6, 60, 60)
    _, y, x = np.indices(shape)
    disk = (y - 20) ** 2 + (x - 20) ** 2 <= 12 ** 2
    line = (y == 45) & (x > 5) & (x < 55)
    result = postprocess_mask(disk | line, **{**OFF, 'open_radius': 2})
    np.testing.assert_array_equal(result, disk)


def test_steps_run_in_the_documented_order():
    # Growing happens after removing small regions: a speck is removed, not grown into a ball.
    shape = (30, 30, 30)
    body = sphere(shape, (12, 12, 12), 6)
    speck = np.zeros(shape, bool)
    speck[25, 25, 25] = True
    result = postprocess_mask(body | speck, **{**OFF, 'min_region_size': 2, 'grow': 2})
    np.testing.assert_array_equal(result, ndimage.binary_dilation(body, structure=ball(2)))


def test_empty_mask_stays_empty():
    empty = np.zeros((8, 8, 8), np.uint8)
    result = postprocess_mask(empty, min_region_size=5, open_radius=1, keep_largest=True, fill_holes=True,
                              grow=2)
    assert not result.any()


@pytest.mark.parametrize('mask, options, message', [
    (np.zeros((4, 4)), {}, '3-D'),
    (np.zeros((4, 4, 4)), {'min_region_size': -1}, 'Minimum region size'),
    (np.zeros((4, 4, 4)), {'min_region_size': 2.5}, 'Minimum region size'),
    (np.zeros((4, 4, 4)), {'open_radius': -2}, 'Opening radius'),
    (np.zeros((4, 4, 4)), {'grow': float('nan')}, 'Grow'),
    (np.zeros((4, 4, 4)), {'grow': 100}, 'Grow'),
])
def test_bad_arguments_get_a_clear_message(mask, options, message):
    with pytest.raises(CryoSegInputError, match=message):
        postprocess_mask(mask, **options)
