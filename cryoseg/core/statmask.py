"""IsoNet-style statistics masks, and the make-mask entry points (algorithms.md §1.1–1.3).

A statistics mask keeps the voxels that are near dense material (the *max-value* mask: dark, i.e.
dense, somewhere within a box) AND in textured surroundings (the *std* mask: the local standard
deviation is high). Both are computed on the tomogram binned by 2 and smoothed with a Gaussian of
σ = side/2 binned voxels, then the binary result is replicated back to full size.

Memory: the input is read through the memory map slab by slab; only binned (1/8-size) float32 arrays and
the full-size uint8 result are held, and every local filter runs on z-slabs with a halo equal to its
reach, so the result does not depend on the slab size. Percentiles and the overall std come from the
whole binned volume, never from a slab.
"""
import logging
import os

import numpy as np
from scipy import ndimage

from .checks import check_finite, check_not_constant, check_volume_shape, check_volume_values
from .errors import CryoSegInputError
from .mrcio import open_volume, write_volume
from .slabs import iter_slabs

logger = logging.getLogger(__name__)

STD_MODES = ('global_factor', 'percentile')
Z_CROP_MODES = ('isonet1', 'isonet2')
METHODS = ('statistics', 'texture', 'both')
DISABLED_ABOVE = 99.8  # IsoNet skips a percentile mask above this value
LOW_FRACTION = 0.01  # warn when a mask keeps less than this fraction of the voxels
_BIN_SIGMA = 0.5  # anti-aliasing Gaussian of skimage.transform.resize for a factor of 2


def _gaussian_reach(sigma):
    """Voxels scipy's Gaussian filter reads on each side (its default truncate of 4σ)."""
    return int(4.0 * sigma + 0.5)


def side_from_angstrom(side_angstrom, voxel_size):
    """The ``side`` of the statistics filters in binned voxels, from a length in Å.

    The filters run on the tomogram binned by 2, so one binned voxel spans ``2 · voxel_size`` Å.
    """
    if not voxel_size > 0:
        raise CryoSegInputError(f"the voxel size must be positive, not {voxel_size} Å")
    if not np.isfinite(side_angstrom) or side_angstrom <= 0:
        raise CryoSegInputError(f"the filter side must be a positive length in Å, not {side_angstrom}")
    side = int(round(side_angstrom / (2.0 * voxel_size)))
    if side < 1:
        raise CryoSegInputError(
            f"a filter side of {side_angstrom:g} Å is less than one binned voxel ({2 * voxel_size:g} Å at "
            f"{voxel_size:g} Å/voxel); use at least {2 * voxel_size:g} Å, ideally about the particle size")
    return side


def _check_statistics_settings(shape_binned, side, percentile, threshold, std_mode, std_percentile,
                               z_crop, z_crop_mode):
    if int(side) != side or side < 1:
        raise CryoSegInputError(f"side must be a whole number of at least 1 binned voxel, not {side}")
    box = 2 * int(side) + 1
    if box > max(shape_binned):
        raise CryoSegInputError(
            f"side {side} gives a filter box of {box} binned voxels ({2 * box} voxels), larger than the whole "
            f"tomogram ({2 * max(shape_binned)} voxels at most): choose a side close to the particle size")
    if not 0 < percentile <= 100:
        raise CryoSegInputError(f"percentile must be in (0, 100] (100 disables the max-value mask), "
                                f"not {percentile}")
    if not threshold >= 0:
        raise CryoSegInputError(f"threshold must be 0 or more (0 disables the std mask), not {threshold}")
    if std_mode not in STD_MODES:
        raise CryoSegInputError(f"std_mode must be one of {', '.join(STD_MODES)}, not {std_mode!r}")
    if not 0 < std_percentile <= 100:
        raise CryoSegInputError(f"std percentile must be in (0, 100] (100 disables the std mask), "
                                f"not {std_percentile}")
    if not 0 <= z_crop < 0.5:
        raise CryoSegInputError(f"z_crop is the fraction of slices removed at each end: it must be in "
                                f"[0, 0.5), not {z_crop}")
    if z_crop_mode not in Z_CROP_MODES:
        raise CryoSegInputError(f"z_crop_mode must be one of {', '.join(Z_CROP_MODES)}, not {z_crop_mode!r}")


