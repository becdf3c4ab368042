"""Dynamo ZXZ Euler angles ↔ matrices ↔ normals, exactly as algorithms.md §3.3 states them."""
import numpy as np
import pytest
from pwem.convert.transformations import euler_matrix
from scipy.spatial.transform import Rotation
from tomo.utils import normalFromMatrix

from cryoseg.core.errors import CryoSegInputError
from cryoseg.core.orientation import (euler_from_normal, euler_to_matrix, in_plane_angles, matrix_from_normal,
                                      matrix_to_euler, normal_from_euler, normal_from_matrix, scipion_matrix)


@pytest.fixture
def angles():
    rng = np.random.default_rng(11)
    count = 500
    return rng.uniform(-180, 180, count), rng.uniform(0, 180, count), rng.uniform(-180, 180, count)


def test_matrix_is_rz_narot_rx_tilt_rz_tdrot_like_scipy_and_pwem(angles):
    tdrot, tilt, narot = angles
    ours = euler_to_matrix(tdrot, tilt, narot)
    scipy = Rotation.from_euler('zxz', np.column_stack(angles), degrees=True).as_matrix()
    np.testing.assert_allclose(ours, scipy, atol=1e-12)
    for k in range(0, 500, 50):
        pwem = euler_matrix(*np.radians([tdrot[k], tilt[k], narot[k]]), axes='szxz')
        np.testing.assert_allclose(ours[k], pwem[:3, :3], atol=1e-12)
    # Dynamo's own third row
    t, a = np.radians(tdrot), np.radians(tilt)
    np.testing.assert_allclose(ours[:, 2], np.column_stack([np.sin(t) * np.sin(a), np.cos(t) * np.sin(a),
                                                            np.cos(a)]), atol=1e-12)


@pytest.mark.parametrize('tilt', [0.0, 180.0, 1e-9, 90.0])
def test_round_trip_including_degenerate_tilts(tilt):
    matrix = euler_to_matrix(35.0, tilt, -70.0)
    back = euler_to_matrix(*matrix_to_euler(matrix))
    np.testing.assert_allclose(back, matrix, atol=1e-9)


def test_round_trip_random(angles):
    matrices = euler_to_matrix(*angles)
    tdrot, tilt, narot = matrix_to_euler(matrices)
    np.testing.assert_allclose(euler_to_matrix(tdrot, tilt, narot), matrices, atol=1e-9)
    np.testing.assert_allclose(tilt, angles[1], atol=1e-6)


def test_tilt_90_gives_normal_along_y():
    np.testing.assert_allclose(normal_from_euler(0, 90), [0, 1, 0], atol=1e-15)
    np.testing.assert_allclose(euler_to_matrix(0, 90, 0)[2], [0, 1, 0], atol=1e-15)
    np.testing.assert_allclose(matrix_from_normal([0, 1, 0]), euler_to_matrix(0, 90, 0), atol=1e-15)


def test_normals_round_trip_for_random_directions_and_poles():
    rng = np.random.default_rng(5)
    normals = rng.standard_normal((10000, 3))
    normals[:2] = [[0, 0, 1], [0, 0, -1]]
    normals /= np.linalg.norm(normals, axis=1, keepdims=True)
    tdrot, tilt = euler_from_normal(normals)
    np.testing.assert_allclose(normal_from_euler(tdrot, tilt), normals, atol=1e-12)
    rotations = matrix_from_normal(normals)
    np.testing.assert_allclose(rotations[:, 2], normals, atol=1e-12)
    np.testing.assert_allclose(rotations @ np.transpose(rotations, (0, 2, 1)), np.broadcast_to(np.eye(3), rotations.shape),
                               atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(rotations), 1.0, atol=1e-12)
    # built from rows, it equals the Euler formula with narot = 0 (first row in the xy plane)
    np.testing.assert_allclose(rotations, euler_to_matrix(tdrot, tilt, 0.0), atol=1e-12)
    narot = rng.uniform(-180, 180, len(normals))
    np.testing.assert_allclose(matrix_from_normal(normals, narot), euler_to_matrix(tdrot, tilt, narot), atol=1e-12)


def test_scipion_matrix_and_tomo_normal_from_matrix(angles):
    rotations = euler_to_matrix(*angles)
    shifts = np.random.default_rng(2).normal(0, 5, (len(rotations), 3))
    matrices = scipion_matrix(rotations, shifts)
    np.testing.assert_allclose(matrices[:, 3], np.broadcast_to([0, 0, 0, 1], (len(rotations), 4)))
    np.testing.assert_allclose(matrices[:, :3, 3], -np.einsum('nij,nj->ni', rotations, shifts), atol=1e-12)
    for matrix in matrices[:20]:
        np.testing.assert_allclose(normalFromMatrix(matrix), matrix[2, :3], atol=1e-12)
    np.testing.assert_allclose(normal_from_matrix(matrices), rotations[:, 2])


def test_in_plane_policies():
    normals = np.array([[1.0, 0, 0], [0, 0.6, 0.8], [0, 0, 1]])
    assert np.all(in_plane_angles('zero', normals) == 0)
    first = in_plane_angles('random', normals, seed=4)
    np.testing.assert_array_equal(first, in_plane_angles('random', normals, seed=4))
    assert not np.allclose(first, in_plane_angles('random', normals, seed=5))
    assert np.all((first >= 0) & (first < 360))
    # tangent: the particle x-axis follows the given direction projected on the particle plane
    tangents = np.array([[0, 1.0, 1.0], [1.0, 0, 0], [0, 1.0, 0]])
    rotations = matrix_from_normal(normals, in_plane_angles('tangent', normals, tangents=tangents))
    projected = tangents - np.einsum('ij,ij->i', tangents, normals)[:, None] * normals
    projected /= np.linalg.norm(projected, axis=1, keepdims=True)
    np.testing.assert_allclose(rotations[:, 0], projected, atol=1e-12)
    # without tangents: the meridian (tomogram z projected), the x axis at the poles
    meridian = matrix_from_normal(normals, in_plane_angles('tangent', normals))
    np.testing.assert_allclose(meridian[0, 0], [0, 0, 1], atol=1e-12)
    np.testing.assert_allclose(meridian[2, 0], [1, 0, 0], atol=1e-12)
    with pytest.raises(CryoSegInputError, match='in-plane policy'):
        in_plane_angles('sideways', normals)
