"""Particle candidates, their patches and the training labels of the learned detector (numpy only).

The detector works at the particle's scale: the tomogram is binned until a particle is about
``PARTICLE_VOXELS`` voxels across, normalised to robust z-scores with the particles made bright, and
every blob of the particle's size is a candidate (the maxima of a difference of Gaussians tuned to
the diameter, :func:`cryoseg.core.segdiam.blob_seeds`). A small network then scores the patch around
each candidate. Working on candidates rather than on every voxel is what makes training take
minutes on a CPU, and it gives the network a particle-sized question to answer.

Partial annotations: most particles of a real tomogram carry no annotation, so an unannotated
candidate is not a negative example. Training labels come from one round of self-training on the
blob strength: the annotated particles and the unannotated candidates at least as strong as the
typical annotated particle are positives, candidates weaker than nearly every annotated particle are
negatives, and the rest are left out of the loss (:func:`training_labels`).

References
----------
M. Xu, M. Beck, F. Alber, "Template-free detection of macromolecular complexes in cryo electron
tomograms", Bioinformatics 27:i69 (2011) (difference-of-Gaussians candidates, then classification).
D.-H. Lee, "Pseudo-label: the simple and efficient semi-supervised learning method for deep neural
networks", ICML Workshop on Challenges in Representation Learning (2013).
"""
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from ..core.errors import CryoSegInputError
from ..core.segdiam import blob_seeds

PARTICLE_VOXELS = 8.0  # working diameter: enough voxels for a shape, few enough for a CPU
CLIP_SIGMA = 8.0  # robust σ; gold beads and ice crystals would otherwise dominate a patch
PATCH_MULTIPLE = 4  # the candidate network pools twice


def working_binning(diameter_px, particle_voxels=PARTICLE_VOXELS):
    """The largest whole binning factor that keeps a particle of ``diameter_px`` voxels at least
    ``particle_voxels`` wide (1 when it is already smaller).

    >>> working_binning(8.6), working_binning(17.0), working_binning(40.0, 8)
    (1, 2, 5)
    """
    if not diameter_px > 0 or not particle_voxels > 0:
        raise CryoSegInputError(f'the particle diameter must be positive; got {diameter_px} voxels')
    return max(1, int(np.floor(diameter_px / particle_voxels + 1e-9)))