# ------------------------------------------------------------------------------------------ filters
def binned_shape(shape):
    return tuple((n + 1) // 2 for n in shape)


def _binning_weights():
    """Taps at offsets −2..3 of "Gaussian σ = 0.5 then mean of the pair (2i, 2i+1)" along one axis."""
    offsets = np.arange(-2, 3)
    gaussian = np.exp(-0.5 * (offsets / _BIN_SIGMA) ** 2)
    gaussian /= gaussian.sum()
    return gaussian, (np.append(gaussian, 0) + np.insert(gaussian, 0, 0)) / 2


_GAUSSIAN_TAPS, _PAIR_TAPS = _binning_weights()


def _bin_axis(block, axis):
    """Gaussian σ = 0.5 (mirror borders) along ``axis``, then the mean of each pair of planes; an odd
    length gets one edge-replicated smoothed plane first. Computed as one 6-tap stride-2 filter, so
    each axis pass only produces (and the next pass only reads) the binned planes."""
    length = block.shape[axis]
    if length < 6:  # too short for a single mirror reflection: let scipy handle the borders
        smoothed = ndimage.gaussian_filter1d(block, _BIN_SIGMA, axis=axis, mode='mirror')
        if length % 2:
            smoothed = np.concatenate([smoothed, smoothed.take([-1], axis)], axis)
        even, odd = (smoothed.take(range(first, smoothed.shape[axis], 2), axis) for first in (0, 1))
        return (even + odd) * np.float32(0.5)
    padded = np.pad(block, [(2, 3) if a == axis else (0, 0) for a in range(block.ndim)], mode='reflect')
    pairs = length // 2

    def planes(first, count, step):
        return padded[(slice(None),) * axis + (slice(first, first + step * (count - 1) + 1, step),)]

    out = np.zeros(block.shape[:axis] + ((length + 1) // 2,) + block.shape[axis + 1:], np.float32)
    paired = out[(slice(None),) * axis + (slice(0, pairs),)]
    term = np.empty_like(paired)
    for offset in range(3):  # the taps are symmetric: weight the sum of each mirrored pair once
        np.add(planes(offset, pairs, 2), planes(5 - offset, pairs, 2), out=term)
        term *= np.float32(_PAIR_TAPS[offset])
        paired += term
    if length % 2:  # the last plane pairs with its own replica: the smoothed plane itself
        last = out[(slice(None),) * axis + (slice(pairs, pairs + 1),)]
        for offset, weight in enumerate(_GAUSSIAN_TAPS):
            last += np.float32(weight) * planes(length - 1 + offset, 1, 1)
    return out


def bin2(volume, slab=32):
    """Bin by 2 as ``skimage.transform.resize(anti_aliasing=True)`` does for even sizes: Gaussian
    σ = 0.5 (mirror borders) then 2×2×2 block means. Odd sizes are padded by one edge-replicated plane.

    Reads ``volume`` (may be a memmap) ``2·slab`` planes at a time; raises on NaN/Inf or constant data.
    """
    check_volume_shape(volume.shape)
    depth = volume.shape[0]
    out = np.empty(binned_shape(volume.shape), np.float32)
    reach = _gaussian_reach(_BIN_SIGMA)
    for part in iter_slabs(out.shape[0], slab):
        start, stop = 2 * part.write.start, min(2 * part.write.stop, depth)
        lo, hi = max(start - reach, 0), min(stop + reach, depth)
        block = np.asarray(volume[lo:hi], dtype=np.float32)
        check_finite(block, lo)
        binned = _bin_axis(block, 0)[(start - lo) // 2:(start - lo) // 2 + len(out[part.write])]
        out[part.write] = _bin_axis(_bin_axis(binned, 1), 2)
    check_not_constant(float(out.min()), float(out.max()))
    return out


def _slab_filter(volume, reach, slab, function, dtype=np.float32):
    """Apply ``function(block, part)`` to z-slabs read with ``reach`` planes of halo; keep the slab part."""
    out = np.empty(volume.shape, dtype)
    for part in iter_slabs(volume.shape[0], slab, reach):
        out[part.write] = part.kept(function(volume[part.read], part))
    return out


def smooth(binned, side, slab=32):
    """Gaussian of σ = side/2 (reflect borders), as IsoNet smooths the binned tomogram."""
    sigma = side / 2.0
    return _slab_filter(binned, _gaussian_reach(sigma), slab,
                        lambda block, _: ndimage.gaussian_filter(block, sigma, mode='reflect'))


def local_max_of_negated(smoothed, side, slab=32):
    """Maximum of −g over a box of 2·side+1 (reflect borders): high where dense (dark) material is near."""
    box = 2 * side + 1
    return _slab_filter(smoothed, side, slab,
                        lambda block, _: ndimage.maximum_filter(-block, box, mode='reflect'))


def _box_counts(length, side):
    """Voxels of each position's window [i − side, i + side] that lie inside [0, length)."""
    index = np.arange(length)
    return (np.minimum(index + side, length - 1) - np.maximum(index - side, 0) + 1).astype(np.float64)


def local_std(smoothed, side, slab=32):
    """Standard deviation of ``smoothed`` in a box of 2·side+1 that is truncated at the volume faces.

    Equals IsoNet's box sums by convolution with zero padding normalised by the count of voxels inside
    (negative variances from rounding clipped to 0). The count is the outer product of 1-D counts.
    """
    box = 2 * side + 1
    depth, height, width = smoothed.shape
    plane_count = np.outer(_box_counts(height, side), _box_counts(width, side))
    depth_count = _box_counts(depth, side)
    offset = float(np.mean(smoothed, dtype=np.float64))  # centring keeps E[g²] − E[g]² accurate

    def block_std(block, part):
        centred = block.astype(np.float64) - offset
        count = depth_count[part.read][:, None, None] * plane_count / box ** 3
        mean = ndimage.uniform_filter(centred, box, mode='constant') / count
        mean_square = ndimage.uniform_filter(centred * centred, box, mode='constant') / count
        return np.sqrt(np.maximum(mean_square - mean * mean, 0.0))

    return _slab_filter(smoothed, side, slab, block_std)


# ------------------------------------------------------------------------------------------ masks
def z_crop_planes(depth_binned, z_crop, z_crop_mode='isonet1'):
    """Binned slices removed at each end: ``int(f·nz2)`` (IsoNet 1) or ``int(f/2·nz2)`` (IsoNet 2, which
    passes half of its ``z_crop``). The same count is removed at both ends."""
    fraction = z_crop if z_crop_mode == 'isonet1' else z_crop / 2.0
    return int(fraction * depth_binned)


def statistics_mask_binned(volume, side=4, percentile=50.0, threshold=1.0, std_mode='global_factor',
                           std_percentile=50.0, z_crop=0.0, z_crop_mode='isonet1', percentiles_in_crop=False,
                           slab=32):
    """The statistics mask on the binned grid: ``(max_mask, std_mask, mask)`` boolean arrays.

    ``side`` is in binned voxels. ``percentile`` (% of the volume with content) sets the max-value mask,
    disabled above 99.8. In ``global_factor`` mode the std mask keeps local std > ``threshold`` × the std of
    the whole smoothed binned volume (0 disables it); in ``percentile`` mode it keeps the top
    ``std_percentile`` % (disabled above 99.8). ``z_crop`` zeroes a fraction of the binned slices at each
    end; percentiles are global unless ``percentiles_in_crop``.
    """
    check_volume_shape(volume.shape)
    _check_statistics_settings(binned_shape(volume.shape), side, percentile, threshold, std_mode,
                               std_percentile, z_crop, z_crop_mode)
    side = int(side)
    logger.info("binning %s by 2", 'x'.join(map(str, reversed(volume.shape))))
    binned = bin2(volume, slab)
    smoothed = smooth(binned, side, slab)
    del binned
    crop = z_crop_planes(len(smoothed), z_crop, z_crop_mode)
    kept = slice(crop, len(smoothed) - crop) if percentiles_in_crop else slice(None)

    if percentile > DISABLED_ABOVE:
        max_mask = np.ones(smoothed.shape, bool)
    else:
        logger.info("max-value mask (box %d binned voxels, %g %% kept)", 2 * side + 1, percentile)
        filtered = local_max_of_negated(smoothed, side, slab)
        max_mask = filtered > np.percentile(filtered[kept], 100.0 - percentile)
        del filtered

    std_disabled = threshold <= 0 if std_mode == 'global_factor' else std_percentile > DISABLED_ABOVE
    if std_disabled:
        std_mask = np.ones(smoothed.shape, bool)
    else:
        logger.info("std mask (box %d binned voxels, %s)", 2 * side + 1, std_mode)
        deviation = local_std(smoothed, side, slab)
        if std_mode == 'global_factor':
            limit = threshold * float(np.std(smoothed[kept], dtype=np.float64))
        else:
            limit = np.percentile(deviation[kept], 100.0 - std_percentile)
        std_mask = deviation > limit
        del deviation

    mask = max_mask & std_mask
    if crop:
        mask[:crop] = False
        mask[len(mask) - crop:] = False
    return max_mask, std_mask, mask


def unbin2(mask_binned, shape, isonet_odd_edge=False, slab=32):
    """Replicate each binned voxel into its 2×2×2 block of a full-size uint8 {0, 1} mask.

    For odd sizes the last plane repeats its neighbour (edge replication); ``isonet_odd_edge`` leaves it 0
    as IsoNet does.
    """
    out = np.empty(shape, np.uint8)
    for part in iter_slabs(mask_binned.shape[0], slab):
        block = mask_binned[part.write].astype(np.uint8)
        block = block.repeat(2, 0).repeat(2, 1).repeat(2, 2)
        stop = min(2 * part.write.stop, shape[0])
        out[2 * part.write.start:stop] = block[:stop - 2 * part.write.start, :shape[1], :shape[2]]
    if isonet_odd_edge:
        for axis, length in enumerate(shape):
            if length % 2:
                out[(slice(None),) * axis + (length - 1,)] = 0
    return out


def statistics_mask(volume, side=4, percentile=50.0, threshold=1.0, std_mode='global_factor',
                    std_percentile=50.0, z_crop=0.0, z_crop_mode='isonet1', percentiles_in_crop=False,
                    isonet_odd_edge=False, slab=32):
    """Full-size uint8 {0, 1} statistics mask of ``volume`` [z, y, x] (see :func:`statistics_mask_binned`)."""
    *_, mask = statistics_mask_binned(volume, side, percentile, threshold, std_mode, std_percentile, z_crop,
                                      z_crop_mode, percentiles_in_crop, slab)
    return unbin2(mask, volume.shape, isonet_odd_edge, slab)


# ------------------------------------------------------------------------------------------ entry points
def make_mask(volume, method='statistics', statistics=None, texture=None, postprocess=None, slab=32):
    """uint8 {0, 1} mask of ``volume`` [z, y, x] (may be a memmap).

    ``method``: 'statistics', 'texture' or 'both' (intersection). ``statistics``, ``texture`` and
    ``postprocess`` are keyword dictionaries for :func:`statistics_mask`,
    :func:`cryoseg.core.texture.texture_mask` and :func:`cryoseg.core.morphology.postprocess_mask`;
    ``postprocess=None`` skips the clean-up.
    """
    if method not in METHODS:
        raise CryoSegInputError(f"method must be one of {', '.join(METHODS)}, not {method!r}")
    check_volume_shape(volume.shape)
    mask = None
    if method in ('statistics', 'both'):
        mask = statistics_mask(volume, slab=slab, **(statistics or {}))
    if method in ('texture', 'both'):
        from .texture import texture_mask

        if mask is None:  # the statistics path has already checked the values while binning
            check_volume_values(volume, 2 * slab)
        logger.info("texture mask")
        textured = texture_mask(volume, slab=slab, **(texture or {}))
        mask = textured if mask is None else np.minimum(mask, textured, out=mask)
    if postprocess is not None:
        from .morphology import postprocess_mask

        logger.info("post-processing the mask")
        mask = postprocess_mask(mask, **postprocess)
    return mask.astype(np.uint8, copy=False)


def mask_fraction(mask):
    """Fraction of voxels a mask keeps."""
    return float(np.count_nonzero(mask)) / mask.size


def points_inside(mask, xyz):
    """Boolean per (x, y, z) position: does its nearest voxel lie inside the volume and the mask?"""
    index = np.rint(np.asarray(xyz, float).reshape(-1, 3)[:, ::-1]).astype(int)
    within = np.all((index >= 0) & (index < np.array(mask.shape)), axis=1)
    inside = np.zeros(len(index), bool)
    inside[within] = np.asarray(mask[tuple(index[within].T)]) > 0
    return inside


def mask_warnings(fraction):
    """Messages for a mask that would starve the steps using it (IsoNet crashes on an empty mask)."""
    if fraction <= 0:
        return ["the mask is empty: raise the percentile, lower the threshold or check the tomogram"]
    if fraction < LOW_FRACTION:
        return [f"the mask keeps only {100 * fraction:.2f} % of the voxels: raise the percentile or lower "
                "the threshold if this is not intended"]
    return []


def mask_file_name(tomogram_path):
    """``NAME_mask.mrc`` for a tomogram file ``NAME.ext`` (IsoNet's convention)."""
    return os.path.splitext(os.path.basename(tomogram_path))[0] + '_mask.mrc'


def make_mask_file(in_path, out_path, method='statistics', statistics=None, texture=None, postprocess=None,
                   slab=32):
    """Mask the tomogram ``in_path`` (read through a memory map) and write a uint8 {0, 1} MRC to
    ``out_path`` (MRC mode 0, 8-bit) with the input's voxel size and origin. Returns the fraction of voxels
    kept.

    Input errors are raised as :class:`CryoSegInputError` naming the file; nothing is written then.
    """
    with open_volume(in_path) as (data, info):
        try:
            mask = make_mask(data, method, statistics, texture, postprocess, slab)
        except CryoSegInputError as err:
            raise CryoSegInputError(f"{in_path}: {err}") from None
    # MRC mode 0 (8 bits): mrcfile would widen uint8 to 16 bits; 0 and 1 read the same signed or not
    write_volume(out_path, mask.view(np.int8), info.voxel_size, info.origin)
    fraction = mask_fraction(mask)
    logger.info("%s: mask keeps %.1f %% of the voxels", out_path, 100 * fraction)
    return fraction
