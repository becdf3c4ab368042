"""Particle orientations in Dynamo's ZXZ convention and Scipion's 4×4 matrices (algorithms.md §3.3).

Euler angles (tdrot, tilt, narot) in degrees give **R = Rz(narot)·Rx(tilt)·Rz(tdrot)** with right-handed
active elementary rotations; this equals scipy's ``Rotation.from_euler('zxz', [tdrot, tilt, narot])``
(extrinsic) and pwem's ``euler_matrix(tdrot, tilt, narot, 'szxz')``. The particle z-axis (membrane
normal) is the third row of R, ``(sin tilt·sin tdrot, sin tilt·cos tdrot, cos tilt)``; scipion-em-tomo's
``normalFromMatrix`` returns the same vector. The Scipion matrix is ``[[R, −R·s], [0, 0, 0, 1]]`` with s
the Dynamo shifts (zero for cropping points); ``TR_DYNAMO`` equals the Scipion convention.

All functions accept a single angle triple / vector or arrays of them (leading axis = particles).
"""
import numpy as np

from .errors import CryoSegInputError

IN_PLANE_POLICIES = ('zero', 'random', 'tangent')


def rotation_about_z(angle):
    """Active right-handed rotations (…, 3, 3) about z by ``angle`` radians."""
    c, s = np.cos(angle), np.sin(angle)
    zero, one = np.zeros_like(angle), np.ones_like(angle)
    return np.stack([np.stack([c, -s, zero], -1), np.stack([s, c, zero], -1),
                     np.stack([zero, zero, one], -1)], -2)


def _rx(angle):
    c, s = np.cos(angle), np.sin(angle)
    zero, one = np.zeros_like(angle), np.ones_like(angle)
    return np.stack([np.stack([one, zero, zero], -1), np.stack([zero, c, -s], -1),
                     np.stack([zero, s, c], -1)], -2)


def euler_to_matrix(tdrot, tilt, narot):
    """Rotation matrix (…, 3, 3) from Dynamo Euler angles in degrees."""
    tdrot, tilt, narot = (np.radians(np.asarray(a, float)) for a in (tdrot, tilt, narot))
    return rotation_about_z(narot) @ _rx(tilt) @ rotation_about_z(tdrot)


def matrix_to_euler(rotation):
    """Dynamo Euler angles ``(tdrot, tilt, narot)`` in degrees of rotation matrices (…, 3, 3).

    At tilt 0 or 180 only tdrot ± narot is defined; the whole in-plane angle is then put in narot
    (tdrot = 0), so the round trip through :func:`euler_to_matrix` still gives the same matrix.
    """
    rotation = np.asarray(rotation, float)
    tilt = np.arccos(np.clip(rotation[..., 2, 2], -1.0, 1.0))
    sin_tilt = np.hypot(rotation[..., 2, 0], rotation[..., 2, 1])
    regular = sin_tilt > 1e-9
    # third row = (sin tilt·sin tdrot, sin tilt·cos tdrot, cos tilt); third column = (sin narot·sin tilt,
    # −cos narot·sin tilt, cos tilt)
    tdrot = np.where(regular, np.arctan2(rotation[..., 2, 0], rotation[..., 2, 1]), 0.0)
    narot_regular = np.arctan2(rotation[..., 0, 2], -rotation[..., 1, 2])
    # tilt 0: R = Rz(narot + tdrot); tilt 180: R = Rz(narot)·diag(1, −1, −1)·Rz(tdrot) → first row
    # (cos(narot − tdrot), …) with tdrot = 0 reduces to R[0] = (cos narot, sin narot·…)
    narot_degenerate = np.arctan2(rotation[..., 1, 0], rotation[..., 0, 0])
    narot = np.where(regular, narot_regular, narot_degenerate)
    return np.degrees(tdrot), np.degrees(tilt), np.degrees(narot)


def normal_from_euler(tdrot, tilt):
    """Particle z-axis (unit vector, …×3) of Dynamo angles tdrot and tilt (degrees)."""
    tdrot, tilt = np.radians(np.asarray(tdrot, float)), np.radians(np.asarray(tilt, float))
    return np.stack([np.sin(tilt) * np.sin(tdrot), np.sin(tilt) * np.cos(tdrot), np.cos(tilt)], -1)


