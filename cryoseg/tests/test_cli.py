"""The ``cryoseg`` console command, run as users run it."""
import shutil
import subprocess

import pytest

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
