"""The detector's working scale: tomograms binned so that a particle is a few voxels across (numpy).

A U-Net with two poolings sees about 20 voxels around each voxel; at the particle's scale that is a
few particles of context, which is what telling a particle from its surroundings needs, and every
binning by 2 makes training and inference about 8 times cheaper.
"""
import numpy as np
from scipy import ndimage

from ..core.errors import CryoSegInputError


def working_binning(diameter_px, particle_voxels):
    """The largest whole binning factor that keeps a particle of ``diameter_px`` voxels at least
    ``particle_voxels`` wide (1 when it is already smaller, or when ``particle_voxels`` is 0).

    >>> working_binning(8.6, 4), working_binning(3.0, 4), working_binning(20, 0)
    (2, 1, 1)
    """
    if not diameter_px > 0:
        raise CryoSegInputError(f'the particle diameter must be positive; got {diameter_px} voxels')
    if not particle_voxels:
        return 1
    return max(1, int(np.floor(diameter_px / particle_voxels + 1e-9)))


def bin_volume(volume, factor):
    """float32 block means of ``factor``³ voxels of a [z, y, x] volume (edges padded by repetition
    to a whole number of blocks); the volume itself, as float32, for factor 1.

    >>> bin_volume(np.arange(8.0).reshape(2, 2, 2), 2).tolist()
    [[[3.5]]]
    """
    volume = np.asarray(volume, np.float32)
    if factor == 1:
        return volume
    pads = [(0, -n % factor) for n in volume.shape]
    padded = np.pad(volume, pads, mode='edge') if any(p[1] for p in pads) else volume
    z, y, x = (n // factor for n in padded.shape)
    return padded.reshape(z, factor, y, factor, x, factor).mean(axis=(1, 3, 5), dtype=np.float32)


def unbin_map(values, factor, shape_zyx):
    """A [z, y, x] (or [C, z, y, x]) map of a volume binned by ``factor`` back on the voxels of the
    original ``shape_zyx``, by linear interpolation between block centres."""
    values = np.asarray(values, np.float32)
    if factor == 1:
        return values
    if values.ndim == 4:
        return np.stack([unbin_map(channel, factor, shape_zyx) for channel in values])
    zoomed = ndimage.zoom(values, factor, order=1, mode='nearest', grid_mode=True)
    return np.ascontiguousarray(zoomed[:shape_zyx[0], :shape_zyx[1], :shape_zyx[2]])