def euler_from_normal(normals):
    """``(tdrot, tilt)`` in degrees whose particle z-axis is the given (not necessarily unit) normal."""
    normals = _unit(normals)
    tilt = np.degrees(np.arccos(np.clip(normals[..., 2], -1.0, 1.0)))
    tdrot = np.degrees(np.arctan2(normals[..., 0], normals[..., 1]))
    return tdrot, tilt


def matrix_from_normal(normals, narot=0.0):
    """Rotations (…, 3, 3) whose third row is the unit normal, with in-plane angle ``narot`` (degrees).

    Built directly from rows (u, v, n) with u = (cos tdrot, −sin tdrot, 0) and v = n × u, which equals
    Rx(tilt)·Rz(tdrot) without the tilt-0 degeneracy of going through the angles; narot then mixes the
    first two rows (left multiplication by Rz(narot)).
    """
    normals = _unit(normals)
    tdrot = np.arctan2(normals[..., 0], normals[..., 1])
    u = np.stack([np.cos(tdrot), -np.sin(tdrot), np.zeros_like(tdrot)], -1)
    v = np.cross(normals, u)
    base = np.stack([u, v, normals], -2)
    return rotation_about_z(np.radians(np.broadcast_to(np.asarray(narot, float), tdrot.shape))) @ base


def narot_aligning_x(normals, directions):
    """In-plane angles (degrees) that put the particle x-axis along ``directions`` projected onto the
    plane perpendicular to each normal; 0 where the direction is parallel to the normal."""
    base = matrix_from_normal(normals)
    x_component = np.einsum('...i,...i->...', base[..., 0, :], directions)
    y_component = np.einsum('...i,...i->...', base[..., 1, :], directions)
    # Rz(narot) turns the first row into cos·u − sin·v: aligning it with d needs narot = atan2(−d·v, d·u)
    return np.degrees(np.arctan2(-y_component, x_component))


def in_plane_angles(policy, normals, seed=0, tangents=None):
    """narot per particle for an in-plane policy.

    ``zero``: 0. ``random``: uniform in [0, 360) from ``seed``. ``tangent``: the particle x-axis along
    ``tangents`` (e.g. the filament axis) or, without them, along the local meridian (the tomogram z
    axis projected onto the surface; the tomogram x axis where the normal is vertical).
    """
    normals = np.asarray(normals, float).reshape(-1, 3)
    if policy == 'zero':
        return np.zeros(len(normals))
    if policy == 'random':
        return np.random.default_rng(seed).uniform(0.0, 360.0, len(normals))
    if policy == 'tangent':
        if tangents is None:
            unit = _unit(normals)
            vertical = np.abs(unit[:, 2]) > 1 - 1e-6
            tangents = np.where(vertical[:, None], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0])
        return narot_aligning_x(normals, np.asarray(tangents, float).reshape(-1, 3))
    raise CryoSegInputError(f"in-plane policy must be one of {', '.join(IN_PLANE_POLICIES)}, not {policy!r}")


def scipion_matrix(rotation, shifts=None):
    """Scipion 4×4 matrices (…, 4, 4) from rotations and Dynamo shifts (default 0)."""
    rotation = np.asarray(rotation, float)
    matrix = np.zeros(rotation.shape[:-2] + (4, 4))
    matrix[..., :3, :3] = rotation
    if shifts is not None:
        matrix[..., :3, 3] = -np.einsum('...ij,...j->...i', rotation, np.asarray(shifts, float))
    matrix[..., 3, 3] = 1.0
    return matrix


def normal_from_matrix(matrix):
    """Particle z-axis of 3×3 or 4×4 matrices: the third row of the rotation."""
    return np.asarray(matrix, float)[..., 2, :3]


def _unit(vectors):
    vectors = np.asarray(vectors, float)
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    if np.any(norms == 0):
        raise CryoSegInputError('a zero-length normal has no orientation')
    return vectors / norms
