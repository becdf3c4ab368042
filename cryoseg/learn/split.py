"""A spatial validation split of particle annotations (numpy).

Neighbouring particles share context (the same membrane, the same crowded region), so a random
split would score the detector on particles it has effectively seen. Instead each tomogram's
annotations are cut by a plane across its longest in-plane axis: the slab beyond the plane, holding
the requested fraction of the annotations, is held back for validation, and training ignores every
voxel within one particle diameter of that slab.
"""
from dataclasses import dataclass

import numpy as np


@dataclass
class SpatialSplit:
    """The split of one tomogram: annotations used for training and held back for validation
    ((n, 3) x, y, z voxels), ``axis`` (0 = x, 1 = y) and ``boundary``: validation is the slab
    ``coordinate >= boundary`` (no validation when ``boundary`` is infinite)."""
    training: np.ndarray
    validation: np.ndarray
    axis: int
    boundary: float

    def validation_slab(self, shape_zyx, margin=0.0):
        """``(start, stop)`` voxel range along the split axis of the validation slab widened by
        ``margin`` voxels, clipped to the volume; None without validation."""
        if not np.isfinite(self.boundary):
            return None
        length = shape_zyx[2 - self.axis]
        return int(np.clip(np.floor(self.boundary - margin), 0, length)), length

    def training_weights(self, shape_zyx, gap):
        """float32 [z, y, x]: 1 where training may learn, 0 in the validation slab and ``gap``
        voxels before it."""
        weights = np.ones(shape_zyx, np.float32)
        slab = self.validation_slab(shape_zyx, gap)
        if slab is not None:
            index = [slice(None)] * 3
            index[2 - self.axis] = slice(*slab)
            weights[tuple(index)] = 0
        return weights


def spatial_split(centres_xyz, shape_zyx, fraction):
    """:class:`SpatialSplit` of one tomogram's annotations: the ``fraction`` (rounded, at least one
    when any is held back) of the annotations with the largest coordinate along the longer of the
    x and y axes are held back; none when ``fraction`` is 0 or fewer than 5 annotations remain.

    >>> split = spatial_split([[1, 0, 0], [2, 0, 0], [3, 0, 0], [4, 0, 0], [5, 0, 0], [9, 0, 0]], (4, 4, 10), 0.2)
    >>> split.validation.tolist(), split.boundary
    ([[9.0, 0.0, 0.0]], 7.0)
    """
    centres = np.asarray(centres_xyz, float).reshape(-1, 3)
    axis = 0 if shape_zyx[2] >= shape_zyx[1] else 1
    held = int(round(fraction * len(centres)))
    if fraction > 0:
        held = max(held, 1)
    if held == 0 or len(centres) - held < 5:
        return SpatialSplit(centres, np.zeros((0, 3)), axis, np.inf)
    order = np.argsort(centres[:, axis], kind='stable')
    cut = len(centres) - held
    boundary = 0.5 * (centres[order[cut - 1], axis] + centres[order[cut], axis])
    validation = centres[:, axis] >= boundary
    return SpatialSplit(centres[~validation], centres[validation], axis, float(boundary))
