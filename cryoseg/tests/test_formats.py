"""Formats in and out (cryoseg.core.formats): round trips with known positions and angles, the
Dynamo ↔ RELION angle conversion on analytic rotations, convention detection and the CLI."""
import numpy as np
import pytest
from emtable import Table
from pwem.convert.transformations import euler_matrix
from scipy.spatial.transform import Rotation

from cryoseg.core.consensus import read_star_picks
from cryoseg.core.errors import CryoSegInputError
from cryoseg.core.formats import (PointTable, TomogramGeometry, centred_angstrom, read_points,
                                  read_relion_tomograms, read_volume_list, relion_from_dynamo,
                                  relion_from_rotations, rotations_from_relion, write_dynamo_table,
                                  write_relion5_star, write_volume_list, write_voxel_star)
from cryoseg.core.mrcio import write_volume
from cryoseg.core.orientation import euler_to_matrix, normal_from_euler
from cryoseg.tests.realdata import TOMO9_ANGPIX, write_tomo9_mrc
from cryoseg.tests.test_cli import run_cli

GEOMETRY = {'TS_01': TomogramGeometry((200, 180, 61), 10.0), 'TS_02': TomogramGeometry((101, 64, 40), 7.5)}


def relion_matrix(rot, tilt, psi):
    """RELION's Euler_angles2matrix (src/euler.cpp), written out."""
    ca, sa, cb, sb, cg, sg = (f(np.radians(a)) for a in (rot, tilt, psi) for f in (np.cos, np.sin))
    return np.array([[cg * cb * ca - sg * sa, cg * cb * sa + sg * ca, -cg * sb],
                     [-sg * cb * ca - cg * sa, -sg * cb * sa + cg * ca, sg * sb],
                     [sb * ca, sb * sa, cb]])


def known_table(rng, count=7, oriented=True):
    names = np.array(['TS_01'] * 4 + ['TS_02'] * (count - 4), dtype=object)
    dims = np.array([GEOMETRY[n].dims for n in names], float)
    xyz = rng.uniform(0, 1, (count, 3)) * (dims - 1)
    xyz[0] = np.asarray(GEOMETRY['TS_01'].dims) / 2  # the centre: 0 Å
    rotations = Rotation.random(count, random_state=1).as_matrix() if oriented else None
    return PointTable(names, xyz, rotations, rng.uniform(0, 1, count))


# ------------------------------------------------------------------------------------ angles
def test_dynamo_and_relion_angles_describe_the_same_rotation():
    rng = np.random.default_rng(3)
    dynamo = np.column_stack([rng.uniform(-180, 180, 200), rng.uniform(1, 179, 200), rng.uniform(-180, 180, 200)])
    relion = relion_from_dynamo(dynamo)
    # the closed form: RELION (narot - 90, tilt, tdrot + 90)
    np.testing.assert_allclose(np.cos(np.radians(relion - np.column_stack([dynamo[:, 2] - 90, dynamo[:, 1],
                                                                           dynamo[:, 0] + 90]))), 1, atol=1e-9)
    np.testing.assert_allclose(rotations_from_relion(relion), euler_to_matrix(*dynamo.T), atol=1e-12)
    # a pair known to be equivalent in Dynamo and RELION (eulerangles' test suite)
    np.testing.assert_allclose(relion_from_dynamo([-47.2730, 1.1777, -132.3000]), [137.7, 1.1777, 42.727], atol=1e-3)


def test_relion_angles_match_relion_and_scipion_reliontomo_definitions():
    rng = np.random.default_rng(5)
    for rot, tilt, psi in np.column_stack([rng.uniform(-180, 180, 20), rng.uniform(0, 180, 20),
                                           rng.uniform(-180, 180, 20)]):
        rotation = rotations_from_relion([rot, tilt, psi])[0]
        # Scipion stores the transpose of RELION's matrix (the reference's z-axis maps onto A·e_z) ...
        np.testing.assert_allclose(rotation, relion_matrix(rot, tilt, psi).T, atol=1e-12)
        # ... as scipion-em-reliontomo's genTransformMatrix builds it: inv(euler_matrix(-angles, 'szyz'))
        reliontomo = np.linalg.inv(euler_matrix(*np.radians([-rot, -tilt, -psi]), 'szyz'))[:3, :3]
        np.testing.assert_allclose(rotation, reliontomo, atol=1e-12)
        again = relion_from_rotations(rotation[None])[0]
        np.testing.assert_allclose(rotations_from_relion(again)[0], rotation, atol=1e-9)


