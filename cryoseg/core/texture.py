"""Classical texture mask: specimen versus resin, ice or vacuum without deep learning.

This is the texture / structure analysis that Catena's mask module describes, done as described
(algorithms.md §1.4): the volume is normalised with global robust percentiles, and each voxel gets
up to four votes — high local variance, high structure-tensor coherence, strong edges and, optionally,
strong difference-of-Gaussians band energy. Each feature is thresholded by Otsu's method on one
histogram accumulated over the whole tomogram, and the mask is the majority of the votes.

The tomogram (indexed [z, y, x], possibly a read-only memory map) is processed in z-slabs read with
enough halo planes that every feature equals its whole-volume value; two passes over the slabs (one
to build the histograms, one to threshold) keep memory bounded by a few slabs plus the uint8 mask.
"""
import logging
from dataclasses import dataclass
from typing import Callable

import numpy as np
from scipy import ndimage

from .errors import CryoSegInputError
from .slabs import iter_slabs

log = logging.getLogger(__name__)

HISTOGRAM_BINS = 1024
NORMALISATION_PERCENTILES = (1.0, 99.0)
NORMALISATION_SAMPLES = 2_000_000
DOG_SIGMAS = tuple(np.geomspace(0.5, 2.0, 3))
VOTES = ('majority', 'variance')  # all features (Catena, FIB-SEM) or the local variance alone (cryo-ET)
# Structure-tensor traces below this (in normalised intensity units squared) are flat: coherence 0.
_FLAT_TRACE = 1e-10


def gaussian_reach(sigma):
    """Voxels a scipy Gaussian filter of ``sigma`` reads on each side (its default 4-sigma truncation)."""
    return int(4.0 * sigma + 0.5)


# ---------------------------------------------------------------- normalisation

def robust_range(volume, percentiles=NORMALISATION_PERCENTILES, max_samples=NORMALISATION_SAMPLES):
    """Global (low, high) intensity percentiles of ``volume`` from a regular strided subsample.

    Falls back to (min, max) when the percentiles coincide (a mostly constant volume); rejects
    non-finite and constant volumes with a :class:`CryoSegInputError`.
    """
    stride = max(1, int(np.ceil((volume.size / max_samples) ** (1.0 / volume.ndim))))
    sample = np.asarray(volume[(slice(None, None, stride),) * volume.ndim], dtype=np.float64)
    if not np.isfinite(sample).all():
        raise CryoSegInputError('The tomogram contains NaN or infinite voxel values; '
                                'repair or re-reconstruct it before masking.')
    low, high = np.percentile(sample, percentiles)
    if high <= low:
        low, high = sample.min(), sample.max()
    if high <= low:
        raise CryoSegInputError('The tomogram is constant (every voxel has the same value), '
                                'so there is no texture to separate specimen from background.')
    return float(low), float(high)


def normalise(block, low, high):
    """Map [low, high] to [0, 1] (float32), clipping outside values."""
    block = np.array(block, dtype=np.float32)  # a copy, normalised in place
    if not np.isfinite(block).all():
        raise CryoSegInputError('The tomogram contains NaN or infinite voxel values; '
                                'repair or re-reconstruct it before masking.')
    block -= np.float32(low)
    block /= np.float32(high - low)
    return np.clip(block, 0.0, 1.0, out=block)


# ---------------------------------------------------------------- features

def _in_plane(ndim, value):
    """Per-axis parameter acting on the last two axes (y, x) only."""
    return [0] * (ndim - 2) + [value, value]


def _ramp_gain(sigma):
    """Response of scipy's sampled Gaussian-derivative kernel to a unit ramp (e.g. 0.86 at sigma 0.5)."""
    reach = gaussian_reach(sigma)
    ramp = np.arange(2 * reach + 1, dtype=np.float64)
    return float(ndimage.gaussian_filter1d(ramp, sigma, order=1)[reach])


def gaussian_derivative(image, sigma, axis, axes=None):
    """Derivative along ``axis`` of ``image`` smoothed at ``sigma`` along ``axes`` (all by default).

    Gaussian-derivative kernels are rescaled so that a ramp a·x gives exactly a.
    """
    axes = tuple(range(image.ndim)) if axes is None else tuple(axes)
    sigmas = [sigma if a in axes else 0 for a in range(image.ndim)]
    order = [int(a == axis) for a in range(image.ndim)]
    derivative = ndimage.gaussian_filter(image, sigmas, order=order, mode='reflect')
    derivative /= derivative.dtype.type(_ramp_gain(sigma))
    return derivative


