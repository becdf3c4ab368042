"""Checks of input data shared by the algorithms, with a message a microscopist understands:
unusable tomograms (wrong dimensionality, NaN/Inf voxels, constant data; read slab by slab) and
position lists that are not finite (x, y, z) triples."""
import numpy as np

from .errors import CryoSegInputError
from .slabs import iter_slabs


def check_volume_shape(shape):
    if len(shape) != 3 or min(shape) < 2:
        raise CryoSegInputError(
            f"a tomogram must be a 3-D volume, but this data has shape {tuple(reversed(shape))} (x, y, z); "
            "a 2-D image or a single slice cannot be used")


def check_finite(block, first_plane=0):
    """Raise for NaN/Inf voxels of ``block`` (planes from ``first_plane`` of the volume), naming the first."""
    finite = np.isfinite(block)
    if not finite.all():
        bad = np.argwhere(~finite)[0]
        bad[0] += first_plane  # the slab's planes run along the first array axis
        where = ', '.join(f'{axis}={int(index)}' for axis, index in zip('xyz', reversed(bad)))
        raise CryoSegInputError(
            f"the tomogram has {int(block.size - finite.sum())} or more NaN or infinite voxels (the first at "
            f"{where}); repair or re-reconstruct it first")


def check_not_constant(low, high):
    if high <= low:
        raise CryoSegInputError(f"the tomogram is constant (every voxel equals {low:g}): there is no specimen "
                                "in it; check that the right file was given")


def check_volume_values(volume, slab=64):
    """Raise a clear error for NaN/Inf voxels or a constant volume; scans ``volume`` slab by slab."""
    low, high = np.inf, -np.inf
    for part in iter_slabs(volume.shape[0], slab):
        block = np.asarray(volume[part.read])
        check_finite(block, part.read.start)
        low, high = min(low, float(block.min())), max(high, float(block.max()))
    check_not_constant(low, high)


def as_positions(values, what='positions'):
    """``values`` as an (n, 3) float array of finite (x, y, z) positions (a single triple is one row)."""
    positions = np.asarray(values, float)
    if positions.size % 3 or (positions.ndim > 1 and positions.shape[-1] != 3):
        raise CryoSegInputError(f'{what} need three coordinates (x, y, z) each, not shape {positions.shape}')
    positions = positions.reshape(-1, 3)
    if not np.all(np.isfinite(positions)):
        raise CryoSegInputError(f'{what} contain NaN or infinite coordinates')
    return positions