def test_membrane_normal_has_the_same_relion_and_dynamo_axis():
    # Dynamo (tdrot, tilt) = (0, 90): the particle z-axis is +y; RELION then has tilt 90, psi 90
    rot, tilt, psi = relion_from_dynamo([0.0, 90.0, 0.0])
    np.testing.assert_allclose([tilt, psi], [90, 90], atol=1e-9)
    np.testing.assert_allclose(relion_matrix(rot, tilt, psi)[:, 2], normal_from_euler(0, 90), atol=1e-12)


# ------------------------------------------------------------------------------------ RELION STAR
def test_relion5_round_trip_and_centre_convention(tmp_path):
    table = known_table(np.random.default_rng(0))
    path = write_relion5_star(tmp_path / 'particles.star', table, GEOMETRY)
    written = Table(fileName=str(path), tableName='particles')
    first = written[0]
    assert (first.rlnCenteredCoordinateXAngst, first.rlnCenteredCoordinateYAngst,
            first.rlnCenteredCoordinateZAngst) == (0.0, 0.0, 0.0)  # voxel size/2 is the centre (61/2 = 30.5)
    np.testing.assert_allclose(centred_angstrom([0, 0, 0], GEOMETRY['TS_02']), [-378.75, -240, -150])
    back = read_points(path)  # the geometry travels in the file's cryoseg_tomograms block
    assert back.convention.startswith('RELION 5 centred')
    assert back.names.tolist() == table.names.tolist()
    np.testing.assert_allclose(back.xyz, table.xyz, atol=1e-5)
    np.testing.assert_allclose(back.rotations, table.rotations, atol=1e-5)
    np.testing.assert_allclose(back.scores, table.scores, atol=1e-6)


def test_relion5_file_with_a_relion_tomograms_star(tmp_path):
    tomograms = Table(columns=['rlnTomoName', 'rlnTomoSizeX', 'rlnTomoSizeY', 'rlnTomoSizeZ',
                               'rlnTomoTiltSeriesPixelSize', 'rlnTomoTomogramBinning'])
    tomograms.addRow('TS_07', 4000, 4000, 1600, 1.35, 8.0)
    tomograms.write(str(tmp_path / 'tomograms.star'), tableName='global')
    geometry = read_relion_tomograms(tmp_path / 'tomograms.star')
    assert geometry['TS_07'] == TomogramGeometry((500.0, 500.0, 200.0), 10.8)
    particles = Table(columns=['rlnTomoName', 'rlnCenteredCoordinateXAngst', 'rlnCenteredCoordinateYAngst',
                               'rlnCenteredCoordinateZAngst', 'rlnOriginXAngst', 'rlnOriginYAngst',
                               'rlnOriginZAngst'])
    particles.addRow('TS_07', 0.0, 108.0, -540.0, 0.0, 0.0, 10.8)
    particles.write(str(tmp_path / 'p.star'), tableName='particles')
    with pytest.raises(CryoSegInputError, match="centred coordinates .* 'TS_07'"):
        read_points(tmp_path / 'p.star')
    table = read_points(tmp_path / 'p.star', tomograms=geometry)
    np.testing.assert_allclose(table.xyz, [[250, 260, 49]])  # centre - origin shift (RELION: coordinate - origin)


def test_voxel_star_is_detected_and_both_columns_fall_back_to_voxels(tmp_path):
    table = known_table(np.random.default_rng(1), oriented=False)
    write_voxel_star(tmp_path / 'v.star', table)
    back = read_points(tmp_path / 'v.star')
    assert back.convention.startswith('voxels') and back.rotations is None
    np.testing.assert_allclose(back.xyz, table.xyz, atol=1e-5)
    both = Table(columns=['rlnTomoName', 'rlnCoordinateX', 'rlnCoordinateY', 'rlnCoordinateZ',
                          'rlnCenteredCoordinateXAngst', 'rlnCenteredCoordinateYAngst', 'rlnCenteredCoordinateZAngst'])
    both.addRow('TS_09', 5.0, 6.0, 7.0, -100.0, -100.0, -100.0)
    both.write(str(tmp_path / 'both.star'), tableName='particles')
    assert read_points(tmp_path / 'both.star').convention.startswith('voxels')
    with_geometry = read_points(tmp_path / 'both.star', tomograms={'TS_09': TomogramGeometry((40, 40, 40), 10.0)})
    assert with_geometry.convention.startswith('RELION 5')
    np.testing.assert_allclose(with_geometry.xyz, [[10, 10, 10]])


