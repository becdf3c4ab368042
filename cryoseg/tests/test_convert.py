"""Scipion position conventions of cryoseg.convert, on real tomo objects (no project needed)."""
import numpy as np
import pytest
from tomo.constants import BOTTOM_LEFT_CORNER, CENTER_GRAVITY, SCIPION
from tomo.objects import Tomogram

from cryoseg.convert import append_coordinates, origin_offset_px, tomogram_path
from cryoseg.core.mrcio import write_volume


@pytest.fixture
def tomogram(tmp_path):
    path = write_volume(tmp_path / 'TS_07.mrc', np.zeros((20, 30, 40), np.float32), 5.0)
    tomo = Tomogram()
    tomo.setFileName(str(path))
    tomo.setSamplingRate(5.0)
    tomo.setTsId('TS_07')
    tomo.setObjId(3)
    return tomo


def test_default_origin_offset_is_minus_half_the_size(tomogram):
    np.testing.assert_allclose(origin_offset_px(tomogram), [-20, -15, -10])


def test_bulk_positions_equal_scipion_bottom_left_corner_positions(tomogram):
    xyz = np.array([[0, 0, 0], [39, 29, 19], [12.25, 3.5, 7.75]])
    coords = []
    append_coordinates(coords, tomogram, xyz, group_ids=[1, 2, 3], scores=[0.5, 0.6, 0.7])
    for coord, expected in zip(coords, xyz):
        assert coord.getPosition(BOTTOM_LEFT_CORNER) == pytest.approx(tuple(expected))
        assert coord.getTomoId() == 'TS_07' and coord.getVolId() == 3
    assert coords[1].getPosition(CENTER_GRAVITY) == pytest.approx((19, 14, 9))
    assert [c.getGroupId() for c in coords] == [1, 2, 3]
    assert coords[2].getScore() == pytest.approx(0.7)


def test_custom_origin_is_honoured(tomogram):
    tomogram.setOrigin()  # an explicit origin; setShiftsInOrigin alone edits a temporary
    tomogram.setShiftsInOrigin(-50.0, 25.0, 0.0)  # Å
    coords = []
    append_coordinates(coords, tomogram, [[4, 5, 6]])
    assert coords[0].getPosition(BOTTOM_LEFT_CORNER) == pytest.approx((4, 5, 6))
    assert coords[0].getPosition(SCIPION) == pytest.approx((4 - 10, 5 + 5, 6))


def test_matrices_are_stored(tomogram):
    matrix = np.eye(4)
    matrix[:3, :3] = [[0, -1, 0], [1, 0, 0], [0, 0, 1]]
    coords = []
    append_coordinates(coords, tomogram, [[1, 2, 3]], matrices=[matrix])
    np.testing.assert_allclose(coords[0].getMatrix(), matrix)


def test_format_suffix_is_stripped(tomogram):
    tomogram.setFileName(tomogram.getFileName() + ':mrc')
    assert tomogram_path(tomogram).endswith('TS_07.mrc')
