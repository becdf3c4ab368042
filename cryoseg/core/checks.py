"""Checks of volume data shared by the algorithms: a message a microscopist understands for
unusable tomograms (wrong dimensionality, NaN/Inf voxels, constant data), read slab by slab."""
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