def test_consensus_reader_takes_relion5_files_in_angstrom(tmp_path):
    table = known_table(np.random.default_rng(2))
    write_relion5_star(tmp_path / 'p.star', table, GEOMETRY)
    loaded = read_star_picks(str(tmp_path / 'p.star'), tomograms=GEOMETRY)
    assert loaded.has_angles and loaded.convention.startswith('RELION 5')
    np.testing.assert_allclose(loaded.picks['TS_02'].xyz, table.xyz[4:] * 7.5, atol=1e-4)
    np.testing.assert_allclose(loaded.picks['TS_01'].matrices[:, :3, :3], table.rotations[:4], atol=1e-5)


# ------------------------------------------------------------------------------------ Dynamo
def test_dynamo_table_round_trip_with_volume_list(tmp_path):
    table = known_table(np.random.default_rng(4))
    write_dynamo_table(tmp_path / 'p.tbl', table, {'TS_01': 1, 'TS_02': 2})
    write_volume_list(tmp_path / 'p.vll', ['/data/TS_01.mrc', '/data/TS_02.mrc'])
    raw = np.loadtxt(tmp_path / 'p.tbl')
    assert raw.shape == (7, 35)
    np.testing.assert_array_equal(raw[:, 0], np.arange(1, 8))
    np.testing.assert_array_equal(raw[:, 19], [1, 1, 1, 1, 2, 2, 2])
    np.testing.assert_allclose(raw[:, 23:26], table.xyz)
    np.testing.assert_allclose(euler_to_matrix(raw[:, 6], raw[:, 7], raw[:, 8]), table.rotations, atol=1e-12)
    assert read_volume_list(tmp_path / 'p.vll') == ['/data/TS_01.mrc', '/data/TS_02.mrc']
    back = read_points(tmp_path / 'p.tbl')
    assert back.names.tolist() == table.names.tolist() and back.convention.startswith('Dynamo')
    np.testing.assert_allclose(back.xyz, table.xyz, atol=1e-12)
    np.testing.assert_allclose(back.rotations, table.rotations, atol=1e-12)


def test_dynamo_shifts_are_added_and_bad_tables_are_refused(tmp_path):
    row = np.zeros(35)
    row[[0, 19]] = 1, 3
    row[3:9] = 0.5, -1.0, 2.0, 30.0, 60.0, 75.0
    row[23:26] = 10, 20, 30
    np.savetxt(tmp_path / 'a.tbl', row[None])
    table = read_points(tmp_path / 'a.tbl')
    np.testing.assert_allclose(table.xyz, [[10.5, 19.0, 32.0]])
    assert table.names.tolist() == ['3']  # no .vll: the index names the tomogram
    np.testing.assert_allclose(table.rotations[0][2], normal_from_euler(30, 60), atol=1e-12)
    np.savetxt(tmp_path / 'short.tbl', np.zeros((2, 20)))
    with pytest.raises(CryoSegInputError, match='at least 26 columns'):
        read_points(tmp_path / 'short.tbl')
    write_volume_list(tmp_path / 'a.vll', ['TS_01.mrc'])
    with pytest.raises(CryoSegInputError, match='index 3 is not listed'):
        read_points(tmp_path / 'a.tbl')


# ------------------------------------------------------------------------------------ IMOD, CSV, text
def test_imod_model2point_text_with_objects_and_contours(tmp_path):
    (tmp_path / 'plain.txt').write_text('  12.50  30.00  4.00\n  13.00  31.00  5.00\n')
    (tmp_path / 'contours.txt').write_text('1 12.5 30 4\n2 13 31 5\n')
    (tmp_path / 'objects.txt').write_text('1 1 12.5 30 4\n1 2 13 31 5\n2 1 1 2 3\n')
    np.testing.assert_allclose(read_points(tmp_path / 'plain.txt', 'imod').xyz, [[12.5, 30, 4], [13, 31, 5]])
    assert read_points(tmp_path / 'contours.txt', 'imod').groups.tolist() == ['1', '2']
    objects = read_points(tmp_path / 'objects.txt', 'imod')
    assert objects.groups.tolist() == ['1.1', '1.2', '2.1'] and objects.convention.startswith('IMOD')
    (tmp_path / 'ragged.txt').write_text('1 2 3\n1 1 2 3\n')
    with pytest.raises(CryoSegInputError, match='model2point'):
        read_points(tmp_path / 'ragged.txt', 'imod')


