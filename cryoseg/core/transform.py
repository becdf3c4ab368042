"""Scipion 4×4 transforms applied to boxes, and averaging (algorithms.md §4.3).

Scipion's definition (scipion-em-tomo, ``convertMatrix``): f'(r) = f(M·r), with f the reference and f'
the particle as it lies in the tomogram, r in voxels from the box centre (index n//2 on each axis),
M = [[R, t], [0, 1]] acting on (x, y, z). Aligning a particle therefore means resampling it at M⁻¹·r
= Rᵀ·r − Rᵀ·t. The arrays are indexed [z, y, x]; the (x, y, z) → (z, y, x) flip happens only here.
"""
import numpy as np
from scipy import ndimage

from .errors import CryoSegInputError

_FLIP = np.eye(3)[::-1]  # (x, y, z) ↔ (z, y, x); its own inverse


def check_matrix(matrix):
    matrix = np.asarray(matrix, float)
    if matrix.shape != (4, 4) or not np.all(np.isfinite(matrix)):
        raise CryoSegInputError(f"a transform must be a finite 4x4 matrix, got shape {matrix.shape}")
    if not np.allclose(matrix[3], [0, 0, 0, 1]):
        raise CryoSegInputError("a transform's last row must be (0, 0, 0, 1)")
    return matrix


def resample(volume, matrix, order=3, fill='zero'):
    """``g(r) = volume(matrix·r)`` around the box centre: the value of the output at r is read
    from the input at ``matrix·r`` (cubic spline; outside the box: zero, or the box mean)."""
    matrix = check_matrix(matrix)
    centre = np.array(volume.shape, float) // 2
    linear = _FLIP @ matrix[:3, :3] @ _FLIP
    offset = centre - linear @ centre + _FLIP @ matrix[:3, 3]
    cval = float(np.mean(volume)) if fill == 'mean' else 0.0
    return ndimage.affine_transform(np.asarray(volume, np.float32), linear, offset=offset, order=order,
                                    mode='constant', cval=cval).astype(np.float32)


def align(particle, matrix, order=3, fill='zero'):
    """The particle brought into the reference frame: resampled at M⁻¹·r (f = f' ∘ M⁻¹)."""
    return resample(particle, np.linalg.inv(check_matrix(matrix)), order=order, fill=fill)


def extraction_matrix(matrix, shift_scale=1.0, residual_xyz=(0.0, 0.0, 0.0)):
    """Transform of a subtomogram cut around a coordinate with transform ``matrix``.

    The coordinate's shifts are in its own pixels, so they are multiplied by ``shift_scale``
    (coordinate sampling / subtomogram sampling). A particle lying ``residual_xyz`` output voxels
    off the box centre is f'(r) = f(R·(r − d) + t), hence the shift t·scale − R·d.
    """
    matrix = check_matrix(matrix).copy()
    rotation = matrix[:3, :3]
    matrix[:3, 3] = matrix[:3, 3] * shift_scale - rotation @ np.asarray(residual_xyz, float)
    return matrix


class RunningAverage:
    """Mean of boxes added one at a time (float64 accumulator, so order does not matter)."""

    def __init__(self):
        self.total = None
        self.count = 0

    def add(self, volume):
        self.add_sum(volume, 1)

    def add_sum(self, total, count):
        """Merge the sum of ``count`` boxes (e.g. a partial average computed elsewhere)."""
        if not count:
            return
        if self.total is None:
            self.total = np.zeros(total.shape, np.float64)
        elif total.shape != self.total.shape:
            raise CryoSegInputError(f"cannot average boxes of different sizes: {self.total.shape} and "
                                    f"{total.shape} (z, y, x)")
        self.total += total
        self.count += count

    def mean(self):
        if not self.count:
            raise CryoSegInputError('there are no subtomograms to average')
        return (self.total / self.count).astype(np.float32)


def average_aligned(particles, matrices, order=3, fill='zero'):
    """Mean of the particles each aligned with its own matrix."""
    average = RunningAverage()
    for particle, matrix in zip(particles, matrices):
        average.add(align(particle, matrix, order=order, fill=fill))
    return average.mean()
