"""IsoNet-style statistics masks, and the make-mask entry points (algorithms.md §1.1–1.3).

A statistics mask keeps the voxels that are near dense material (the *max-value* mask: dark, i.e.
dense, somewhere within a box) AND in textured surroundings (the *std* mask: the local standard
deviation is high). Both are computed on the tomogram binned by 2 and smoothed with a Gaussian of
σ = side/2 binned voxels, then the binary result is replicated back to full size.

Memory: the input is read through the memory map slab by slab; only binned (1/8-size) float32 arrays and
the full-size uint8 result are held, and every local filter runs on z-slabs with a halo equal to its
reach, so the result does not depend on the slab size. Percentiles and the overall std come from the
whole binned volume, never from a slab.

By default the std mask splits the voxels into two classes, featureless and textured, at Otsu's threshold
of the logarithm of the local std (:func:`otsu_log_threshold`): it assumes neither how much of the volume
is specimen (IsoNet's code keeps a fixed percentage) nor a relation between the local std in a box and the
std of the whole volume, which large-scale contrast (gradients across a lamella, ice thickness) inflates
(IsoNet's documentation: local std > threshold × overall std; :func:`overall_std`).

Files (:func:`make_mask_file`) are read plane by plane with ordinary reads and, when the clean-up can run
on the binned grid (it is exact there: each binned voxel stands for its 2×2×2 block), the full-size mask
is only ever built and written one slab at a time.
"""
import functools
import logging
import numbers
import os

import numpy as np
from scipy import ndimage

from .checks import check_finite, check_not_constant, check_volume_shape
from .clustering import mad_gau
from .errors import CryoSegInputError
from .mrcio import open_volume, write_volume_planes
from .slabs import iter_slabs

logger = logging.getLogger(__name__)

STD_MODES = ('global_factor', 'percentile', 'otsu')
STD_ESTIMATES = ('robust', 'plain')
Z_CROP_MODES = ('isonet1', 'isonet2')
METHODS = ('statistics', 'texture', 'both')
BINNINGS = ('mean', 'gaussian')  # block means, or IsoNet's anti-aliased resize
DISABLED_ABOVE = 99.8  # IsoNet skips a percentile mask above this value
LOW_FRACTION = 0.01  # warn when a mask keeps less than this fraction of the voxels
_BIN_SIGMA = 0.5  # anti-aliasing Gaussian of skimage.transform.resize for a factor of 2
OTSU_BINS = 1024
OTSU_SAMPLES = 2 ** 21
DEFAULT_SIDE_ANGSTROM = 80.0  # IsoNet's side 4 at 10 Å/voxel
DEFAULT_MIN_REGION_ANGSTROM = 80.0  # the clean-up removes regions smaller than a ball of this diameter
DEFAULT_BLOCK_ANGSTROM = 640.0  # window of the texture mask's local variance


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


def default_side(voxel_size):
    """The statistics filters' ``side`` (binned voxels) for :data:`DEFAULT_SIDE_ANGSTROM`, at least 1."""
    return max(1, int(round(DEFAULT_SIDE_ANGSTROM / (2.0 * voxel_size))))


def ball_voxels(diameter_angstrom, voxel_size):
    """Voxels of a ball of this diameter (the smallest region the clean-up keeps)."""
    return int(round(4.0 / 3.0 * np.pi * (diameter_angstrom / 2.0 / voxel_size) ** 3))


def _check_statistics_settings(shape_binned, side, percentile, threshold, std_mode, std_percentile,
                               z_crop, z_crop_mode, std_estimate):
    if not np.isfinite(side) or int(side) != side or side < 1:
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
    if std_estimate not in STD_ESTIMATES:
        raise CryoSegInputError(f"std_estimate must be one of {', '.join(STD_ESTIMATES)}, not {std_estimate!r}")


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


def _mirror(index, length):
    """Index of position ``index`` of an axis of ``length`` ≥ 2 extended by mirroring about its end
    voxels (scipy's 'mirror' mode, numpy's 'reflect' padding)."""
    period = 2 * (length - 1)
    index %= period
    return period - index if index >= length else index


