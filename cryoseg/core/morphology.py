"""Clean-up of a binary mask [z, y, x] (algorithms.md §1.5), shared by every mask cryoseg makes.

Steps, in this order and each optional: remove small components, per-slice opening, keep the largest
component, fill holes, grow or erode by a distance. Growing and eroding use the Euclidean distance
transform slab by slab, so a grow of r voxels equals a dilation by a ball of radius r without a float64
copy of the whole volume.
"""
import logging
import numbers

import numpy as np
from scipy import ndimage

from .errors import CryoSegInputError
from .slabs import iter_slabs

log = logging.getLogger(__name__)

# 26-connectivity for foreground components; holes are then background regions 6-connected to nothing
# on a face, the dual rule (scipy's default for binary_fill_holes).
FULL_CONNECTIVITY = np.ones((3, 3, 3), dtype=bool)
MAX_SLAB = 32  # planes handled at a time by the slab-wise steps
MIN_REGION_SIZE = 250  # voxels: the default of the smallest region kept


def _as_mask(mask):
    mask = np.asarray(mask)
    if mask.ndim != 3:
        raise CryoSegInputError(f'Mask post-processing needs a 3-D mask; got an array of shape {mask.shape}.')
    return mask != 0


def _whole_number(name, value, minimum=0):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or value != int(value) \
            or value < minimum:
        raise CryoSegInputError(f'{name} must be a whole number of at least {minimum}; got {value!r}.')
    return int(value)


def _components(mask, voxel_weights=None):
    """26-connected components: int32 labels, and the voxel count of each label (index 0: background),
    each voxel counting ``wz[z]·wy[y]·wx[x]`` when ``voxel_weights = (wz, wy, wx)`` is given.

    Counting and look-ups go plane-block by plane-block: numpy would otherwise widen the whole label
    volume to int64 for them.
    """
    labels, count = ndimage.label(mask, structure=FULL_CONNECTIVITY, output=np.int32)
    sizes = np.zeros(count + 1, dtype=np.int64)
    if voxel_weights is not None:
        depth_weights, plane_weights = voxel_weights[0], np.outer(*voxel_weights[1:])
    for part in iter_slabs(len(labels), MAX_SLAB):
        weights = None if voxel_weights is None else \
            (depth_weights[part.write, None, None] * plane_weights).ravel()
        sizes += np.rint(np.bincount(labels[part.write].ravel(), weights, minlength=count + 1)).astype(np.int64)
    return labels, sizes


def _select_components(labels, selected):
    """Boolean mask of the voxels whose label is marked True in ``selected``."""
    result = np.empty(labels.shape, dtype=bool)
    for part in iter_slabs(len(labels), MAX_SLAB):
        result[part.write] = selected[labels[part.write]]
    return result


def remove_small_components(mask, min_size, voxel_weights=None):
    """Drop 26-connected components of fewer than ``min_size`` voxels (weighted as in :func:`_components`)."""
    if min_size <= 1:
        return mask
    labels, sizes = _components(mask, voxel_weights)
    large = sizes >= min_size
    large[0] = False
    return _select_components(labels, large)


def open_slices(mask, radius):
    """Opening of every z-slice with a disk of ``radius``: removes thin lines and specks narrower than
    the disk. The outside of the slice counts as foreground, so regions touching an edge are not cut."""
    if radius <= 0:
        return mask
    from skimage import morphology  # imported here: it costs a quarter of a second at start-up

    disk = morphology.disk(radius)
    return np.stack([morphology.binary_opening(plane, disk) for plane in mask])


def keep_largest_component(mask, voxel_weights=None):
    """Only the largest 26-connected component (the first one on ties); an empty mask stays empty."""
    labels, sizes = _components(mask, voxel_weights)
    if len(sizes) <= 2:
        return mask
    sizes[0] = 0
    return _select_components(labels, np.arange(len(sizes)) == int(np.argmax(sizes)))


