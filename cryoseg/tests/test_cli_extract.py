"""``cryoseg extract`` run as a user runs it, on a volume whose every voxel is distinct."""
import shutil
import subprocess

import numpy as np
import pytest
from emtable import Table

from cryoseg.core.mrcio import read_volume, write_volume

SHAPE = (40, 48, 56)  # z, y, x
PICKS = [(20, 24, 18), (30, 16, 22), (8, 40, 30), (52, 24, 20)]  # the last is 3 px from the x face
ANGLES = [(10.0, 20.0, 30.0), (40.0, 50.0, 60.0), (70.0, 80.0, 90.0), (0.0, 0.0, 0.0)]


def run_cli(*args):
    executable = shutil.which('cryoseg')
    assert executable, 'the cryoseg console script is not installed'
    return subprocess.run([executable, *map(str, args)], capture_output=True, text=True)


def write_star(path, picks, tomo_name='TS_03', angles=True):
    columns = ['rlnTomoName', 'rlnCoordinateX', 'rlnCoordinateY', 'rlnCoordinateZ']
    columns += ['rlnAngleRot', 'rlnAngleTilt', 'rlnAnglePsi'] if angles else []
    table = Table(columns=columns)
    for pick, angle in zip(picks, ANGLES):
        table.addRow(tomo_name, *map(float, pick), *(angle if angles else ()))
    table.addRow('TS_99', 1.0, 2.0, 3.0, *((0.0, 0.0, 0.0) if angles else ()))  # another tomogram's row
    table.write(str(path), tableName='particles')
    return path


@pytest.fixture
def data(tmp_path):
    volume = np.random.default_rng(4).standard_normal(SHAPE).astype(np.float32)
    tomo = write_volume(tmp_path / 'TS_03.mrc', volume, 7.5)
    return volume, tomo, write_star(tmp_path / 'picks.star', PICKS)


def listing(folder):
    return list(Table(fileName=str(folder / 'TS_03_subtomograms.star'), tableName='particles'))


def test_boxes_are_exact_listed_with_coordinates_and_angles_and_border_particles_reported(tmp_path, data):
    volume, tomo, star = data
    result = run_cli('extract', tomo, star, '--box', 16, '--out', tmp_path / 'out')
    assert result.returncode == 0, result.stderr
    assert '3 subtomograms of 16 px at 7.500' in result.stdout
    assert '1 particle(s) skipped' in result.stdout and '(rows 4)' in result.stdout
    rows = listing(tmp_path / 'out')
    assert len(rows) == 3
    for row, (x, y, z), angles in zip(rows, PICKS, ANGLES):
        assert (row.rlnCoordinateX, row.rlnCoordinateY, row.rlnCoordinateZ) == (x, y, z)
        assert (row.rlnAngleRot, row.rlnAngleTilt, row.rlnAnglePsi) == pytest.approx(angles, abs=1e-9)
        box, info = read_volume(row.rlnImageName)
        np.testing.assert_array_equal(box, volume[z - 8:z + 8, y - 8:y + 8, x - 8:x + 8])
        assert info.voxel_size == pytest.approx((7.5, 7.5, 7.5))

    inverted = run_cli('extract', tomo, star, '--box', 16, '--out', tmp_path / 'inv', '--invert')
    assert inverted.returncode == 0, inverted.stderr
    for plain, negative in zip(rows, listing(tmp_path / 'inv')):
        np.testing.assert_array_equal(read_volume(negative.rlnImageName)[0], -read_volume(plain.rlnImageName)[0])


def test_padding_downsampling_and_normalisation(tmp_path, data):
    _, tomo, star = data
    result = run_cli('extract', tomo, star, '--box', 16, '--out', tmp_path / 'out', '--bin', 2,
                     '--normalize', '--border', 'pad')
    assert result.returncode == 0, result.stderr
    rows = listing(tmp_path / 'out')
    assert len(rows) == 4 and 'skipped' not in result.stdout
    for row in rows:
        box, info = read_volume(row.rlnImageName)
        assert box.shape == (8, 8, 8) and info.voxel_size[0] == pytest.approx(15.0)
        assert abs(box.mean()) < 1e-5 and box.std() == pytest.approx(1.0, abs=1e-5)


def test_coordinates_picked_at_another_sampling_are_rescaled(tmp_path, data):
    volume, tomo, _ = data
    star = write_star(tmp_path / 'bin2.star', [np.array(p) / 2 for p in PICKS[:2]], angles=False)
    result = run_cli('extract', tomo, star, '--box', 16, '--out', tmp_path / 'out', '--coords-sampling', 15.0)
    assert result.returncode == 0, result.stderr
    for row, (x, y, z) in zip(listing(tmp_path / 'out'), PICKS):
        np.testing.assert_array_equal(read_volume(row.rlnImageName)[0],
                                      volume[z - 8:z + 8, y - 8:y + 8, x - 8:x + 8])


@pytest.mark.parametrize('args, message', [
    (['--box', 1], 'box size must be a whole number'),
    (['--box', 16, '--bin', 0.5], 'downsampling factor must be 1 or more'),
])
def test_bad_settings_give_a_message_not_a_traceback(tmp_path, data, args, message):
    _, tomo, star = data
    result = run_cli('extract', tomo, star, '--out', tmp_path / 'out', *args)
    assert result.returncode == 2 and message in result.stderr and 'Traceback' not in result.stderr


def test_bad_star_files_give_a_message_not_a_traceback(tmp_path, data):
    _, tomo, _ = data
    other = write_star(tmp_path / 'other.star', PICKS, tomo_name='TS_05')
    result = run_cli('extract', tomo, other, '--box', 16, '--out', tmp_path / 'out')
    assert result.returncode == 2 and "no row of" in result.stderr and 'TS_05' in result.stderr
    table = Table(columns=['rlnMicrographName', 'rlnCoordinateX'])
    table.addRow('a', 1.0)
    table.write(str(tmp_path / 'twod.star'), tableName='particles')
    result = run_cli('extract', tomo, tmp_path / 'twod.star', '--box', 16, '--out', tmp_path / 'out')
    assert result.returncode == 2 and 'no rlnCoordinateX/Y/Z' in result.stderr and 'Traceback' not in result.stderr
    result = run_cli('extract', tmp_path / 'missing.mrc', other, '--box', 16, '--out', tmp_path / 'out')
    assert result.returncode == 2 and 'file not found' in result.stderr
    result = run_cli('extract', tomo, tmp_path / 'missing.star', '--box', 16, '--out', tmp_path / 'out')
    assert result.returncode == 2 and 'no such file' in result.stderr