def bin_volume(volume, factor):
    """float32 means of ``factor``³ blocks of a [z, y, x] volume (edges padded by repetition).

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


def robust_normalise(volume, dark):
    """float32 robust z-scores of ``volume`` ((v − median) / (1.4826·MAD), on every 2nd voxel per
    axis), negated when the particles are ``dark`` so that they are bright, clipped to ±8.

    >>> v = np.random.default_rng(0).normal(5.0, 2.0, (48, 48, 48))
    >>> z = robust_normalise(v, dark=False)
    >>> abs(round(float(np.median(z)), 1)), round(float(z.std()), 1)
    (0.0, 1.0)
    """
    volume = np.asarray(volume, np.float32)
    sample = volume[::2, ::2, ::2]
    median = float(np.median(sample))
    spread = 1.4826 * float(np.median(np.abs(sample - median))) or float(sample.std()) or 1.0
    normalised = (volume - median) / spread
    if dark:
        normalised = -normalised
    return np.clip(normalised, -CLIP_SIGMA, CLIP_SIGMA, out=normalised)


def particles_are_dark(normalised, centres_zyx, diameter_px):
    """Whether the annotated particles are darker than their surroundings: the mean difference of
    Gaussians tuned to their size, at their centres, is negative (``normalised`` not negated).

    >>> ball = ((np.indices((24, 24, 24)) - 12.0) ** 2).sum(0) <= 16
    >>> particles_are_dark(-ball.astype(np.float32), [[12, 12, 12]], 8), particles_are_dark(ball * 1.0, [[12, 12, 12]], 8)
    (True, False)
    """
    sigma = diameter_px / 2 / np.sqrt(3)
    centres = np.clip(np.rint(np.asarray(centres_zyx, float)).astype(int), 0, np.array(normalised.shape) - 1)
    values = []
    for axis_sigma in (sigma, 1.6 * sigma):
        smoothed = ndimage.gaussian_filter(np.asarray(normalised, np.float32), axis_sigma)
        values.append(smoothed[tuple(centres.T)])
    return bool(np.mean(values[0] - values[1]) < 0)


@dataclass
class Candidates:
    """Blob candidates of one working-scale tomogram: ``centres`` (n, 3) [z, y, x] sub-voxel
    positions and ``strength`` (n,) in robust σ of the band-passed tomogram, strongest first."""
    centres: np.ndarray
    strength: np.ndarray

    def __len__(self):
        return len(self.strength)

    def select(self, keep):
        return Candidates(self.centres[keep], self.strength[keep])


def find_candidates(signal, diameter_px, min_strength):
    """:class:`Candidates` of bright blobs of ``diameter_px`` voxels in ``signal`` (a normalised
    working-scale tomogram) that stand ``min_strength`` robust σ above the background: every local
    maximum of the band-passed tomogram (26 neighbours), so that a particle whose strongest point is
    off its centre still has a candidate there; the networks choose among them and one pick per
    particle is kept after scoring.

    >>> ball = ((np.indices((24, 24, 24)) - 12.0) ** 2).sum(0) <= 16
    >>> found = find_candidates(ball.astype(np.float32), 8, 1.0)
    >>> len(found), found.centres.round(1).tolist()
    (1, [[12.0, 12.0, 12.0]])
    """
    seeds = blob_seeds(signal, diameter_px, min_strength, window=3)
    order = np.argsort(-seeds.strength, kind='stable')
    return Candidates(seeds.centres[order], seeds.strength[order].astype(np.float32))


def patch_side(diameter_px):
    """Side of the cubic patch around a candidate: about twice the particle's working diameter (its
    immediate neighbourhood), rounded up to a multiple of 4.

    >>> patch_side(8.0), patch_side(8.6), patch_side(5.0)
    (16, 16, 12)
    """
    return int(PATCH_MULTIPLE * np.ceil(1.85 * diameter_px / PATCH_MULTIPLE))


def extract_patches(signal, centres_zyx, side):
    """float32 [n, 1, side, side, side] patches of ``signal`` centred on the nearest voxel of each
    position (mirrored beyond the volume's edges)."""
    half = side // 2
    padded = np.pad(np.asarray(signal, np.float32), half, mode='reflect')
    corners = np.rint(np.asarray(centres_zyx, float).reshape(-1, 3)).astype(int)
    corners = np.clip(corners, 0, np.array(signal.shape) - 1)
    out = np.empty((len(corners), 1, side, side, side), np.float32)
    for index, (z, y, x) in enumerate(corners):
        out[index, 0] = padded[z:z + side, y:y + side, x:x + side]
    return out


@dataclass
class TrainingLabels:
    """Per candidate of one tomogram: 1 positive, 0 negative, -1 left out of the loss; plus the
    annotated positions (which are positives too) and the two strength levels used."""
    candidate_labels: np.ndarray
    positive_level: float
    negative_level: float


def annotated_strength(candidates, annotations_zyx, radius):
    """Strength of the candidate nearest to each annotation within ``radius`` (NaN where none)."""
    annotations = np.asarray(annotations_zyx, float).reshape(-1, 3)
    if not len(candidates) or not len(annotations):
        return np.full(len(annotations), np.nan)
    distance, nearest = cKDTree(candidates.centres).query(annotations)
    return np.where(distance <= radius, candidates.strength[np.minimum(nearest, len(candidates) - 1)], np.nan)


def training_labels(candidates, annotations_zyx, radius, strengths, complete=False, negative_quantile=0.05):
    """:class:`TrainingLabels` of one tomogram's candidates from partial annotations.

    ``strengths``: the blob strengths of the annotated particles (all tomograms); positives are the
    candidates within ``radius`` of an annotation and the unannotated ones at least as strong as
    their median (confident pseudo-labels); negatives are candidates farther than ``radius`` from
    every annotation and weaker than the ``negative_quantile`` of the annotated strengths; the
    candidates in between are left out, since an unannotated particle is not a background. With
    ``complete`` (every particle of the tomogram is annotated) every unannotated candidate is a negative.

    >>> found = Candidates(np.array([[0, 0, 0], [0, 0, 20], [0, 0, 40], [0, 0, 60]], float),
    ...                    np.array([12.0, 11.0, 6.0, 2.0], np.float32))
    >>> training_labels(found, [[0, 0, 0.5]], 4, np.array([5.0, 10.0, 12.0])).candidate_labels.tolist()
    [1, 1, -1, 0]
    """
    strengths = np.asarray(strengths, float)
    strengths = strengths[np.isfinite(strengths)]
    if not len(strengths):
        raise CryoSegInputError('no annotated particle lies on a blob of the given diameter: check the '
                                'diameter, the pixel size and that the coordinates belong to these tomograms')
    positive_level = float(np.median(strengths))
    negative_level = float(np.quantile(strengths, negative_quantile))
    labels = np.full(len(candidates), -1, np.int8)
    annotations = np.asarray(annotations_zyx, float).reshape(-1, 3)
    near = np.zeros(len(candidates), bool)
    if len(annotations) and len(candidates):
        near = cKDTree(annotations).query(candidates.centres)[0] <= radius
    if complete:
        labels[:] = near
        return TrainingLabels(labels, positive_level, negative_level)
    labels[~near & (candidates.strength < negative_level)] = 0
    labels[near | (candidates.strength >= positive_level)] = 1
    return TrainingLabels(labels, positive_level, negative_level)


@dataclass
class SpatialFolds:
    """Cross-validation folds of one tomogram's annotations, cut along ``axis`` (0 = x, 1 = y):
    annotation i belongs to fold ``fold[i]``; fold k covers ``edges[k] <= coordinate < edges[k + 1]``."""
    fold: np.ndarray
    axis: int
    edges: np.ndarray

    def region(self, positions_zyx, k):
        """Bool per position: inside fold k's region."""
        coordinate = np.asarray(positions_zyx, float).reshape(-1, 3)[:, 2 - self.axis]
        return (coordinate >= self.edges[k]) & (coordinate < self.edges[k + 1])

    def near_region(self, positions_zyx, k, margin):
        """Bool per position: inside fold k's region widened by ``margin`` voxels each side."""
        coordinate = np.asarray(positions_zyx, float).reshape(-1, 3)[:, 2 - self.axis]
        return (coordinate >= self.edges[k] - margin) & (coordinate < self.edges[k + 1] + margin)


def spatial_folds(annotations_zyx, shape_zyx, folds):
    """:class:`SpatialFolds`: the annotations sorted along the longer in-plane axis and cut into
    ``folds`` consecutive groups of (almost) equal size; region borders lie halfway between groups,
    so neighbouring particles (same membrane, same crowd) fall in the same fold.

    >>> f = spatial_folds([[0, 0, x] for x in (1, 2, 8, 9)], (4, 4, 10), 2)
    >>> f.fold.tolist(), f.edges.tolist()
    ([0, 0, 1, 1], [-inf, 5.0, inf])
    """
    annotations = np.asarray(annotations_zyx, float).reshape(-1, 3)
    if folds < 2 or len(annotations) < folds:
        raise CryoSegInputError(f'{len(annotations)} annotations cannot be split into {folds} folds')
    axis = 0 if shape_zyx[2] >= shape_zyx[1] else 1
    coordinate = annotations[:, 2 - axis]
    order = np.argsort(coordinate, kind='stable')
    groups = np.array_split(order, folds)
    fold = np.empty(len(annotations), int)
    for k, group in enumerate(groups):
        fold[group] = k
    inner = [0.5 * (coordinate[groups[k][-1]] + coordinate[groups[k + 1][0]]) for k in range(folds - 1)]
    return SpatialFolds(fold, axis, np.array([-np.inf] + inner + [np.inf]))


def suppress_neighbours(centres, scores, radius):
    """Indices of the picks kept by greedy non-maximum suppression: best score first, a pick closer
    than ``radius`` to a kept one is dropped (one pick per particle).

    >>> suppress_neighbours(np.array([[0, 0, 0], [0, 0, 2], [0, 0, 9]], float), np.array([0.5, 0.9, 0.7]), 4).tolist()
    [1, 2]
    """
    centres = np.asarray(centres, float).reshape(-1, 3)
    order = np.argsort(-np.asarray(scores), kind='stable')
    tree = cKDTree(centres)
    removed = np.zeros(len(centres), bool)
    kept = []
    for index in order:
        if removed[index]:
            continue
        kept.append(index)
        removed[tree.query_ball_point(centres[index], radius - 1e-9)] = True
    return np.sort(np.asarray(kept, int))
