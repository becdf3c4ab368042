import os

import mrcfile
import numpy as np
import pytest

from cryoseg.core.mrcio import (MrcError, open_volume, read_info, read_volume, require_tomogram,
                                write_volume, xyz_to_zyx)


def test_round_trip_keeps_data_voxel_size_and_origin(tmp_path):
    data = np.random.default_rng(0).standard_normal((5, 7, 9)).astype(np.float32)
    path = write_volume(tmp_path / 'vol.mrc', data, (2.5, 3.0, 3.5), origin=(10.0, -20.0, 30.5))
    back, info = read_volume(path)
    np.testing.assert_array_equal(back, data)
    assert info.shape_zyx == (5, 7, 9) and info.shape_xyz == (9, 7, 5)
    assert info.voxel_size == pytest.approx((2.5, 3.0, 3.5))
    assert info.origin == pytest.approx((10.0, -20.0, 30.5))
    assert oct(os.stat(path).st_mode & 0o777) == '0o644'


def test_write_is_atomic_and_leaves_no_temporary_file(tmp_path):
    write_volume(tmp_path / 'a.mrc', np.zeros((2, 2, 2), np.float32), 1.0)
    with pytest.raises(Exception):
        write_volume(tmp_path / 'b.mrc', np.zeros((2, 2, 2), complex), 1.0)  # unsupported mode
    assert sorted(os.listdir(tmp_path)) == ['a.mrc']


def test_memory_map_reads_lazily_in_zyx_order(tmp_path):
    data = np.arange(4 * 5 * 6, dtype=np.float32).reshape(4, 5, 6)
    write_volume(tmp_path / 'v.mrc', data, 1.0)
    xyz = np.array([[5, 1, 3]])
    with open_volume(tmp_path / 'v.mrc') as (mapped, info):
        assert isinstance(mapped, np.memmap)
        z, y, x = xyz_to_zyx(xyz)[0]
        assert mapped[z, y, x] == data[3, 1, 5]


def test_not_an_mrc_file_names_the_file(tmp_path):
    path = tmp_path / 'notes.mrc'
    path.write_text('this is not a volume\n' * 100)
    with pytest.raises(MrcError, match='notes.mrc'):
        read_info(path)


def test_truncated_file_gives_clear_error(tmp_path):
    path = write_volume(tmp_path / 'cut.mrc', np.ones((8, 8, 8), np.float32), 1.0)
    with open(path, 'r+b') as handle:
        handle.truncate(os.path.getsize(path) - 100)
    with pytest.raises(MrcError, match='cut.mrc.*not a readable MRC'):
        read_volume(path)


def test_corrupt_header_gives_clear_error(tmp_path):
    path = write_volume(tmp_path / 'bad.mrc', np.ones((4, 4, 4), np.float32), 1.0)
    with mrcfile.open(path, 'r+') as mrc:
        mrc.header.map = b'XXXX'
    with pytest.raises(MrcError, match='bad.mrc'):
        read_info(path)


def test_missing_file(tmp_path):
    with pytest.raises(MrcError, match='file not found'):
        read_info(tmp_path / 'nothing.mrc')


def test_image_is_not_a_tomogram(tmp_path):
    path = write_volume(tmp_path / 'image.mrc', np.ones((16, 16), np.float32), 1.0)
    with pytest.raises(MrcError, match='3-D volume'):
        require_tomogram(path)
    assert require_tomogram(write_volume(tmp_path / 't.mrc', np.ones((3, 4, 5), np.float32), 1.0)).is_volume
