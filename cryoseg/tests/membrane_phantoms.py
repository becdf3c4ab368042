"""Test fixtures for the refinement of directional models: a vesicle that is not a sphere (flattened,
bumpy, optionally seen through a missing wedge) and a curved tube, with their exact normals / axes and
click-like points placed with a few voxels of error."""
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from cryoseg.core.phantom import apply_missing_wedge


@dataclass
class BumpyVesicle:
    """Mid-membrane radius about ``centre``: the flattened ellipsoid's radius along each direction,
    modulated by a few low-order bumps of relative ``bump`` amplitude."""
    centre: np.ndarray
    radii: np.ndarray  # x, y, z semi-axes (px)
    bump: float = 0.08

    def radius(self, directions):
        d = np.asarray(directions, float)
        base = 1 / np.sqrt(np.maximum(np.sum((d / self.radii) ** 2, axis=-1), 1e-12))
        x, y, z = d[..., 0], d[..., 1], d[..., 2]
        bumps = np.cos(3 * np.arctan2(y, x)) * (1 - z ** 2) + 0.6 * x * y * z * 4 + 0.5 * (3 * z ** 2 - 1) * x
        return base * (1 + self.bump * bumps)

    def signed_distance(self, points):
        """Radial distance (px) of points (…, 3) to the membrane, positive outside."""
        offsets = np.asarray(points, float) - self.centre
        rho = np.linalg.norm(offsets, axis=-1)
        return rho - self.radius(offsets / np.maximum(rho, 1e-9)[..., None])

    def normals(self, points, step=0.05):
        """Outward unit normals: gradient of the radial distance, by central differences."""
        points = np.asarray(points, float)
        gradient = np.stack([(self.signed_distance(points + step * e) - self.signed_distance(points - step * e))
                             / (2 * step) for e in np.eye(3)], axis=-1)
        return gradient / np.linalg.norm(gradient, axis=-1, keepdims=True)

    def clicks(self, count, error, seed=0, band=0.6):
        """``count`` points on the membrane on central slices (|direction z| < ``band``), each moved
        ``error`` px rms at random."""
        rng = np.random.default_rng(seed)
        directions = rng.standard_normal((40 * count, 3))
        directions /= np.linalg.norm(directions, axis=1, keepdims=True)
        directions = directions[np.abs(directions[:, 2]) < band][:count]
        on = self.centre + directions * self.radius(directions)[:, None]
        return on + rng.normal(0, error / np.sqrt(3), on.shape)


def vesicle_volume(vesicle, shape_zyx=(64, 96, 96), thickness=3.0, noise=0.5, wedge=0.0, seed=0,
                   contrast=-1.0):
    """Tomogram-like volume [z, y, x] of the vesicle's membrane: a Gaussian shell of ``thickness`` px,
    dark (``contrast`` −1) on correlated noise of ``noise`` × the membrane density, and an optional
    ±``wedge``° missing wedge."""
    z, y, x = np.indices(shape_zyx, dtype=float)
    points = np.stack([x, y, z], axis=-1)
    density = np.exp(-0.5 * (vesicle.signed_distance(points) / (thickness / 2)) ** 2)
    rng = np.random.default_rng(seed)
    speckle = ndimage.gaussian_filter(rng.standard_normal(shape_zyx), 1.0)
    volume = contrast * density + noise * speckle / speckle.std()
    if wedge:
        volume = apply_missing_wedge(volume.astype(np.float32), wedge)
    return volume.astype(np.float32)


def curved_tube(shape_zyx=(48, 96, 128), radius=4.0, bend=0.5, noise=0.5, seed=0):
    """A tube (solid, dark) of ``radius`` px along an arc bending by ``bend`` radians in the xy plane,
    with its path (x, y, z) every 0.5 px and the volume [z, y, x]."""
    nz, ny, nx = shape_zyx
    length = 0.75 * nx
    arc = np.arange(0, length, 0.5)
    angle = -bend / 2 + bend * arc / length
    path = np.column_stack([0.12 * nx + np.cumsum(np.cos(angle)) * 0.5, ny / 2 + np.cumsum(np.sin(angle)) * 0.5,
                            np.full(len(arc), nz / 2)])
    z, y, x = np.indices(shape_zyx, dtype=float)
    grid = np.stack([x.ravel(), y.ravel(), z.ravel()], axis=1)
    distance = cKDTree(path).query(grid)[0].reshape(shape_zyx)
    density = 1.0 / (1 + np.exp((distance - radius) / 0.7))
    rng = np.random.default_rng(seed)
    speckle = ndimage.gaussian_filter(rng.standard_normal(shape_zyx), 1.0)
    return path, (-density + noise * speckle / speckle.std()).astype(np.float32)


def tube_axis(path, points):
    """Unit tangent of the tube's path nearest each point."""
    tangents = np.gradient(path, axis=0)
    tangents /= np.linalg.norm(tangents, axis=1, keepdims=True)
    return tangents[cKDTree(path).query(np.asarray(points, float))[1]]
