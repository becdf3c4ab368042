"""Training targets of the particle detector from coordinates and a particle diameter (numpy only).

Every annotated particle becomes a ball of the given diameter. Where balls overlap, a voxel belongs to
the particle whose surface is farthest outside it (for equal diameters: the nearest centre), so
touching particles stay separate instances. MaskNet learns the binary mask; CenterNet learns, per
instance, the distance to the nearest voxel outside that instance, rescaled to 1 at the deepest
voxel (the centre of a ball) and 0 on the instance's boundary shell (algorithms.md §6.1).
"""
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ..core.errors import CryoSegInputError


@dataclass
class DetectionTargets:
    labels: np.ndarray  # int32 [z, y, x]: 0 background, i + 1 for the i-th particle
    mask: np.ndarray  # uint8 {0, 1}
    centre: np.ndarray  # float32 in [0, 1]


def particle_instances(shape_zyx, centres_xyz, diameter):
    """int32 instance labels of balls of ``diameter`` voxels (one value, or one per particle) at
    ``centres_xyz`` (x, y, z voxels); particles whose ball misses the volume get no voxel."""
    centres = np.asarray(centres_xyz, float).reshape(-1, 3)
    radii = np.broadcast_to(np.asarray(diameter, float) / 2.0, (len(centres),))
    if len(centres) and not np.all(radii > 0):
        raise CryoSegInputError(f'the particle diameter must be positive; got {diameter}')
    labels = np.zeros(shape_zyx, np.int32)
    depth = np.full(shape_zyx, np.inf, np.float32)  # signed distance to the owning ball's surface
    for index, (centre, radius) in enumerate(zip(centres, radii), start=1):
        zyx = centre[::-1]
        lo = np.maximum(np.floor(zyx - radius).astype(int), 0)
        hi = np.minimum(np.ceil(zyx + radius).astype(int) + 1, shape_zyx)
        if np.any(hi <= lo):
            continue
        box = tuple(slice(a, b) for a, b in zip(lo, hi))
        z, y, x = np.ogrid[box]
        signed = np.sqrt((z - zyx[0]) ** 2 + (y - zyx[1]) ** 2 + (x - zyx[2]) ** 2) - radius
        claim = (signed <= 0) & (signed < depth[box])
        labels[box][claim] = index
        depth[box][claim] = signed[claim]
    return labels


def centre_target(labels):
    """float32 per-instance normalised distance map of an instance-label volume: in each instance,
    (d - 1) / (d_max - 1) with d the Euclidean distance to the nearest voxel outside the instance, so
    the boundary shell (d = 1) is 0 and the deepest voxel 1."""
    target = np.zeros(labels.shape, np.float32)
    for index, box in enumerate(ndimage.find_objects(labels), start=1):
        if box is None:
            continue
        padded = tuple(slice(max(s.start - 1, 0), s.stop + 1) for s in box)
        own = labels[padded] == index
        distance = ndimage.distance_transform_edt(np.pad(own, 1))[1:-1, 1:-1, 1:-1]
        deepest = distance.max()
        values = (distance - 1) / (deepest - 1) if deepest > 1 else distance / deepest
        target[padded][own] = values[own]
    return target


def detection_targets(shape_zyx, centres_xyz, diameter):
    """:class:`DetectionTargets` (instances, MaskNet mask, CenterNet target) of balls of ``diameter``
    voxels at ``centres_xyz``."""
    labels = particle_instances(shape_zyx, centres_xyz, diameter)
    return DetectionTargets(labels, (labels > 0).astype(np.uint8), centre_target(labels))
