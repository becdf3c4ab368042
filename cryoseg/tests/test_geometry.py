"""Geometry fits, cropping-point sampling and the per-group workflow against analytic ground truth
(algorithms.md §3.6)."""
import numpy as np
import pytest
from emtable import Table
from scipy.spatial.transform import Rotation

from cryoseg.core import geometry
from cryoseg.core.model_workflow import (ModelParameters, crop_points_for_group, crop_table_rows,
                                         read_user_points, run_model_workflow, split_groups)
from cryoseg.core.orientation import matrix_to_euler
from cryoseg.core.surface_sampling import nearest_neighbour_distances, sample_mesh


def angles_between(a, b):
    a = np.asarray(a, float) / np.linalg.norm(a, axis=-1, keepdims=True)
    b = np.asarray(b, float) / np.linalg.norm(b, axis=-1, keepdims=True)
    return np.degrees(np.arccos(np.clip(np.sum(a * b, axis=-1), -1, 1)))


def assert_even_spacing(points, spacing):
    distances = nearest_neighbour_distances(points)
    assert abs(distances.mean() / spacing - 1) < 0.05, distances.mean()
    assert distances.min() >= 0.85 * spacing, distances.min()


def unit_vectors(rng, count):
    vectors = rng.standard_normal((count, 3))
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


# --------------------------------------------------------------------------- sphere
@pytest.fixture
def noisy_cap():
    """R = 100 at (400, 300, 150): 36 points in a band |z − cz| < 0.6 R, σ = 1 px, plus 4 outliers."""
    rng = np.random.default_rng(3)
    centre = np.array([400.0, 300.0, 150.0])
    directions = unit_vectors(rng, 400)
    directions = directions[np.abs(directions[:, 2]) < 0.6][:36]
    points = centre + 100 * directions + rng.normal(0, 1, (36, 3))
    outliers = centre + rng.uniform(-160, 160, (4, 3))
    return centre, np.vstack([points, outliers])


def test_sphere_fit_with_outliers(noisy_cap):
    centre, points = noisy_cap
    sphere, report = geometry.fit_sphere(points)
    assert np.linalg.norm(sphere.centre - centre) < 1.5
    assert abs(sphere.radius - 100) / 100 < 0.01
    assert report.points_used <= 37 and report.points_total == 40 and report.rms < 1.6


def test_sphere_cropping_points_on_surface_outward_and_evenly_spaced(noisy_cap):
    centre, points = noisy_cap
    result = crop_points_for_group(points, ModelParameters(model_type='sphere', spacing=10.0))
    sphere = result.surface
    assert np.abs(np.linalg.norm(result.positions - sphere.centre, axis=1) - sphere.radius).max() < 0.5
    assert angles_between(result.normals, result.positions - centre).max() < 2.0
    assert_even_spacing(result.positions, 10.0)
    assert result.report.rms == pytest.approx(geometry.fit_sphere(points)[1].rms)


def test_sphere_offset_and_marker_exclusion(noisy_cap):
    _, points = noisy_cap
    top = np.array([400.0, 300.0, 250.0])
    result = crop_points_for_group(points, ModelParameters(model_type='sphere', spacing=10.0, offset=-5.0,
                                                           exclusion_radius=30.0), marker=top)
    radii = np.linalg.norm(result.positions - result.surface.centre, axis=1)
    np.testing.assert_allclose(radii, result.surface.radius - 5.0, atol=1e-9)
    assert np.linalg.norm(result.positions - top, axis=1).min() > 30.0
    assert len(result.positions) < len(crop_points_for_group(points, ModelParameters('sphere', 10.0)).positions)


@pytest.mark.parametrize('points, reason', [
    (np.eye(3), 'at least 4'),
    (np.column_stack([np.random.default_rng(0).uniform(0, 50, (20, 2)), np.full(20, 7.0)]), 'coplanar'),
])
def test_underdetermined_sphere(points, reason):
    with pytest.raises(geometry.UnderdeterminedGeometryError, match=reason):
        geometry.fit_sphere(points)