def test_csv_with_tomogram_names_and_text(tmp_path):
    (tmp_path / 'p.csv').write_text('tsId,x,y,z,score\nTS_01,1,2,3,0.5\nTS_02,4,5,6,0.7\n')
    table = read_points(tmp_path / 'p.csv')
    assert table.names.tolist() == ['TS_01', 'TS_02'] and table.convention.startswith('CSV')
    np.testing.assert_allclose(table.scores, [0.5, 0.7])
    (tmp_path / 'p.txt').write_text('# x y z group role\n1 2 3 7\n4 5 6 7 centre\n')
    text = read_points(tmp_path / 'p.txt')
    assert text.groups.tolist() == ['7', '7'] and text.roles.tolist() == ['point', 'marker']


# ------------------------------------------------------------------------------------ command line
def test_convert_command_between_formats_says_which_convention(tmp_path):
    for name, geometry in GEOMETRY.items():
        write_volume(tmp_path / f'{name}.mrc', np.zeros(geometry.dims[::-1], np.int8), geometry.pixel_size)
    table = known_table(np.random.default_rng(6))
    write_voxel_star(tmp_path / 'picks.star', table)
    tomograms = [tmp_path / 'TS_01.mrc', tmp_path / 'TS_02.mrc']
    result = run_cli('convert', tmp_path / 'picks.star', '--tomograms', *tomograms, '--out', tmp_path / 'r5.star')
    assert result.returncode == 0, result.stderr
    assert 'voxels from the first voxel' in result.stdout
    result = run_cli('convert', tmp_path / 'r5.star', '--tomograms', *tomograms, '--out', tmp_path / 'd.tbl')
    assert result.returncode == 0, result.stderr
    assert 'RELION 5 centred' in result.stdout and 'd.vll' in result.stdout
    back = read_points(tmp_path / 'd.tbl')
    np.testing.assert_allclose(back.xyz, table.xyz, atol=1e-4)
    np.testing.assert_allclose(back.rotations, table.rotations, atol=1e-4)
    assert read_volume_list(tmp_path / 'd.vll') == [str(t) for t in tomograms]
    result = run_cli('consensus', tmp_path / 'r5.star', tmp_path / 'picks.star', '--radius', 5,
                     '--tomograms', *tomograms, '--out', tmp_path / 'c.star')
    assert result.returncode == 0, result.stderr
    assert 'r5.star: RELION 5 centred' in result.stdout and '7 consensus picks' in result.stdout
    (tmp_path / 'clicks.txt').write_text('1 2 3\n')
    result = run_cli('convert', tmp_path / 'clicks.txt', '--format', 'imod', '--out', tmp_path / 'x.star')
    assert result.returncode == 2 and 'give --name' in result.stderr and 'Traceback' not in result.stderr
    result = run_cli('convert', tmp_path / 'r5.star', '--out', tmp_path / 'y.star', '--tomograms', tomograms[0])
    assert result.returncode == 0, result.stderr  # the file carries its own geometry


def test_real_annotation_through_relion5_and_dynamo_matches_itself(tmp_path):
    """EMPIAR-11658 tomogram 9's 53 ribosomes: voxel STAR -> RELION 5 -> Dynamo, and a consensus of the
    RELION 5 file (centred Å) with the original (voxels) finds every ribosome in both."""
    real = write_tomo9_mrc(tmp_path / 'tomo9.mrc')
    common = ('--tomograms', tmp_path / 'tomo9.mrc')
    assert run_cli('convert', real.star_path, *common, '--out', tmp_path / 'r5.star').returncode == 0
    centred = Table(fileName=str(tmp_path / 'r5.star'), tableName='particles')
    half = np.array([256, 256, 128]) / 2 * TOMO9_ANGPIX
    angstrom = np.array([[r.rlnCenteredCoordinateXAngst, r.rlnCenteredCoordinateYAngst,
                          r.rlnCenteredCoordinateZAngst] for r in centred])
    assert len(angstrom) == 53 and np.all(np.abs(angstrom) <= half)
    assert run_cli('convert', tmp_path / 'r5.star', *common, '--out', tmp_path / 'r.tbl').returncode == 0
    np.testing.assert_allclose(read_points(tmp_path / 'r.tbl').xyz, real.particles_zyx[:, ::-1], atol=1e-4)
    result = run_cli('consensus', tmp_path / 'r5.star', real.star_path, '--radius', 10, '--pixel-size', TOMO9_ANGPIX,
                     *common, '--out', tmp_path / 'both.star')
    assert result.returncode == 0, result.stderr
    assert 'tomo9: inputs 53 / 53 -> 53 particles, 53 kept, Jaccard 1.00' in result.stdout
