"""Evenly spaced cropping points on surfaces (algorithms.md §3.5).

Spheres use a Fibonacci lattice; other surfaces are sampled densely and uniformly by area, then thinned
with a KD-tree Poisson-disk pass whose exclusion radius is calibrated so that the mean nearest-neighbour
distance equals the requested spacing (no two points end closer than 0.86 × spacing).
"""
import numpy as np
from scipy.spatial import cKDTree

from .errors import CryoSegInputError

# Fibonacci lattice: n = FIBONACCI_DENSITY·(R/d)² points give a mean nearest-neighbour distance ≈ d
FIBONACCI_DENSITY = 11.4
MIN_DISK_FRACTION = 0.86  # Poisson-disk radius never below this fraction of the spacing
DENSE_PER_DISK = 30  # dense candidates per final point


def fibonacci_sphere(count):
    """``count`` unit vectors on a Fibonacci lattice (even, deterministic)."""
    k = np.arange(count) + 0.5
    cos_theta = 1 - 2 * k / count
    sin_theta = np.sqrt(1 - cos_theta ** 2)
    phi = np.pi * (3 - np.sqrt(5)) * k
    return np.stack([sin_theta * np.cos(phi), sin_theta * np.sin(phi), cos_theta], axis=1)


def sample_sphere(centre, radius, spacing):
    """Points and outward unit normals on a sphere at mean nearest-neighbour distance ``spacing``."""
    _check_spacing(spacing)
    count = max(int(round(FIBONACCI_DENSITY * (radius / spacing) ** 2)), 1)
    normals = fibonacci_sphere(count)
    return np.asarray(centre, float) + radius * normals, normals


def nearest_neighbour_distances(points):
    """Distance from each point to its nearest other point."""
    points = np.asarray(points, float)
    if len(points) < 2:
        return np.full(len(points), np.inf)
    distances, _ = cKDTree(points).query(points, k=2)
    return distances[:, 1]


def poisson_disk_thin(points, radius, rng):
    """Indices of a maximal subset of ``points`` with no two closer than ``radius`` (random order)."""
    order = rng.permutation(len(points))
    tree = cKDTree(points)
    alive = np.ones(len(points), bool)
    kept = []
    for index in order:
        if alive[index]:
            kept.append(index)
            alive[tree.query_ball_point(points[index], radius)] = False
    return np.sort(np.asarray(kept, int))


def thin_to_spacing(points, spacing, seed=0, iterations=4):
    """Indices of a Poisson-disk subset of dense ``points`` whose mean nearest-neighbour distance is
    ``spacing``: the disk radius is rescaled a few times by spacing / measured mean distance."""
    _check_spacing(spacing)
    points = np.asarray(points, float)
    radius = spacing / 1.12  # maximal Poisson-disk sets have mean NN ≈ 1.1–1.15 × radius
    best = None
    for _ in range(iterations):
        kept = poisson_disk_thin(points, radius, np.random.default_rng(seed))
        if len(kept) < 2:
            return kept
        mean = nearest_neighbour_distances(points[kept]).mean()
        error = abs(mean / spacing - 1)
        if best is None or error < best[0]:
            best = (error, kept)
        if error < 0.01:
            break
        radius = max(radius * spacing / mean, MIN_DISK_FRACTION * spacing)
    return best[1]


def dense_count(area, spacing):
    """Number of dense candidates for a surface of ``area`` px² thinned at ``spacing``."""
    return int(min(max(DENSE_PER_DISK * area / (0.866 * spacing ** 2), 200), 2_000_000))


def sample_triangles(vertices, faces, count, rng, vertex_normals=None):
    """Area-uniform random points on a triangle mesh with their unit normals.

    With ``vertex_normals`` the normal is interpolated barycentrically (Phong), so a coarse mesh of a
    smooth surface still gives smooth normals; otherwise the facet normal (winding order) is used.
    """
    vertices, faces = np.asarray(vertices, float), np.asarray(faces, int)
    a, b, c = vertices[faces[:, 0]], vertices[faces[:, 1]], vertices[faces[:, 2]]
    cross = np.cross(b - a, c - a)
    areas = 0.5 * np.linalg.norm(cross, axis=1)
    if areas.sum() <= 0:
        raise CryoSegInputError('the surface through the points has no area')
    chosen = rng.choice(len(faces), size=count, p=areas / areas.sum())
    r1, r2 = np.sqrt(rng.random(count)), rng.random(count)
    weights = np.stack([1 - r1, r1 * (1 - r2), r1 * r2], axis=1)
    corners = vertices[faces[chosen]]
    points = np.einsum('nk,nkj->nj', weights, corners)
    if vertex_normals is None:
        normals = cross[chosen]
    else:
        normals = np.einsum('nk,nkj->nj', weights, np.asarray(vertex_normals, float)[faces[chosen]])
    return points, normals / np.linalg.norm(normals, axis=1, keepdims=True)


def sample_mesh(vertices, faces, spacing, seed=0, vertex_normals=None):
    """Evenly spaced points (mean NN = ``spacing``) and unit normals on a triangle mesh."""
    _check_spacing(spacing)
    rng = np.random.default_rng(seed)
    count = dense_count(mesh_area(vertices, faces), spacing)
    points, normals = sample_triangles(vertices, faces, count, rng, vertex_normals)
    kept = thin_to_spacing(points, spacing, seed)
    return points[kept], normals[kept]


def mesh_area(vertices, faces):
    vertices, faces = np.asarray(vertices, float), np.asarray(faces, int)
    a, b, c = vertices[faces[:, 0]], vertices[faces[:, 1]], vertices[faces[:, 2]]
    return 0.5 * np.linalg.norm(np.cross(b - a, c - a), axis=1).sum()


def offset_along_normals(points, normals, offset):
    """Move points by ``offset`` px along their normals (positive = outward)."""
    return np.asarray(points, float) + offset * np.asarray(normals, float)


def outside_exclusion(points, marker, radius):
    """Boolean mask of points farther than ``radius`` from ``marker`` (all True without a marker)."""
    points = np.asarray(points, float)
    if marker is None or not radius:
        return np.ones(len(points), bool)
    return np.linalg.norm(points - np.asarray(marker, float), axis=1) > radius


def inside_bounds(points, shape_xyz):
    """Boolean mask of points inside a tomogram of ``shape_xyz`` voxels (0 ≤ p ≤ size − 1)."""
    points = np.asarray(points, float)
    upper = np.asarray(shape_xyz, float) - 1
    return np.all((points >= 0) & (points <= upper), axis=1)


def _check_spacing(spacing):
    if not spacing or spacing <= 0:
        raise CryoSegInputError(f'the spacing of cropping points must be positive (got {spacing})')