# --------------------------------------------------------------------------- ellipsoid
def test_rotated_ellipsoid_radii_and_axes():
    rng = np.random.default_rng(8)
    axes = Rotation.random(random_state=8).as_matrix()  # rows: body axes in the lab
    radii = np.array([120.0, 80.0, 50.0])
    centre = np.array([300.0, 260.0, 120.0])
    points = centre + (unit_vectors(rng, 200) * radii) @ axes + rng.normal(0, 0.5, (200, 3))
    ellipsoid, report = geometry.fit_ellipsoid(points)
    np.testing.assert_allclose(ellipsoid.radii, radii, rtol=0.01)
    axis_errors = angles_between(ellipsoid.axes, axes)
    assert np.minimum(axis_errors, 180 - axis_errors).max() < 2.0  # an axis and its opposite are the same
    assert np.linalg.det(ellipsoid.axes) == pytest.approx(1.0)
    assert report.model == 'ellipsoid' and report.rms < 1.0

    result = crop_points_for_group(points, ModelParameters(model_type='ellipsoid', spacing=12.0))
    assert_even_spacing(result.positions, 12.0)
    assert np.abs(ellipsoid.distances(result.positions)).max() < 0.5
    body = (result.positions - ellipsoid.centre) @ ellipsoid.axes.T
    analytic = (body / ellipsoid.radii ** 2) @ ellipsoid.axes
    assert angles_between(result.normals, analytic).max() < 1e-4
    assert np.all(np.sum(result.normals * (result.positions - ellipsoid.centre), axis=1) > 0)


def test_exact_ellipsoid_radii_come_back_positive():
    """Regression for tomo.utils.fit_ellipsoid's element-wise product: radii (30, 20, 10) were negative."""
    directions = unit_vectors(np.random.default_rng(1), 60)
    ellipsoid, report = geometry.fit_ellipsoid(directions * [30.0, 20.0, 10.0] + [5, 6, 7], robust=False)
    np.testing.assert_allclose(ellipsoid.radii, [30, 20, 10], rtol=1e-9)
    np.testing.assert_allclose(ellipsoid.centre, [5, 6, 7], atol=1e-9)
    assert report.method == 'rotated quadric'


def test_flat_points_fall_back_from_rotated_ellipsoid():
    directions = unit_vectors(np.random.default_rng(2), 30)
    with pytest.raises(geometry.UnderdeterminedGeometryError, match='at least 9'):
        geometry.fit_ellipsoid(directions[:8] * 20)


# --------------------------------------------------------------------------- membrane by levels
def shuffled_levels(surface_point, rng, levels=(40, 48, 56, 64, 72, 80), per_level=12):
    points = [surface_point(rng, z) for z in levels for _ in range(per_level)]
    points = np.array(points)
    return points[rng.permutation(len(points))]


@pytest.mark.parametrize('subdivision', [0, 2])
def test_cylinder_levels_normals_radial_and_outward(subdivision):
    rng = np.random.default_rng(4)
    axis_xy = np.array([120.0, 110.0])

    def on_cylinder(rng, z):
        angle = rng.uniform(0, 2 * np.pi)
        return [*(axis_xy + 40 * np.array([np.cos(angle), np.sin(angle)]) + rng.normal(0, 0.1, 2)), z]

    points = shuffled_levels(on_cylinder, rng)
    params = ModelParameters(model_type='membraneByLevels', spacing=8.0, mesh_edge=5.0, subdivision=subdivision)
    result = crop_points_for_group(points, params)
    radial = np.column_stack([result.positions[:, :2] - axis_xy, np.zeros(len(result.positions))])
    assert angles_between(result.normals, radial).max() < 3.0
    assert np.abs(np.linalg.norm(radial, axis=1) - 40).max() < 0.6
    assert_even_spacing(result.positions, 8.0)
    # an explicit inside marker on the axis agrees; one far outside flips every normal
    marked = crop_points_for_group(points, params, marker=np.array([*axis_xy, 60.0]))
    np.testing.assert_allclose(marked.normals, result.normals)
    flipped = crop_points_for_group(points, params, marker=np.array([*axis_xy + 400, 60.0]))
    radial = np.column_stack([flipped.positions[:, :2] - axis_xy, np.zeros(len(flipped.positions))])
    assert angles_between(flipped.normals, -radial).max() < 3.0


def test_plane_levels_normals_flip_with_the_centre():
    rng = np.random.default_rng(6)
    normal = np.array([1.0, -0.3, 0.0]) / np.linalg.norm([1.0, -0.3, 0.0])

    def on_plane(rng, z):
        y = rng.uniform(0, 100)
        return [0.3 * y + 50 + rng.normal(0, 0.05), y, z]

    points = shuffled_levels(on_plane, rng, per_level=8)
    params = ModelParameters(model_type='membraneByLevels', spacing=8.0, mesh_edge=5.0)
    behind = crop_points_for_group(points, params, marker=np.array([0.0, 50.0, 60.0]))
    assert angles_between(behind.normals, normal).max() < 3.0
    front = crop_points_for_group(points, params, marker=np.array([150.0, 50.0, 60.0]))
    assert angles_between(front.normals, -normal).max() < 3.0
    distance = (behind.positions - [50, 0, 0]) @ normal
    assert np.abs(distance).max() < 0.5