def fill_enclosed_holes(mask):
    """Fill background regions (6-connected) that touch no face of the volume, as
    ``scipy.ndimage.binary_fill_holes`` does, by one labelling of the background instead of repeated
    dilations from the faces."""
    labels, count = ndimage.label(~mask, output=np.int32)
    if count == 0:
        return mask
    open_to_a_face = np.zeros(count + 1, dtype=bool)
    for axis in range(labels.ndim):
        for end in (0, -1):
            open_to_a_face[np.take(labels, end, axis=axis)] = True
    open_to_a_face[0] = False  # label 0: the mask itself
    return ~_select_components(labels, open_to_a_face)


def grow_mask(mask, distance, slab=None):
    """Grow (``distance`` > 0) or erode (< 0) by |distance| voxels, Euclidean.

    Growing keeps voxels within |distance| of the mask (dilation by a ball); eroding keeps mask voxels
    farther than |distance| from any background voxel (erosion by a ball, the outside of the volume
    counting as mask so that a mask touching a face does not shrink from it). Works slab by slab: a
    neighbour within the distance is at most ceil(|distance|) planes away. By default a slab is at most
    1/32 of the depth: scipy's distance transform needs about 50 bytes per voxel of the block it reads.
    """
    if slab is None:
        slab = min(MAX_SLAB, max(1, mask.shape[0] // 32))
    if distance == 0:
        return mask
    radius = abs(float(distance))
    result = np.zeros(mask.shape, dtype=bool)
    for part in iter_slabs(mask.shape[0], slab, int(np.ceil(radius))):
        block = mask[part.read]
        if distance > 0:
            # distance of each voxel to the nearest mask voxel; all-background blocks stay background
            if block.any():
                result[part.write] = part.kept(ndimage.distance_transform_edt(~block) <= radius)
        elif block.all():
            result[part.write] = True
        else:
            result[part.write] = part.kept(ndimage.distance_transform_edt(block) > radius)
    return result


def postprocess_mask(mask, min_region_size=MIN_REGION_SIZE, open_radius=0, keep_largest=False, fill_holes=True,
                     grow=0, voxel_weights=None):
    """Clean a binary mask [z, y, x]; returns uint8 {0, 1} of the same shape.

    ``min_region_size``: remove 26-connected components with fewer voxels (0 or 1: off).
    ``open_radius``: per-slice opening with a disk of this radius in voxels (0: off).
    ``keep_largest``: keep only the largest component.
    ``fill_holes``: fill background regions enclosed by the mask (not touching a face).
    ``grow``: grow (> 0) or erode (< 0) by this many voxels (Euclidean; may be fractional).
    ``voxel_weights``: ``(wz, wy, wx)``, each voxel of ``mask`` stands for ``wz[z]·wy[y]·wx[x]`` voxels of
    a finer grid in the region sizes (a binned mask cleaned as its unbinned copy would be).
    """
    mask = _as_mask(mask)
    min_region_size = _whole_number('Minimum region size', min_region_size)
    open_radius = _whole_number('Opening radius', open_radius)
    if isinstance(grow, bool) or not isinstance(grow, numbers.Real) or not np.isfinite(grow):
        raise CryoSegInputError(f'Grow distance must be a number of voxels; got {grow!r}.')
    if abs(grow) > max(mask.shape):
        raise CryoSegInputError(f'Grow distance {grow} voxels exceeds the mask size {mask.shape[::-1]} '
                                f'(x, y, z); give it in voxels, not Å.')

    mask = remove_small_components(mask, min_region_size, voxel_weights)
    mask = open_slices(mask, open_radius)
    if keep_largest:
        mask = keep_largest_component(mask, voxel_weights)
    if fill_holes:
        mask = fill_enclosed_holes(mask)
    mask = grow_mask(mask, grow)
    log.info('post-processed mask keeps %.2f %% of voxels', 100.0 * np.count_nonzero(mask) / mask.size)
    return mask.astype(np.uint8)
