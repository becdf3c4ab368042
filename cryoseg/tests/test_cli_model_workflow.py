"""``cryoseg model_workflow`` as users run it: clicked points in a STAR file → oriented cropping points."""
import shutil
import subprocess

import numpy as np
from emtable import Table


def run_cli(*args):
    executable = shutil.which('cryoseg')
    assert executable, 'the cryoseg console script is not installed'
    return subprocess.run([executable, *map(str, args)], capture_output=True, text=True)


def write_points(path, rows):
    table = Table(columns=['rlnCoordinateX', 'rlnCoordinateY', 'rlnCoordinateZ', 'rlnGroupNumber'])
    for row in rows:
        table.addRow(*row)
    table.write(str(path), tableName='particles')


def test_vesicle_points_give_outward_relion_and_dynamo_angles(tmp_path):
    rng = np.random.default_rng(0)
    centre = np.array([120.0, 100.0, 60.0])
    directions = rng.standard_normal((200, 3))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    directions = directions[np.abs(directions[:, 2]) < 0.6][:30]
    clicks = centre + 30 * directions + rng.normal(0, 0.3, (30, 3))
    write_points(tmp_path / 'points.star', [(*p, 4) for p in clicks] + [(5.0, 5.0, 5.0, 8)])
    out = tmp_path / 'crop.star'
    result = run_cli('model_workflow', tmp_path / 'points.star', '--model', 'vesicle', '--spacing', 80,
                     '--angpix', 10, '--in-plane', 'random', '--out', out)
    assert result.returncode == 0, result.stderr
    assert 'group 8: FAILED' in result.stderr and 'at least 4' in result.stderr
    assert 'group 4: sphere' in result.stdout
    table = Table(fileName=str(out), tableName='particles')
    xyz = np.array([[row.rlnCoordinateX, row.rlnCoordinateY, row.rlnCoordinateZ] for row in table])
    assert {row.cryosegGroup for row in table} == {4}
    radial = (xyz - centre) / np.linalg.norm(xyz - centre, axis=1, keepdims=True)
    np.testing.assert_allclose(np.linalg.norm(xyz - centre, axis=1), 30, atol=0.6)
    tilt, psi = (np.radians([getattr(row, name) for row in table]) for name in ('rlnAngleTilt', 'rlnAnglePsi'))
    # RELION's particle z-axis: the third column of Euler_angles2matrix(rot, tilt, psi)
    relion_axis = np.column_stack([-np.cos(psi) * np.sin(tilt), np.sin(psi) * np.sin(tilt), np.cos(tilt)])
    assert np.degrees(np.arccos(np.clip(np.sum(relion_axis * radial, 1), -1, 1))).max() < 2.5
    tdrot, dyn_tilt = (np.radians([getattr(row, name) for row in table]) for name in ('cryosegTdrot', 'cryosegTilt'))
    dynamo_axis = np.column_stack([np.sin(dyn_tilt) * np.sin(tdrot), np.sin(dyn_tilt) * np.cos(tdrot),
                                   np.cos(dyn_tilt)])
    np.testing.assert_allclose(dynamo_axis, relion_axis, atol=1e-5)
    mean_nn = np.sort(np.linalg.norm(xyz[:, None] - xyz[None], axis=2), axis=1)[:, 1].mean()
    assert abs(mean_nn / 8.0 - 1) < 0.05


def test_filament_text_points_and_errors(tmp_path):
    path = tmp_path / 'filament.txt'
    path.write_text('\n'.join(f'{20 + 10 * t} {30 + 5 * t} 40 1' for t in range(8)) + '\n')
    out = tmp_path / 'sub.star'
    result = run_cli('model_workflow', path, '--model', 'filament', '--spacing', 27.5, '--twist', -166.7,
                     '--angpix', 10, '--out', out)
    assert result.returncode == 0, result.stderr
    table = Table(fileName=str(out), tableName='particles')
    xyz = np.array([[row.rlnCoordinateX, row.rlnCoordinateY, row.rlnCoordinateZ] for row in table])
    np.testing.assert_allclose(np.linalg.norm(np.diff(xyz, axis=0), axis=1), 2.75, rtol=0.02)
    narot = np.array([row.cryosegNarot for row in table])
    np.testing.assert_allclose((np.diff(narot) + 180) % 360 - 180, -166.7, atol=1e-3)

    bad = run_cli('model_workflow', tmp_path / 'missing.star', '--spacing', 10, '--angpix', 10, '--out', out)
    assert bad.returncode == 2 and 'does not exist' in bad.stderr and 'Traceback' not in bad.stderr
    lone = tmp_path / 'lone.txt'
    lone.write_text('1 2 3 1\n')
    failed = run_cli('model_workflow', lone, '--model', 'vesicle', '--spacing', 10, '--angpix', 10, '--out', out)
    assert failed.returncode == 2 and 'no geometry could be fitted' in failed.stderr


def test_refine_against_the_tomogram(tmp_path):
    from cryoseg.core.mrcio import write_volume
    from cryoseg.tests.membrane_phantoms import BumpyVesicle, vesicle_volume

    vesicle = BumpyVesicle(np.array([48.0, 48.0, 32.0]), np.array([30.0, 28.0, 23.0]))
    write_volume(tmp_path / 'T.mrc', vesicle_volume(vesicle, noise=0.3), 10.0)
    write_points(tmp_path / 'points.star', [(*p, 1) for p in vesicle.clicks(12, 2.5, seed=1)])
    errors = {}
    for extra in ([], ['--tomogram', tmp_path / 'T.mrc', '--membrane', 30]):
        out = tmp_path / f'crop{len(extra)}.star'
        result = run_cli('model_workflow', tmp_path / 'points.star', '--model', 'vesicle', '--spacing', 40,
                         '--angpix', 10, '--out', out, *extra)
        assert result.returncode == 0, result.stderr
        assert ('refined: ' in result.stdout and 'outliers' in result.stdout) == bool(extra)
        table = Table(fileName=str(out), tableName='particles')
        xyz = np.array([[row.rlnCoordinateX, row.rlnCoordinateY, row.rlnCoordinateZ] for row in table])
        tdrot, tilt = (np.radians([getattr(row, name) for row in table]) for name in ('cryosegTdrot', 'cryosegTilt'))
        axis = np.column_stack([np.sin(tilt) * np.sin(tdrot), np.sin(tilt) * np.cos(tdrot), np.cos(tilt)])
        errors[bool(extra)] = np.degrees(np.arccos(np.clip(np.sum(axis * vesicle.normals(xyz), 1), -1, 1)))
    assert np.median(errors[True]) < 2.5 < 8.0 < np.median(errors[False])

    bad = run_cli('model_workflow', tmp_path / 'points.star', '--spacing', 40, '--angpix', 10, '--refine',
                  '--out', tmp_path / 'x.star')
    assert bad.returncode == 2 and '--tomogram' in bad.stderr and 'Traceback' not in bad.stderr