def test_membrane_levels_cap_triangles_and_need_two_levels():
    rng = np.random.default_rng(9)
    ring = [[50 + 30 * np.cos(a), 50 + 30 * np.sin(a), z] for z in (10, 20, 30)
            for a in rng.uniform(0, 2 * np.pi, 10)]
    mesh, report = geometry.fit_membrane_levels(ring, control_interval=2.0, subdivision=3, max_triangles=3000)
    assert len(mesh.faces) <= 3000 and report.points_used == 30
    with pytest.raises(geometry.UnderdeterminedGeometryError, match='at least 2 z levels'):
        geometry.fit_membrane_levels([[0, 0, 5], [10, 0, 5], [0, 10, 5], [10, 10, 5], [3, 3, 40]])


# --------------------------------------------------------------------------- general surface
def test_general_surface_closed_blob_and_open_patch():
    rng = np.random.default_rng(12)
    blob = 100 + 40 * unit_vectors(rng, 80)
    result = crop_points_for_group(blob, ModelParameters(model_type='general', spacing=8.0, smoothing=0.2))
    assert angles_between(result.normals, result.positions - 100).max() < 5.0
    assert np.abs(np.linalg.norm(result.positions - 100, axis=1) - 40).max() < 1.0
    assert_even_spacing(result.positions, 8.0)

    u, v = rng.uniform(-50, 50, (2, 60))
    patch = np.column_stack([u, v, 0.002 * (u ** 2 + v ** 2)]) + 100
    params = ModelParameters(model_type='general', spacing=8.0, smoothing=0.2)
    up = crop_points_for_group(patch, params, marker=np.array([100.0, 100.0, 50.0]))
    x, y = up.positions[:, 0] - 100, up.positions[:, 1] - 100
    analytic = np.column_stack([-0.004 * x, -0.004 * y, np.ones(len(x))])
    assert angles_between(up.normals, analytic).max() < 3.0
    down = crop_points_for_group(patch, params, marker=np.array([100.0, 100.0, 150.0]))
    assert np.all(down.normals[:, 2] < 0)


def test_mesh_sampling_spacing_on_a_square():
    vertices = np.array([[0, 0, 0], [300, 0, 0], [300, 200, 0], [0, 200, 0]], float)
    points, normals = sample_mesh(vertices, np.array([[0, 1, 2], [0, 2, 3]]), 10.0, seed=3)
    assert_even_spacing(points, 10.0)
    np.testing.assert_allclose(normals, np.broadcast_to([0, 0, 1], normals.shape))


# --------------------------------------------------------------------------- filaments
def straight_path():
    start, direction = np.array([20.0, 30.0, 40.0]), np.array([1.0, 2.0, 0.5]) / np.linalg.norm([1.0, 2.0, 0.5])
    return start, direction, start + np.outer(np.linspace(0, 150, 6), direction)


def test_helix_rise_twist_and_axis():
    start, direction, path = straight_path()
    params = ModelParameters(model_type='filamentHelix', spacing=2.75, twist=-166.7)
    result = crop_points_for_group(path, params)
    steps = np.linalg.norm(np.diff(result.positions, axis=0), axis=1)
    np.testing.assert_allclose(steps, 2.75, rtol=0.02)
    assert angles_between(result.normals, direction).max() < 0.1
    _, _, narot = matrix_to_euler(result.matrices[:, :3, :3])
    np.testing.assert_allclose((np.diff(narot) + 180) % 360 - 180, -166.7, atol=1e-6)
    assert len(result.positions) == int(150 / 2.75) + 1

    on_helix = crop_points_for_group(path, ModelParameters(model_type='filamentHelix', spacing=5.0, twist=30.0,
                                                           helix_radius=8.0))
    offsets = on_helix.positions - start
    radial = offsets - np.outer(offsets @ direction, direction)
    np.testing.assert_allclose(np.linalg.norm(radial, axis=1), 8.0, atol=1e-6)
    np.testing.assert_allclose(np.diff(offsets @ direction), 5.0, rtol=0.02)


def test_curved_filament_spacing_follows_the_arc():
    t = np.linspace(0, np.pi, 9)
    arc = np.column_stack([100 + 80 * np.cos(t), 100 + 80 * np.sin(t), np.full(9, 50.0)])
    result = crop_points_for_group(arc, ModelParameters(model_type='filamentHelix', spacing=4.0, twist=60.0,
                                                        smoothing=0.0))
    np.testing.assert_allclose(np.linalg.norm(np.diff(result.positions, axis=0), axis=1), 4.0, rtol=0.02)
    tangents = np.column_stack([-(result.positions[:, 1] - 100), result.positions[:, 0] - 100,
                                np.zeros(len(result.positions))])
    assert angles_between(result.normals, tangents).max() < 2.0