def local_variance(image, block_size, three_d=False):
    """Variance of ``image`` in a ``block_size`` window around each voxel, from box means of x and x².

    The window is in-plane (block_size² along y, x) unless ``three_d``; it spans offsets
    ``-(block_size // 2) .. block_size - 1 - block_size // 2`` (scipy's uniform filter), reflected at faces.
    """
    image = np.asarray(image, dtype=np.float32)
    size = [block_size] * image.ndim if three_d else [1] * (image.ndim - 2) + [block_size] * 2
    variance = ndimage.uniform_filter(np.square(image), size, mode='reflect')
    mean = ndimage.uniform_filter(image, size, mode='reflect')
    variance -= np.square(mean, out=mean)
    return np.maximum(variance, 0.0, out=variance)


def coherence(image, sigma=1.0, rho=None):
    """In-plane structure-tensor coherence ((λ1 − λ2) / (λ1 + λ2))² in [0, 1].

    Gradients along y and x at ``sigma``; tensor components integrated at ``rho`` (default 2·sigma).
    1 for a perfectly oriented pattern (membranes, stripes), near 0 for isotropic noise and flat regions.
    """
    rho = 2.0 * sigma if rho is None else rho
    image = np.asarray(image, dtype=np.float32)
    plane = (image.ndim - 2, image.ndim - 1)
    grad_y, grad_x = (gaussian_derivative(image, sigma, axis, plane) for axis in plane)
    integrate = _in_plane(image.ndim, rho)
    jxy = ndimage.gaussian_filter(grad_x * grad_y, integrate, mode='reflect')
    jxx = ndimage.gaussian_filter(np.square(grad_x, out=grad_x), integrate, mode='reflect')
    jyy = ndimage.gaussian_filter(np.square(grad_y, out=grad_y), integrate, mode='reflect')
    del grad_x, grad_y
    # (λ1 − λ2)² = (jxx − jyy)² + 4·jxy², λ1 + λ2 = jxx + jyy; computed in place to bound memory
    trace = jxx + jyy
    gap = np.square(np.subtract(jxx, jyy, out=jxx), out=jxx)
    gap += np.square(jxy, out=jxy) * 4.0
    del jxy, jyy
    flat = trace <= _FLAT_TRACE
    trace[flat] = 1.0
    gap /= np.square(trace, out=trace)
    gap[flat] = 0.0
    return np.minimum(gap, 1.0, out=gap)


def edge_strength(image, sigma=0.5):
    """Gaussian gradient magnitude at ``sigma`` (3-D for a volume); equals |a| on a ramp a·x."""
    image = np.asarray(image, dtype=np.float32)
    magnitude = np.zeros_like(image)
    for axis in range(image.ndim):
        magnitude += np.square(gaussian_derivative(image, sigma, axis))
    return np.sqrt(magnitude, out=magnitude)


def dog_energy(image, sigmas=DOG_SIGMAS, rho=2.0):
    """Mean absolute difference-of-Gaussians band response over consecutive ``sigmas``,
    averaged in-plane at ``rho`` so that it measures local band energy rather than single voxels."""
    image = np.asarray(image, dtype=np.float32)
    energy = np.zeros_like(image)
    finer = ndimage.gaussian_filter(image, sigmas[0], mode='reflect')
    for sigma in sigmas[1:]:
        coarser = ndimage.gaussian_filter(image, sigma, mode='reflect')
        finer -= coarser
        energy += np.abs(finer, out=finer)
        finer = coarser
    energy /= len(sigmas) - 1
    return ndimage.gaussian_filter(energy, _in_plane(image.ndim, rho), mode='reflect')


# ---------------------------------------------------------------- global thresholds

