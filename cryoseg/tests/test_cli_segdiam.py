"""``cryoseg segdiam_pick`` run as users run it, on phantoms with known particles and gold beads."""
import shutil
import subprocess

import numpy as np
import pytest
from emtable import Table

from cryoseg.core.mrcio import write_volume
from cryoseg.core.phantom import write_sample_data
from cryoseg.core.segdiam import box_and_mask

PHANTOM = dict(noise_std=0.4, texture_amplitude=0.1, particle_diameters=(180.0,), particles_per_class=(20,),
               sphere_vesicle_radii=(), ellipsoid_vesicle_radii=(), filament=False, gold_beads=3)


def run_cli(*args):
    executable = shutil.which('cryoseg')
    assert executable, 'the cryoseg console script is not installed'
    return subprocess.run([executable, *map(str, args)], capture_output=True, text=True)


@pytest.fixture(scope='module')
def sample(tmp_path_factory):
    folder = tmp_path_factory.mktemp('segdiam')
    return folder, write_sample_data(folder, count=2, seed=1, **PHANTOM)


def test_segdiam_pick_writes_picks_box_and_mask(sample, tmp_path):
    folder, truths = sample
    out = tmp_path / 'picks.star'
    mask = np.zeros(truths['TS_01'].shape_xyz[::-1], np.uint8)
    mask[:, :, :128] = 1
    write_volume(tmp_path / 'm1.mrc', mask, 10.0)
    write_volume(tmp_path / 'm2.mrc', np.ones_like(mask), 10.0)
    result = run_cli('segdiam_pick', folder / 'TS_01.mrc', folder / 'TS_02.mrc', '--out', out,
                     '--mask', tmp_path / 'm1.mrc', tmp_path / 'm2.mrc')
    assert result.returncode == 0, result.stderr
    table = Table(fileName=str(out), tableName='particles')
    rows = {name: np.array([[r.rlnCoordinateX, r.rlnCoordinateY, r.rlnCoordinateZ] for r in table
                            if r.rlnTomoName == name]) for name in truths}
    for name, truth in truths.items():
        centres = np.array([p['centre'] for p in truth.particles])
        distance = np.linalg.norm(rows[name][:, None] - centres[None], axis=2).min(axis=1)
        assert np.all(distance < 2.0)  # blob-detector maxima, sub-voxel: within 20 Å of a 180 Å particle
    assert np.all(rows['TS_01'][:, 0] < 128) and len(rows['TS_02']) >= 18
    diameters = np.array([r.cryosegDiameter for r in table])
    assert np.median(diameters) == pytest.approx(180, abs=10)
    box, mask_diameter = box_and_mask(diameters.max(), 10.0)
    assert f'box size: {box} px' in result.stdout
    assert f'mask diameter: {mask_diameter:.1f} Å' in result.stdout


def test_segdiam_pick_hac_and_no_estimate_message(sample, tmp_path):
    folder, _ = sample
    result = run_cli('segdiam_pick', folder / 'TS_01.mrc', '--out', tmp_path / 'a.star', '--hac', '--angpix', 10)
    assert result.returncode == 0, result.stderr
    assert 'box size: 32 px' in result.stdout  # 1.5 × ~185 Å / 10 Å = 28 px, rounded up
    result = run_cli('segdiam_pick', folder / 'TS_01.mrc', '--out', tmp_path / 'b.star',
                     '--diameter-range', 900, 1000)
    assert result.returncode == 2 and 'no size estimate' in result.stderr and 'Traceback' not in result.stderr
    assert not (tmp_path / 'b.star').exists()
    result = run_cli('segdiam_pick', folder / 'TS_01.mrc', '--out', tmp_path / 'c.star', '--mask', 'x.mrc', 'y.mrc')
    assert result.returncode == 2 and 'one --mask per tomogram' in result.stderr


def test_segdiam_pick_on_the_real_tomogram_with_defaults(tmp_path):
    """A new user's first run on EMPIAR-11658 tomogram 9: no option, the pixel size from the header."""
    from cryoseg.core.evaluation import score_points
    from cryoseg.tests.realdata import MATCH_RADIUS_A, write_tomo9_mrc

    tomogram = write_tomo9_mrc(tmp_path / 'tomo9.mrc')
    result = run_cli('segdiam_pick', tmp_path / 'tomo9.mrc', '--out', tmp_path / 'picks.star')
    assert result.returncode == 0, result.stderr
    table = Table(fileName=str(tmp_path / 'picks.star'), tableName='particles')
    xyz = np.array([[r.rlnCoordinateX, r.rlnCoordinateY, r.rlnCoordinateZ] for r in table])
    score = score_points(xyz, tomogram.particles_zyx[:, ::-1], MATCH_RADIUS_A / tomogram.angpix)
    assert score.recall >= 0.8
    diameters = np.array([r.cryosegDiameter for r in table])
    assert 230.0 <= np.median(diameters) <= 310.0
    box, mask_diameter = box_and_mask(diameters.max(), tomogram.angpix)
    assert f'box size: {box} px' in result.stdout and f'mask diameter: {mask_diameter:.1f} Å' in result.stdout
