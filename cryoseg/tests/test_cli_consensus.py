"""``cryoseg consensus`` and ``cryoseg remove_duplicates`` on STAR tables, run as users run them."""
import numpy as np
from emtable import Table
from scipy.spatial.transform import Rotation

from cryoseg.tests.test_cli import run_cli

COLUMNS = ['rlnTomoName', 'rlnCoordinateX', 'rlnCoordinateY', 'rlnCoordinateZ']
ANGLES = ['rlnAngleRot', 'rlnAngleTilt', 'rlnAnglePsi']


def write_star(path, rows, angles=None):
    table = Table(columns=COLUMNS + (ANGLES if angles is not None else []))
    for index, (ts_id, *xyz) in enumerate(rows):
        table.addRow(ts_id, *map(float, xyz), *([] if angles is None else map(float, angles[index])))
    table.write(str(path), tableName='particles')
    return path


def read_star(path):
    table = Table(fileName=str(path), tableName='particles')
    return table, np.array([[float(getattr(r, f'rlnCoordinate{a}')) for a in 'XYZ'] for r in table])


def test_consensus_of_two_tables_at_different_pixel_sizes(tmp_path):
    rng = np.random.default_rng(0)
    truth = rng.uniform(20, 200, (12, 3))
    truth[:, 0] += np.arange(12) * 40  # well separated
    first = write_star(tmp_path / 'a.star', [('TS_01', *p) for p in truth + rng.normal(0, 0.3, truth.shape)]
                       + [('TS_01', 900, 900, 50)], angles=np.tile([0, 0, 0], (13, 1)))
    binned = truth[:10] / 2  # bin 2, misses the last two particles
    second = write_star(tmp_path / 'b.star', [('TS_01', *p) for p in binned] + [('TS_02', 5, 5, 5)],
                        angles=np.tile([90, 0, 0], (11, 1)))
    out = tmp_path / 'consensus.star'
    result = run_cli('consensus', first, second, '--radius', 30, '--consensus', -1, '--pixel-size', 10, 20,
                     '--out', out, '--difference', 1)
    assert result.returncode == 0, result.stderr
    assert 'TS_01: inputs 13 / 10 -> 13 particles, 10 kept, Jaccard 0.77' in result.stdout
    table, xyz = read_star(out)
    assert len(xyz) == 10 and {r.rlnTomoName for r in table} == {'TS_01'}
    assert all(int(r.cryosegVotes) == 2 and r.cryosegSets == '1,2' for r in table)
    expected = truth[:10]
    assert np.abs(np.sort(xyz, 0) - np.sort(expected, 0)).max() < 1.0  # pixels of the first table
    # RELION rot 0 and 90 with tilt 0: the mean rotation is 45° about z
    matrices = Rotation.from_euler('ZYZ', [[float(r.rlnAngleRot), float(r.rlnAngleTilt), float(r.rlnAnglePsi)]
                                           for r in table], degrees=True)
    np.testing.assert_allclose(np.abs(matrices.magnitude()), np.radians(45), atol=1e-6)
    only_first, xyz_only = read_star(tmp_path / 'consensus_only1.star')
    assert len(xyz_only) == 3
    assert any(np.allclose(p, [900, 900, 50]) for p in xyz_only)


def test_or_keeps_a_tomogram_only_the_second_table_has_and_empty_results_are_written(tmp_path):
    first = write_star(tmp_path / 'a.star', [('TS_01', 10, 10, 10), ('TS_01', 50, 50, 50)])
    second = write_star(tmp_path / 'b.star', [('TS_02', 10, 10, 10), ('TS_02', 60, 60, 60)])
    result = run_cli('consensus', first, second, '--radius', 5, '--consensus', 1, '--out', tmp_path / 'or.star')
    assert result.returncode == 0, result.stderr
    table, xyz = read_star(tmp_path / 'or.star')
    assert sorted(r.rlnTomoName for r in table) == ['TS_01', 'TS_01', 'TS_02', 'TS_02']
    result = run_cli('consensus', first, second, '--radius', 5, '--out', tmp_path / 'and.star')
    assert result.returncode == 0, result.stderr
    assert '0 consensus picks' in result.stdout and (tmp_path / 'and.star').exists()


def test_remove_duplicates(tmp_path):
    path = write_star(tmp_path / 'a.star', [('TS_01', 10, 10, 10), ('TS_01', 11, 10, 10),
                                            ('TS_01', 40, 10, 10)])
    result = run_cli('remove_duplicates', path, '--radius', 3, '--keep', 'mean', '--out', tmp_path / 'd.star')
    assert result.returncode == 0, result.stderr
    _, xyz = read_star(tmp_path / 'd.star')
    np.testing.assert_allclose(np.sort(xyz[:, 0]), [10.5, 40])


def test_user_mistakes_give_messages_not_tracebacks(tmp_path):
    first = write_star(tmp_path / 'a.star', [('TS_01', 10, 10, 10), ('TS_01', 50, 50, 50)])
    Table(columns=['rlnTomoName', 'rlnFoo']).write(str(tmp_path / 'bad.star'), tableName='particles')
    cases = [(['consensus', first, first, '--radius', 5, '--consensus', 3], 'between 1 and the number'),
             (['consensus', first, tmp_path / 'missing.star', '--radius', 5], 'no such file'),
             (['consensus', first, tmp_path / 'bad.star', '--radius', 5], 'rlnCoordinateX'),
             (['consensus', first, '--radius', 5], 'at least two'),
             (['consensus', first, first, '--radius', 5, '--pixel-size', 1, 2, 3], 'one per input')]
    for args, message in cases:
        result = run_cli(*args, '--out', tmp_path / 'x.star')
        assert result.returncode == 2, (args, result.stderr)
        assert message in result.stderr and 'Traceback' not in result.stderr
