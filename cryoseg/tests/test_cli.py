"""The ``cryoseg`` console command, run as users run it."""
import shutil
import subprocess

import numpy as np
import pytest

from cryoseg.core.mrcio import read_volume
from cryoseg.core.phantom import read_truth


def run_cli(*args):
    executable = shutil.which('cryoseg')
    assert executable, 'the cryoseg console script is not installed'
    return subprocess.run([executable, *map(str, args)], capture_output=True, text=True)


def test_phantom_writes_tomograms_and_ground_truth(tmp_path):
    result = run_cli('phantom', tmp_path, '--count', 2, '--seed', 4)
    assert result.returncode == 0, result.stderr
    assert 'TS_02' in result.stdout
    for name in ('TS_01.mrc', 'TS_01_truth.json', 'TS_01_particles.star', 'TS_02.mrc'):
        assert (tmp_path / name).exists()
    assert len(read_truth(tmp_path / 'TS_01_truth.json').particles) == 23


def test_phantom_writes_the_cell_preset_with_its_wedge(tmp_path):
    result = run_cli('phantom', tmp_path, '--size', 'cell')
    assert result.returncode == 0, result.stderr
    truth = read_truth(tmp_path / 'TS_01_truth.json')
    assert truth.voxel_size == 31.36 and truth.shape_xyz == [128, 128, 96]
    assert len(truth.particles) > 100 and len(truth.membranes) == 1
    volume, _ = read_volume(tmp_path / 'TS_01.mrc')
    power = np.abs(np.fft.rfftn(volume - volume.mean())) ** 2
    kz = np.abs(np.fft.fftfreq(volume.shape[0]))[:, None, None]
    kx = np.fft.rfftfreq(volume.shape[2])[None, None, :]
    beyond_wedge = np.broadcast_to(kz > np.tan(np.radians(60)) * kx + 0.05, power.shape)
    # only the 8-bit rounding (white, a few % of the power) is left beyond the 60° wedge
    assert power[beyond_wedge].mean() < 0.1 * power[~beyond_wedge].mean()


def test_bad_arguments_give_a_message_not_a_traceback(tmp_path):
    result = run_cli('phantom', tmp_path, '--count', 0)
    assert result.returncode == 2
    assert 'count must be at least 1' in result.stderr and 'Traceback' not in result.stderr
    result = run_cli('phantom', tmp_path, '--size', 'huge')
    assert result.returncode == 2 and 'invalid choice' in result.stderr


@pytest.mark.parametrize('args', [['--help'], ['phantom', '--help']])
def test_help(args):
    result = run_cli(*args)
    assert result.returncode == 0 and 'usage: cryoseg' in result.stdout
