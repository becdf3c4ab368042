"""Instance-label volumes of detected or annotated particles (numpy only).

Every particle becomes a ball of the given diameter. Where balls overlap, a voxel belongs to the
particle whose surface is farthest outside it (for equal diameters: the nearest centre), so touching
particles stay separate instances.
"""
import numpy as np

from ..core.errors import CryoSegInputError


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