def otsu_from_histogram(counts, edges):
    """Otsu's threshold from a histogram: the upper edge of the last bin of the lower class.

    Voxels with values above the threshold form the upper class. Without two non-empty classes the
    upper edge of the highest occupied bin is returned, so nothing lies above it.
    """
    counts = np.asarray(counts, dtype=np.float64)
    edges = np.asarray(edges, dtype=np.float64)
    centres = 0.5 * (edges[:-1] + edges[1:])
    weight_low = np.cumsum(counts)
    weight_high = weight_low[-1] - weight_low
    mass_low = np.cumsum(counts * centres)
    mass_high = mass_low[-1] - mass_low
    valid = (weight_low > 0) & (weight_high > 0)
    if not valid.any():
        return float(edges[np.flatnonzero(counts)[-1] + 1]) if counts.any() else float(edges[-1])
    mean_low = np.divide(mass_low, weight_low, out=np.zeros_like(mass_low), where=valid)
    mean_high = np.divide(mass_high, weight_high, out=np.zeros_like(mass_high), where=valid)
    between_class = np.where(valid, weight_low * weight_high * (mean_low - mean_high) ** 2, -1.0)
    return float(edges[int(np.argmax(between_class)) + 1])


class GlobalHistogram:
    """Histogram of non-negative values over [0, top) with a fixed number of bins, accumulated piece by
    piece. ``top`` is always a power of two that grows (merging bin pairs, which is exact) as larger
    values arrive, so the final histogram does not depend on how the data were split into pieces."""

    def __init__(self, bins=HISTOGRAM_BINS):
        if bins < 2 or bins & (bins - 1):
            raise ValueError('bins must be a power of two')
        self.counts = np.zeros(bins, dtype=np.int64)
        self.top = 2.0 ** -40

    @property
    def edges(self):
        return np.linspace(0.0, self.top, len(self.counts) + 1)

    def add(self, values):
        values = np.asarray(values).ravel()
        if values.size == 0:
            return
        largest = float(values.max())
        while largest > self.top:
            self.counts = np.concatenate([self.counts.reshape(-1, 2).sum(axis=1),
                                          np.zeros(len(self.counts) // 2, dtype=np.int64)])
            self.top *= 2.0
        bins = len(self.counts)
        index = np.minimum((values.astype(np.float64) * (bins / self.top)).astype(np.int64), bins - 1)
        self.counts += np.bincount(index, minlength=bins)

    def otsu(self):
        return otsu_from_histogram(self.counts, self.edges)


# ---------------------------------------------------------------- the mask

@dataclass(frozen=True)
class Feature:
    name: str
    compute: Callable  # normalised block [z, y, x] -> feature block of the same shape
    reach: int  # planes of context the feature reads along z on each side


def texture_features(block_size=64, texture_sigma=1.0, edge_sigma=0.5, use_dog=False, three_d=False,
                     catena_compat=False, vote='majority'):
    """The features that vote, with their z reach. Catena-compatible mode uses coherence and edge only;
    the ``variance`` vote the local variance only."""
    features = []
    if not catena_compat:
        features.append(Feature('variance', lambda b: local_variance(b, block_size, three_d),
                                 block_size // 2 if three_d else 0))
        if vote == 'variance':
            return features
    features.append(Feature('coherence', lambda b: coherence(b, texture_sigma), 0))
    features.append(Feature('edge', lambda b: edge_strength(b, edge_sigma), gaussian_reach(edge_sigma)))
    if use_dog and not catena_compat:
        features.append(Feature('dog', lambda b: dog_energy(b, rho=2.0 * texture_sigma),
                                gaussian_reach(max(DOG_SIGMAS))))
    return features


def _validate(volume, block_size, texture_sigma, edge_sigma, slab, vote='majority'):
    if vote not in VOTES:
        raise CryoSegInputError(f"The texture vote must be one of {', '.join(VOTES)}; got {vote!r}.")
    if np.ndim(volume) != 3 or min(np.shape(volume)) < 2:
        raise CryoSegInputError(f'The texture mask needs a 3-D tomogram; got an array of shape '
                                f'{tuple(np.shape(volume))}.')
    if int(block_size) != block_size or block_size < 2:
        raise CryoSegInputError(f'Block size must be a whole number of at least 2 voxels; got {block_size}.')
    for name, sigma in (('Texture sigma', texture_sigma), ('Edge sigma', edge_sigma)):
        if not np.isfinite(sigma) or sigma <= 0:
            raise CryoSegInputError(f'{name} must be a positive number of voxels; got {sigma}.')
    if int(slab) != slab or slab < 1:
        raise CryoSegInputError(f'Slab thickness must be at least one plane; got {slab}.')


def effective_slab(slab, depth):
    """Planes per slab: at most ``slab``, and at most 1/16 of the depth (at least 4 planes) so that the
    few float32 slab-sized work arrays stay well below one copy of the tomogram."""
    return int(min(slab, max(4, -(-depth // 16))))


def _feature_slabs(volume, features, slab, low, high, progress=None):
    """Yield ``(planes, values)`` slab by slab, ``values`` lazily giving ``(feature, its values on those
    planes)``: each feature is computed on a block read with its own halo and released before the next.
    ``progress`` describes the pass in the progress lines."""
    depth = volume.shape[0]
    planes = effective_slab(slab, depth)
    slabs_per_feature = [iter_slabs(depth, planes, feature.reach, progress=progress if index == 0 else None)
                         for index, feature in enumerate(features)]
    for parts in zip(*slabs_per_feature):
        yield parts[0].write, ((feature, part.kept(feature.compute(normalise(volume[part.read], low, high))))
                               for feature, part in zip(features, parts))


def feature_votes(volume, features, slab=32):
    """Yield ``(planes, {name: boolean vote})`` slab by slab, each feature thresholded by Otsu on its
    histogram over the whole volume (first pass) and voting where it exceeds the threshold."""
    low, high = robust_range(volume)
    histograms = {feature.name: GlobalHistogram() for feature in features}
    for _, values in _feature_slabs(volume, features, slab, low, high, 'texture mask: features, pass 1 of 2'):
        for feature, value in values:
            histograms[feature.name].add(value)
    thresholds = {name: histogram.otsu() for name, histogram in histograms.items()}
    log.info('texture mask thresholds: %s',
             ', '.join(f'{name} {value:.4g}' for name, value in thresholds.items()))
    for planes, values in _feature_slabs(volume, features, slab, low, high, 'texture mask: votes, pass 2 of 2'):
        yield planes, {feature.name: value > thresholds[feature.name] for feature, value in values}


def texture_mask(volume, block_size=64, texture_sigma=1.0, edge_sigma=0.5, use_dog=False, three_d=False,
                 catena_compat=False, vote='majority', slab=32):
    """uint8 {0, 1} specimen mask of ``volume`` [z, y, x] by majority vote of the texture features.

    ``vote='variance'`` lets the local variance decide alone: at cryo-ET signal-to-noise ratios the
    orientation and edge features at voxel scales respond to the noise as much as to the specimen (on
    the sample phantom each votes for 30-40 % of the empty ice margins and for fewer than half of the
    particles), so their majority loses particles and keeps empty ice.

    ``block_size`` (voxels): window of the local variance, in-plane unless ``three_d``.
    ``texture_sigma`` (voxels): gradient scale of the structure tensor, integrated at 2·texture_sigma.
    ``edge_sigma`` (voxels): scale of the gradient magnitude. ``use_dog`` adds the DoG band energy vote.
    ``catena_compat`` reproduces what Catena's weighted vote effectively computes: coherence AND edge.
    ``slab``: at most this many planes are processed at a time (see :func:`effective_slab`); the result
    does not depend on it. Work memory is a few float32 arrays of (slab + 2·reach) planes, the reach
    being 2 planes for the default edge sigma and block_size / 2 for the 3-D variance, plus the mask.
    """
    _validate(volume, block_size, texture_sigma, edge_sigma, slab, vote)
    features = texture_features(int(block_size), texture_sigma, edge_sigma, use_dog, three_d, catena_compat, vote)
    mask = np.zeros(volume.shape, dtype=np.uint8)
    for planes, votes in feature_votes(volume, features, int(slab)):
        if catena_compat:
            mask[planes] = votes['coherence'] & votes['edge']
        else:
            mask[planes] = 2 * np.sum(list(votes.values()), axis=0) > len(votes)
    return mask


def texture_confidence(volume, block_size=64, texture_sigma=1.0, edge_sigma=0.5, use_dog=False,
                       three_d=False, vote='majority', slab=32):
    """float32 fraction of features voting "specimen" at each voxel, smoothed in-plane at
    2·texture_sigma: a soft version of :func:`texture_mask` (which keeps voxels where it exceeds 0.5
    before smoothing)."""
    _validate(volume, block_size, texture_sigma, edge_sigma, slab, vote)
    features = texture_features(int(block_size), texture_sigma, edge_sigma, use_dog, three_d, vote=vote)
    confidence = np.zeros(volume.shape, dtype=np.float32)
    for planes, votes in feature_votes(volume, features, int(slab)):
        fraction = np.mean(list(votes.values()), axis=0, dtype=np.float32)
        confidence[planes] = ndimage.gaussian_filter(fraction, _in_plane(3, 2.0 * texture_sigma))
    return confidence