@functools.lru_cache(maxsize=16)
def _binning_taps(length):
    """``((input position, weight), ...)`` of each binned position along an axis of ``length``: Gaussian
    σ = 0.5 with mirror borders, then the mean of the pair (2i, 2i+1); for an odd length the last binned
    position is the smoothed last plane (paired with its edge replica)."""
    taps = [tuple((_mirror(2 * i + k, length), _PAIR_TAPS[k + 2]) for k in range(-2, 4))
            for i in range(length // 2)]
    if length % 2:
        taps.append(tuple((_mirror(length - 1 + k, length), _GAUSSIAN_TAPS[k + 2]) for k in range(-2, 3)))
    return tuple(taps)


def _bin_axis(block, axis):
    """Bin ``block`` by 2 along ``axis`` with :func:`_binning_taps`: the positions whose six taps lie
    inside are computed together from every-other-plane views (the taps are symmetric: each mirrored
    pair is summed, then weighted once), the two or three border positions from their tap lists."""
    length = block.shape[axis]
    taps = _binning_taps(length)
    out = np.empty(block.shape[:axis] + (len(taps),) + block.shape[axis + 1:], np.float32)

    def along(index):
        return (slice(None),) * axis + (index,)

    inner = max(length // 2 - 2, 0)  # binned positions 1 .. inner read planes 0 .. 2·inner + 3
    if inner:
        target = out[along(slice(1, 1 + inner))]
        term = np.empty(target.shape, np.float32)
        for offset in range(3):
            pair = term if offset else target
            np.add(*(block[along(slice(start, start + 2 * inner - 1, 2))] for start in (offset, 5 - offset)),
                   out=pair)
            pair *= np.float32(_PAIR_TAPS[offset])
            if offset:
                target += term
    for index in [0] + list(range(1 + inner, len(taps))):
        plane = out[along(index)]
        plane[...] = sum(np.float32(weight) * block[along(source)] for source, weight in taps[index])
    return out


def _mean_axis(block, axis):
    """Mean of the plane pairs (2i, 2i+1) along ``axis``; for an odd length the last plane is kept (the
    mean with its edge replica)."""
    def along(index):
        return (slice(None),) * axis + (index,)

    length = block.shape[axis]
    out = np.empty(block.shape[:axis] + ((length + 1) // 2,) + block.shape[axis + 1:], np.float32)
    pairs = out[along(slice(0, length // 2))]
    np.add(block[along(slice(0, length - 1, 2))], block[along(slice(1, length, 2))], out=pairs)
    pairs *= np.float32(0.5)
    if length % 2:
        out[along(-1)] = block[along(length - 1)]
    return out


def bin2(volume, slab=32, chunk=8, binning='mean'):
    """Bin by 2: ``'mean'`` takes 2×2×2 block means; ``'gaussian'`` smooths first with a Gaussian of
    σ = 0.5 (mirror borders), as ``skimage.transform.resize(anti_aliasing=True)`` (IsoNet) does for even
    sizes. Odd sizes are padded by one edge-replicated plane. The statistics mask smooths the binned
    volume with σ = side/2 ≥ 0.5 binned voxels afterwards, so the anti-aliasing only matters for
    IsoNet's exact mask; the block means take a third of its time.

    ``volume`` (a memmap or :class:`~cryoseg.core.mrcio.PlaneReader`) is read ``chunk`` planes at a
    time and binned in y and x first, so the full-size data pass through the cache once; each binned
    plane is then the weighted sum of its (y, x)-binned input planes, the same sum whatever the slab.
    Raises on NaN/Inf or constant data.
    """
    check_volume_shape(volume.shape)
    if binning not in BINNINGS:
        raise CryoSegInputError(f"binning must be one of {', '.join(BINNINGS)}, not {binning!r}")
    gaussian = binning == 'gaussian'
    taps = _binning_taps(volume.shape[0]) if gaussian else _pair_taps(volume.shape[0])
    bin_axis = _bin_axis if gaussian else _mean_axis
    out = np.empty(binned_shape(volume.shape), np.float32)
    term = np.empty(out.shape[1:], np.float32)
    for part in iter_slabs(out.shape[0], slab, progress='statistics mask: binning by 2'):
        needed = [plane for index in range(part.write.start, part.write.stop) for plane, _ in taps[index]]
        first, stop = min(needed), max(needed) + 1
        planes = np.empty((stop - first,) + out.shape[1:], np.float32)
        for start in range(first, stop, chunk):
            block = np.asarray(volume[start:min(start + chunk, stop)], dtype=np.float32)
            binned = planes[start - first:start - first + len(block)]
            binned[...] = bin_axis(bin_axis(block, 1), 2)
            if not np.isfinite(binned).all():  # a NaN or Inf voxel spreads to its binned voxel
                check_finite(block, start)
        for index in range(part.write.start, part.write.stop):
            (plane, weight), *others = taps[index]
            np.multiply(planes[plane - first], np.float32(weight), out=out[index])
            for plane, weight in others:
                out[index] += np.multiply(planes[plane - first], np.float32(weight), out=term)
    check_not_constant(float(out.min()), float(out.max()))
    return out


def _pair_taps(length):
    """``((input plane, weight), ...)`` of each binned plane for block means (see :func:`_mean_axis`)."""
    return tuple(((2 * i, 0.5), (2 * i + 1, 0.5)) if 2 * i + 1 < length else ((2 * i, 1.0),)
                 for i in range((length + 1) // 2))


def _take(array, axis, start, count):
    return array[(slice(None),) * axis + (slice(start, start + count),)]


def _padded_window(block, axis, reach, pad_mode, keep=slice(None)):
    """``(window, count)``: ``block`` with its ends along ``axis`` extended by ``reach`` planes
    (``numpy.pad(mode=pad_mode)``), cut to what the ``count`` outputs ``keep`` read: output i reads
    window planes i .. i + 2·reach.

    Filters built from whole shifted planes (rows) combine every voxel in the same order whatever the
    slab, and are several times faster across planes and rows than scipy's 1-D filters, which gather
    every line into a buffer first (they stay faster along x). Computing only the kept planes spares the
    next axes the halo.
    """
    first, stop, _ = keep.indices(block.shape[axis])
    padded = np.pad(block, [(reach, reach) if a == axis else (0, 0) for a in range(block.ndim)], mode=pad_mode)
    return _take(padded, axis, first, stop - first + 2 * reach), stop - first


def _gaussian_along(block, axis, sigma, keep=slice(None)):
    """Gaussian of ``sigma`` along ``axis`` (z or y) with scipy's kernel and 'reflect' borders (numpy's
    'symmetric'): each mirrored pair of planes is summed, then weighted once."""
    reach = _gaussian_reach(sigma)
    weights = np.exp(-0.5 * (np.arange(reach + 1) / sigma) ** 2)
    weights /= 2 * weights.sum() - weights[0]
    window, count = _padded_window(block, axis, reach, 'symmetric', keep)
    out = _take(window, axis, reach, count) * np.float32(weights[0])
    term = np.empty_like(out)
    for offset in range(1, reach + 1):
        np.add(_take(window, axis, reach - offset, count), _take(window, axis, reach + offset, count), out=term)
        term *= np.float32(weights[offset])
        out += term
    return out


def _smooth_block(block, sigma, keep):
    smoothed = _gaussian_along(_gaussian_along(block, 0, sigma, keep), 1, sigma)
    return ndimage.gaussian_filter1d(smoothed, sigma, axis=2, mode='reflect', output=smoothed)


def _slabwise(source, halo, slab, compute, out=None, progress=None):
    """``out[part.write] = compute(source[part.read], part)`` over the z-slabs of ``source`` read with
    ``halo`` planes. ``out`` may be ``source`` itself: the original values of the last ``halo`` planes
    written are kept aside for the next slab's halo, so a filter replaces its input without a second
    volume-sized array."""
    out = np.empty(source.shape, np.float32) if out is None else out
    in_place, saved = out is source, source[:0].copy()
    for part in iter_slabs(len(source), slab, halo, progress=progress):
        overwritten = part.write.start - part.read.start if in_place else 0
        block = source[part.read]
        if overwritten:
            block = np.concatenate([saved[len(saved) - overwritten:], source[part.write.start:part.read.stop]])
        result = compute(block, part)
        if in_place and halo:
            saved = np.concatenate([saved, source[part.write]])[-halo:]
        out[part.write] = result
    return out


def smooth(binned, side, slab=32, out=None):
    """Gaussian of σ = side/2 (reflect borders), as IsoNet smooths the binned tomogram (scipy's kernel);
    ``out=binned`` smooths in place."""
    sigma = side / 2.0
    return _slabwise(binned, _gaussian_reach(sigma), slab, lambda block, part: _smooth_block(block, sigma, part.keep),
                     out, 'statistics mask: smoothing')


def _combine_neighbours(block, axis, radius, combine, pad_mode, keep=slice(None)):
    """``combine`` (np.add or np.minimum) of the 2·radius+1 neighbours of each voxel along ``axis`` (see
    :func:`_padded_window`): windows of 2, 4, 8 ... planes are built by doubling and the binary digits of
    the window assembled, about 2·log2(window) passes."""
    window = 2 * radius + 1
    span, count = _padded_window(block, axis, radius, pad_mode, keep)
    out, covered, width = None, 0, 1  # ``span`` combines ``width`` planes from each position
    while True:
        if window & width:
            piece = _take(span, axis, covered, count)
            out = piece if out is None else combine(out, piece)
            covered += width
        if 2 * width > window:
            return out
        size = span.shape[axis] - width
        span = combine(_take(span, axis, 0, size), _take(span, axis, width, size))
        width *= 2


def _block_max_of_negated(block, side, keep=slice(None)):
    """max(−g) over the box (reflect borders), computed as −min(g): exactly equal, without a negated copy."""
    low = _combine_neighbours(block, 0, side, np.minimum, 'symmetric', keep)  # numpy 'symmetric' = scipy 'reflect'
    low = _combine_neighbours(low, 1, side, np.minimum, 'symmetric')
    low = ndimage.minimum_filter1d(low, 2 * side + 1, axis=2, mode='reflect')
    return np.negative(low, out=low)


def _box_counts(length, side):
    """Voxels of each position's window [i − side, i + side] that lie inside [0, length)."""
    index = np.arange(length)
    return np.minimum(index + side, length - 1) - np.maximum(index - side, 0) + 1


class _LocalStd:
    """Standard deviation of the smoothed volume in a box of 2·side+1 truncated at the volume faces.

    Equals IsoNet's box sums by convolution with zero padding normalised by the count of voxels inside
    (negative variances from rounding clipped to 0). The volume is centred on its mean first, which
    keeps E[g²] − E[g]² accurate in float32; the count is the product of 1-D counts. Box sums run along
    z on whole planes, then as scipy means (sum / box) along y and x.
    """

    def __init__(self, smoothed, side):
        self.side, self.box = side, 2 * side + 1
        self.offset = np.float32(np.mean(smoothed, dtype=np.float64))
        self.plane_factor = np.outer(*(self.box / _box_counts(n, side) for n in smoothed.shape[1:])
                                     ).astype(np.float32)
        self.depth_count = _box_counts(smoothed.shape[0], side).astype(np.float32)

    def box_mean(self, block, factor, keep):
        summed = _combine_neighbours(block, 0, self.side, np.add, 'constant', keep)
        for axis in (1, 2):
            ndimage.uniform_filter1d(summed, self.box, axis=axis, output=summed, mode='constant')
        summed *= factor
        return summed

    def __call__(self, block, part):
        centred = np.subtract(block, self.offset, dtype=np.float32)
        factor = self.plane_factor / self.depth_count[part.write][:, None, None]
        mean = self.box_mean(centred, factor, part.keep)
        variance = self.box_mean(np.multiply(centred, centred, out=centred), factor, part.keep)
        variance -= np.multiply(mean, mean, out=mean)
        np.maximum(variance, 0, out=variance)
        return np.sqrt(variance, out=variance)


def _local_filters(smoothed, side, slab, density=True, contrast=True, in_place=False):
    """``(max of −g, local std)`` of the smoothed volume, each None unless asked for; both come from one
    pass over the same z-slabs (halo = side). ``in_place``: the local std replaces ``smoothed``."""
    filtered = np.empty(smoothed.shape, np.float32) if density else None
    block_std = _LocalStd(smoothed, side) if contrast else None

    def compute(block, part):
        if density:
            filtered[part.write] = _block_max_of_negated(block, side, part.keep)
        return block_std(block, part) if contrast else block[part.keep]

    deviation = _slabwise(smoothed, side, slab, compute, smoothed if in_place or not contrast else None,
                          'statistics mask: density and contrast filters')
    return filtered, deviation if contrast else None


def local_max_of_negated(smoothed, side, slab=32):
    """Maximum of −g over a box of 2·side+1 (reflect borders): high where dense (dark) material is near."""
    return _local_filters(smoothed, side, slab, contrast=False)[0]


def local_std(smoothed, side, slab=32):
    """Standard deviation of ``smoothed`` in a box of 2·side+1 that is truncated at the volume faces
    (see :class:`_LocalStd`)."""
    return _local_filters(smoothed, side, slab, density=False)[1]


def overall_std(smoothed, estimate='robust'):
    """The "overall std" that the std mask's threshold multiplies.

    ``robust`` (default): 1.4826 × the median absolute deviation, which equals the std for Gaussian
    values but ignores any minority of extreme voxels. Gold beads, carbon edges, contamination and the
    step between ice and vacuum put a heavy tail on the smoothed values; the plain std squares that tail
    and, on cryo-ET data, rises so much that threshold 1 drops particles. ``plain``: the plain std of the
    smoothed volume (IsoNet's original rule).
    """
    if estimate == 'plain':
        return float(np.std(smoothed, dtype=np.float64))
    return mad_gau(smoothed)


def otsu_log_threshold(deviation):
    """Local std above which a voxel is textured: Otsu's threshold (the split of a histogram into two
    classes with the largest between-class variance) of log(local std) over the voxels with any.

    The empty parts of a tomogram (vacuum, ice, resin) hold noise alone, whose local std is low and
    narrowly spread; the specimen's spreads over decades. On the logarithm the split does not depend on
    the contrast scale, and a few very textured voxels (gold beads, carbon edges) do not drag it up.

    References
    ----------
    N. Otsu, "A threshold selection method from gray-level histograms", IEEE Trans. Syst. Man Cybern.
    9 (1979) 62–66.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> std = np.concatenate([rng.lognormal(np.log(0.2), 0.1, 1000), rng.lognormal(np.log(1.0), 0.3, 1000)])
    >>> 0.25 < otsu_log_threshold(std) < 0.6
    True
    """
    from .texture import otsu_from_histogram

    sample = deviation.ravel()[::max(1, deviation.size // OTSU_SAMPLES)]  # a regular sample is plenty
    positive = sample[sample > 0]
    if positive.size == 0:
        return 0.0
    logs = np.log(positive)
    low, high = float(logs.min()), float(logs.max())
    if high <= low:
        return float(np.nextafter(np.float32(positive[0]), np.float32(0)))  # one class: keep it
    counts, edges = np.histogram(logs, OTSU_BINS, (low, high))
    return float(np.exp(otsu_from_histogram(counts, edges)))


def _percentile(values, q):
    """``np.percentile(values, q)`` (linear interpolation), without a partition of a copy of all values:
    bounds around the q-th percentile come from a strided sample, the values between them are
    partitioned for the two order statistics, and numpy interpolates those as it would (the whole
    array is used when the bounds miss them). About four times faster on a binned tomogram."""
    values = values.ravel()
    position = q / 100 * (values.size - 1)  # numpy's virtual index
    rank = int(np.floor(position))
    ranks = [rank, min(rank + 1, values.size - 1)]
    sample = np.sort(values[::max(1, values.size // 65536)])
    centre = position / max(values.size - 1, 1) * (len(sample) - 1)
    margin = 4 * np.sqrt(len(sample)) + 2  # sampling error of a rank is about √len(sample)
    low = sample[max(int(centre - margin), 0)]
    high = sample[min(int(centre + margin) + 1, len(sample) - 1)]
    below = np.count_nonzero(values < low)
    band = values[(values >= low) & (values <= high)]
    local = [r - below for r in ranks]
    if local[0] < 0 or local[1] >= len(band):
        return float(np.percentile(values, q))
    return float(np.quantile(np.partition(band, local)[local], position - rank))


def z_crop_planes(depth_binned, z_crop, z_crop_mode='isonet1'):
    """Binned slices removed at each end: ``int(f·nz2)`` (IsoNet 1) or ``int(f/2·nz2)`` (IsoNet 2, which
    passes half of its ``z_crop``). The same count is removed at both ends."""
    fraction = z_crop if z_crop_mode == 'isonet1' else z_crop / 2.0
    return int(fraction * depth_binned)


def statistics_mask_binned(volume, side=4, percentile=50.0, threshold=1.0, std_mode='otsu',
                           std_percentile=50.0, z_crop=0.0, z_crop_mode='isonet1', percentiles_in_crop=False,
                           std_estimate='robust', binning='mean', slab=32):
    """The statistics mask on the binned grid: ``(max_mask, std_mask, mask)`` boolean arrays.

    ``side`` is in binned voxels. ``percentile`` (% of the volume with content) sets the max-value mask,
    disabled above 99.8. In ``otsu`` mode (default) the std mask keeps the textured class of
    :func:`otsu_log_threshold`. In ``global_factor`` mode it keeps local std > ``threshold`` × the
    overall std of the smoothed binned volume (0 disables it), estimated robustly or plainly as IsoNet
    did (``std_estimate``, see :func:`overall_std`); in ``percentile`` mode (IsoNet's code) it keeps the
    top ``std_percentile`` % (disabled above 99.8). ``z_crop`` zeroes a fraction of the binned slices at each
    end; percentiles and the overall std are global unless ``percentiles_in_crop``. ``binning``: see
    :func:`bin2` ('gaussian' for IsoNet's mask).
    """
    check_volume_shape(volume.shape)
    _check_statistics_settings(binned_shape(volume.shape), side, percentile, threshold, std_mode,
                               std_percentile, z_crop, z_crop_mode, std_estimate)
    side = int(side)
    logger.info("binning %s by 2", 'x'.join(map(str, reversed(volume.shape))))
    binned = bin2(volume, slab, binning=binning)
    smoothed = smooth(binned, side, slab, out=binned)  # in place: one binned volume in memory
    crop = z_crop_planes(len(smoothed), z_crop, z_crop_mode)
    kept = slice(crop, len(smoothed) - crop) if percentiles_in_crop else slice(None)

    density = percentile <= DISABLED_ABOVE
    contrast = {'global_factor': threshold > 0, 'percentile': std_percentile <= DISABLED_ABOVE}.get(std_mode, True)
    logger.info("local filters (box %d binned voxels): max-value mask %s, std mask %s", 2 * side + 1,
                f'{percentile:g} %' if density else 'off', std_mode if contrast else 'off')
    if contrast and std_mode == 'global_factor':  # before the local std replaces the smoothed volume
        limit = threshold * overall_std(smoothed[kept], std_estimate)
    filtered, deviation = _local_filters(smoothed, side, slab, density, contrast, in_place=True)
    if density:
        max_mask = filtered > _percentile(filtered[kept], 100.0 - percentile)
        del filtered
    else:
        max_mask = np.ones(smoothed.shape, bool)
    if contrast:
        if std_mode == 'otsu':
            limit = otsu_log_threshold(deviation[kept])
        elif std_mode == 'percentile':
            limit = _percentile(deviation[kept], 100.0 - std_percentile)
        std_mask = deviation > limit
        del deviation
    else:
        std_mask = np.ones(smoothed.shape, bool)

    mask = max_mask & std_mask
    if crop:
        mask[:crop] = False
        mask[len(mask) - crop:] = False
    return max_mask, std_mask, mask


def _unbinned_blocks(mask_binned, shape, isonet_odd_edge=False, slab=32):
    """The full-size uint8 {0, 1} mask of :func:`unbin2`, ``2·slab`` planes at a time."""
    odd_y, odd_x = shape[1] % 2 and isonet_odd_edge, shape[2] % 2 and isonet_odd_edge
    for part in iter_slabs(mask_binned.shape[0], slab):
        rows = mask_binned[part.write].astype(np.uint8).repeat(2, axis=2)[:, :, :shape[2]]
        block = np.empty((min(2 * part.write.stop, shape[0]) - 2 * part.write.start,) + tuple(shape[1:]), np.uint8)
        for z in (0, 1):  # full-size plane 2i + z and row 2j + y repeat binned plane i, row j
            for y in (0, 1):
                planes = block[z::2, y::2]
                planes[...] = rows[:len(planes), :planes.shape[1]]
        if odd_y:
            block[:, -1] = 0
        if odd_x:
            block[:, :, -1] = 0
        if isonet_odd_edge and shape[0] % 2 and 2 * part.write.stop > shape[0]:
            block[-1] = 0
        yield block


def unbin2(mask_binned, shape, isonet_odd_edge=False, slab=32):
    """Replicate each binned voxel into its 2×2×2 block of a full-size uint8 {0, 1} mask.

    For odd sizes the last plane repeats its neighbour (edge replication); ``isonet_odd_edge`` leaves it 0
    as IsoNet does.
    """
    out = np.empty(shape, np.uint8)
    start = 0
    for block in _unbinned_blocks(mask_binned, shape, isonet_odd_edge, slab):
        out[start:start + len(block)] = block
        start += len(block)
    return out


def _block_weights(shape):
    """Per axis, the full-size voxels each binned position stands for: 2, and 1 for the last position
    of an odd axis (its edge-replicated plane)."""
    return tuple(np.where(np.arange((n + 1) // 2) < n // 2, 2.0, 1.0) for n in shape)


def statistics_mask(volume, side=4, percentile=50.0, threshold=1.0, std_mode='otsu',
                    std_percentile=50.0, z_crop=0.0, z_crop_mode='isonet1', percentiles_in_crop=False,
                    std_estimate='robust', isonet_odd_edge=False, binning='mean', slab=32):
    """Full-size uint8 {0, 1} statistics mask of ``volume`` [z, y, x] (see :func:`statistics_mask_binned`)."""
    *_, mask = statistics_mask_binned(volume, side, percentile, threshold, std_mode, std_percentile, z_crop,
                                      z_crop_mode, percentiles_in_crop, std_estimate, binning, slab)
    return unbin2(mask, volume.shape, isonet_odd_edge, slab)


# ------------------------------------------------------------------------------------------ entry points
def _binned_cleanup(postprocess):
    """The part of the clean-up that is exact on the binned grid (region sizes weighted by the voxels each
    binned voxel stands for; 26-connected regions and 6-connected holes of replicated 2×2×2 blocks are
    those of the binned voxels), and the rest (openings and growth) for the full-size mask, or None."""
    if postprocess is None:
        return None, None
    binned = {key: value for key, value in postprocess.items() if key not in ('open_radius', 'grow')}
    rest = {key: value for key, value in postprocess.items() if key in ('open_radius', 'grow') and value}
    if rest:  # openings and growth run after the other steps: everything at full size
        return None, postprocess
    return binned, None


def _texture_settings_binned(texture):
    """Texture-mask settings for the tomogram binned by 2: the lengths in voxels halve."""
    texture = dict(texture or {})
    texture['block_size'] = max(2, int(round(texture.get('block_size', 64) / 2)))
    for name, default in (('texture_sigma', 1.0), ('edge_sigma', 0.5)):
        texture[name] = texture.get(name, default) / 2.0
    return texture


def _mask_binned(volume, method, statistics, texture, postprocess, slab):
    """The mask on the grid binned by 2 (boolean), cleaned up there when ``postprocess`` is given.

    The texture mask is computed on the tomogram binned by 2 with block means, its lengths halved: at
    the scales it measures (a variance window of hundreds of Å) binning changes nothing but its cost.
    """
    mask = None
    if method in ('statistics', 'both'):
        settings = dict(statistics or {})
        settings.pop('isonet_odd_edge', None)
        *_, mask = statistics_mask_binned(volume, slab=slab, **settings)
    if method in ('texture', 'both'):
        from .texture import texture_mask

        logger.info("texture mask on the tomogram binned by 2")
        textured = texture_mask(bin2(volume, slab), slab=slab, **_texture_settings_binned(texture)).view(bool)
        mask = textured if mask is None else np.logical_and(mask, textured, out=mask)
    if postprocess is not None:
        from .morphology import MIN_REGION_SIZE, postprocess_mask

        logger.info("post-processing the mask on the binned grid")
        postprocess = dict(postprocess)
        size = postprocess.get('min_region_size', MIN_REGION_SIZE)
        if any(n % 2 for n in volume.shape) or not isinstance(size, numbers.Integral) or size < 0:
            postprocess['voxel_weights'] = _block_weights(volume.shape)
        else:  # every binned voxel stands for 8: a region of n binned voxels is kept when 8·n >= min size
            postprocess['min_region_size'] = -(-int(size) // 8)
        mask = postprocess_mask(mask, **postprocess).view(bool)
    return mask


def _mask_blocks(volume, method, statistics, texture, postprocess, slab):
    """The full-size uint8 mask as consecutive blocks of z-planes: made on the binned grid, cleaned up
    there as far as that is exact (:func:`_binned_cleanup`), unbinned slab by slab; a clean-up with
    openings or growth runs on the whole full-size mask."""
    if method not in METHODS:
        raise CryoSegInputError(f"method must be one of {', '.join(METHODS)}, not {method!r}")
    check_volume_shape(volume.shape)
    binned_cleanup, full_cleanup = _binned_cleanup(postprocess)
    binned = _mask_binned(volume, method, statistics, texture, binned_cleanup, slab)
    blocks = _unbinned_blocks(binned, volume.shape, (statistics or {}).get('isonet_odd_edge', False), slab)
    if full_cleanup is None:
        return blocks
    from .morphology import postprocess_mask

    logger.info("post-processing the full-size mask")
    return iter([postprocess_mask(np.concatenate(list(blocks)), **full_cleanup)])


def make_mask(volume, method='statistics', statistics=None, texture=None, postprocess=None, slab=32):
    """uint8 {0, 1} mask of ``volume`` [z, y, x] (a memmap or plane reader too).

    ``method``: 'statistics', 'texture' or 'both' (intersection). ``statistics``, ``texture`` and
    ``postprocess`` are keyword dictionaries for :func:`statistics_mask`,
    :func:`cryoseg.core.texture.texture_mask` (applied to the tomogram binned by 2, lengths halved) and
    :func:`cryoseg.core.morphology.postprocess_mask`; ``postprocess=None`` skips the clean-up.
    """
    return np.concatenate(list(_mask_blocks(volume, method, statistics, texture, postprocess, slab)))


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
    """Mask the tomogram ``in_path`` and write a uint8 {0, 1} MRC to ``out_path`` (MRC mode 0, 8-bit)
    with the input's voxel size and origin. Returns the fraction of voxels kept.

    The tomogram is read plane by plane with ordinary reads (no page of it stays resident); the mask,
    made and cleaned up on the binned grid, is unbinned and written one slab at a time. Input errors are
    raised as :class:`CryoSegInputError` naming the file; nothing is written then.
    """
    with open_volume(in_path, mapped=False) as (data, info):
        try:
            blocks = _mask_blocks(data, method, statistics, texture, postprocess, slab)
        except CryoSegInputError as err:
            raise CryoSegInputError(f"{in_path}: {err}") from None
    kept = [0]

    def counted():  # MRC mode 0 (8 bits): mrcfile would widen uint8 to 16 bits; 0 and 1 read the same signed
        for block in blocks:
            kept[0] += np.count_nonzero(block)
            yield block.view(np.int8)

    write_volume_planes(out_path, info.shape_zyx, np.int8, counted(), info.voxel_size, info.origin)
    fraction = kept[0] / float(np.prod(info.shape_zyx))
    logger.info("%s: mask keeps %.1f %% of the voxels", out_path, 100 * fraction)
    return fraction