def test_rings_radius_count_and_radial_normals():
    start, direction, path = straight_path()
    params = ModelParameters(model_type='filamentRings', spacing=10.0, ring_radius=12.0, subunits_per_ring=6,
                             in_plane='tangent')
    result = crop_points_for_group(path, params)
    offsets = result.positions - start
    along = offsets @ direction
    radial = offsets - np.outer(along, direction)
    np.testing.assert_allclose(np.linalg.norm(radial, axis=1), 12.0, atol=0.5)
    assert len(result.positions) == 6 * (int(150 / 10) + 1)
    assert angles_between(result.normals, radial).max() < 1e-4
    np.testing.assert_allclose(result.matrices[:, 0, :3] @ direction, 1.0, atol=1e-9)


# --------------------------------------------------------------------------- workflow and files
def test_failed_group_is_reported_and_the_others_complete(noisy_cap):
    _, points = noisy_cap
    groups = {7: dict(points=points), 3: dict(points=points[:3]), 12: dict(points=points + 500)}
    workflow = run_model_workflow(groups, ModelParameters(model_type='sphere', spacing=10.0))
    assert [r.group_id for r in workflow.results] == [7, 12]
    assert list(workflow.failures) == [3] and 'at least 4' in workflow.failures[3]
    rows = workflow.report_rows()
    assert [row['group'] for row in rows] == [3, 7, 12] and rows[0]['status'] == 'failed'


def test_auto_model_uses_names_and_shapes(noisy_cap):
    _, points = noisy_cap
    auto = ModelParameters(model_type='auto', spacing=10.0)
    assert crop_points_for_group(points[:36], auto).model == 'sphere'
    assert crop_points_for_group(points[:36], auto, model_name='Ellipsoidal Vesicle').model == 'ellipsoid'
    assert crop_points_for_group(straight_path()[2], auto).model == 'filamentHelix'


def test_relion_angles_match_the_particle_axes(noisy_cap):
    _, points = noisy_cap
    result = crop_points_for_group(points, ModelParameters(model_type='sphere', spacing=20.0, in_plane='random'))
    rows = crop_table_rows(result)
    for row, matrix in zip(rows, result.matrices):
        rot, tilt, psi = np.radians([row['rot'], row['relion_tilt'], row['psi']])
        # RELION's Euler_angles2matrix(rot, tilt, psi) A maps the reference onto the particle, so the
        # reference z-axis lies along A·e_z (tilt and psi; rot spins about it) and Scipion's matrix is Aᵀ
        ca, sa, cb, sb, cg, sg = np.cos(rot), np.sin(rot), np.cos(tilt), np.sin(tilt), np.cos(psi), np.sin(psi)
        relion = np.array([[cg * cb * ca - sg * sa, cg * cb * sa + sg * ca, -cg * sb],
                           [-sg * cb * ca - cg * sa, -sg * cb * sa + cg * ca, sg * sb],
                           [sb * ca, sb * sa, cb]])
        np.testing.assert_allclose(relion[:, 2], matrix[2, :3], atol=1e-9)
        np.testing.assert_allclose(relion.T, matrix[:3, :3], atol=1e-9)
        # Dynamo (tdrot, tilt, narot) = RELION (narot - 90, tilt, tdrot + 90)
        np.testing.assert_allclose(np.cos(np.radians([row['rot'] - row['narot'] + 90, row['psi'] - row['tdrot'] - 90])),
                                   1, atol=1e-9)


def test_read_user_points_star_csv_and_text(tmp_path):
    table = Table(columns=['rlnCoordinateX', 'rlnCoordinateY', 'rlnCoordinateZ', 'cryosegGroup', 'cryosegRole'])
    table.addRow(1.5, 2.0, 3.0, 4, 'point')
    table.addRow(4.0, 5.0, 6.0, 4, 'marker')
    table.write(str(tmp_path / 'a.star'), tableName='particles')
    (tmp_path / 'b.csv').write_text('x,y,z,group\n1,2,3,vesA\n4,5,6,vesB\n')
    (tmp_path / 'c.txt').write_text('# clicked\n1 2 3 2\n4 5 6 2 centre\n7 8 9 3\n')
    star = read_user_points(str(tmp_path / 'a.star'))
    np.testing.assert_allclose(star.xyz, [[1.5, 2, 3], [4, 5, 6]])
    assert star.groups == ['4', '4'] and star.roles == ['point', 'marker']
    assert read_user_points(str(tmp_path / 'b.csv')).groups == ['vesA', 'vesB']
    text = read_user_points(str(tmp_path / 'c.txt'))
    assert text.groups == ['2', '2', '3'] and text.roles == ['point', 'marker', 'point']
    groups = split_groups(text.xyz, [int(g) for g in text.groups], text.roles)
    np.testing.assert_allclose(groups[2]['marker'], [4, 5, 6])
    assert len(groups[2]['points']) == 1 and groups[3]['marker'] is None
