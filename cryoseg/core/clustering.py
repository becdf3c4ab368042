"""1-D statistics and clustering used by the segdiam size estimate (algorithms.md §2.2).

Faithful to the segdiampick_mics policy of SIMPLE: ``calc_stats``, ``mad_gau``, ``sortmeans`` (1-D
k-means with quantile initialisation), ``hac_1d_fast`` (threshold agglomerative clustering) and
``find_magic_box`` (FFT-friendly box sizes).
"""
from dataclasses import dataclass

import numpy as np

MAD_TO_SIGMA = 1.4826  # scales a median absolute deviation to a Gaussian σ

# The FFT-friendly box sizes of SIMPLE (simple_magic_boxes.f90), ascending.
MAGIC_BOXES = np.array([
    32, 36, 40, 48, 52, 56, 64, 66, 70, 72, 80, 84, 88, 100, 104, 108, 112, 120, 128, 130, 132, 140, 144,
    150, 160, 162, 168, 176, 180, 182, 192, 200, 208, 216, 220, 224, 240, 256, 264, 288, 300, 308, 320,
    324, 336, 338, 352, 364, 384, 400, 420, 432, 448, 450, 462, 480, 486, 500, 504, 512, 520, 528, 546,
    560, 576, 588, 600, 640, 648, 650, 660, 672, 686, 700, 702, 704, 720, 726, 728, 750, 768, 770, 784,
    800, 810, 840, 882, 896, 910, 924, 936, 972, 980, 1008, 1014, 1020, 1024, 1296, 1536, 1728, 1944,
    2048, 2304, 2592, 3072, 3200, 3456, 3888, 4096, 4608, 5000, 5184, 6144, 6250, 6400, 6912, 7776,
    8192, 9216, 10240, 12288, 12500])
MAGIC_BOX_SLACK = 16  # beyond the last size by more than this, the request itself is used


@dataclass(frozen=True)
class Stats:
    """Summary of a sample; ``sdev`` uses n − 1 (0 for a single value)."""
    n: int
    mean: float
    median: float
    sdev: float
    minv: float
    maxv: float

    def describe(self, unit=''):
        return (f"n={self.n} mean={self.mean:.1f}{unit} median={self.median:.1f}{unit} "
                f"sdev={self.sdev:.1f}{unit} range=[{self.minv:.1f}, {self.maxv:.1f}]{unit}")


def nint(value):
    """Fortran NINT: round half away from zero (Python's round() rounds half to even)."""
    value = np.asarray(value, float)
    return (np.sign(value) * np.floor(np.abs(value) + 0.5)).astype(int)


def calc_stats(values):
    values = np.asarray(values, float).ravel()
    if not len(values):
        raise ValueError('calc_stats needs at least one value')
    sdev = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
    return Stats(n=len(values), mean=float(values.mean()), median=float(np.median(values)), sdev=sdev,
                 minv=float(values.min()), maxv=float(values.max()))


def mad_gau(values, median=None):
    """1.4826 × median absolute deviation from ``median`` (default: the sample median)."""
    values = np.asarray(values)
    if not np.issubdtype(values.dtype, np.floating):
        values = values.astype(float)  # float32 data stay float32: a tomogram's copy is not doubled
    centre = np.median(values) if median is None else median
    deviation = np.subtract(values.ravel(), centre, dtype=values.dtype)
    return MAD_TO_SIGMA * float(np.median(np.abs(deviation, out=deviation), overwrite_input=True))


@dataclass(frozen=True)
class Clusters:
    """A 1-D partition. ``labels[i]`` indexes ``means``/``populations``; empty clusters have a NaN mean
    and population 0 (k-means keeps their index, so the edge clusters keep theirs)."""
    labels: np.ndarray
    means: np.ndarray
    populations: np.ndarray

    @property
    def nonempty(self):
        return self.populations > 0


def _cluster_means(values, labels, count):
    populations = np.bincount(labels, minlength=count)
    sums = np.bincount(labels, weights=values, minlength=count)
    with np.errstate(invalid='ignore', divide='ignore'):
        return sums / populations, populations


def _nearest_mean(values, means):
    """Index of the nearest non-NaN mean (the lower one on ties). In 1-D the means stay sorted, so
    the cells are intervals split at the midpoints: a binary search instead of an n × k table."""
    live = np.flatnonzero(~np.isnan(means))
    midpoints = (means[live][1:] + means[live][:-1]) / 2
    return live[np.searchsorted(midpoints, values, side='left')]


def sortmeans(values, count=10, max_iterations=10):
    """1-D k-means (SIMPLE's ``sortmeans``): means start at the sorted values 0, s, 2s, ... with
    s = floor(n / count); each value goes to the nearest mean (the first on ties); at most
    ``max_iterations`` rounds, or until no label changes. A cluster that empties keeps a NaN mean."""
    values = np.asarray(values, float).ravel()
    if not len(values):
        raise ValueError('sortmeans needs at least one value')
    ordered = np.sort(values)
    step = len(values) // count
    means = ordered[np.minimum(np.arange(count) * step, len(values) - 1)].astype(float)
    labels = None
    for _ in range(max_iterations):
        new_labels = _nearest_mean(values, means)
        if labels is not None and np.array_equal(new_labels, labels):
            break
        labels = new_labels
        means, _ = _cluster_means(values, labels, count)
    means, populations = _cluster_means(values, labels, count)
    return Clusters(labels=labels, means=means, populations=populations)


def hac_1d_fast(values, threshold):
    """Threshold agglomerative clustering in 1-D (SIMPLE's ``hac_1d_fast``).

    Going through the values in ascending order, each unassigned value is paired with its nearest
    unassigned neighbour (in 1-D: the next unassigned value up) if they are within ``threshold``,
    else it stays alone. One pass then merges every later cluster whose initial centroid lies within
    ``threshold`` of an earlier, still unmerged cluster's initial centroid (not transitive). Clusters
    are numbered by ascending centroid.
    """
    values = np.asarray(values, float).ravel()
    if not len(values):
        raise ValueError('hac_1d_fast needs at least one value')
    order = np.argsort(values, kind='stable')
    ordered = values[order]
    pair_labels = np.empty(len(values), int)
    cluster, index = 0, 0
    while index < len(ordered):
        pair_labels[index] = cluster
        if index + 1 < len(ordered) and ordered[index + 1] - ordered[index] <= threshold:
            pair_labels[index + 1] = cluster
            index += 1
        cluster += 1
        index += 1
    initial, _ = _cluster_means(ordered, pair_labels, cluster)
    target = np.arange(cluster)
    for a in range(cluster):
        if target[a] != a:
            continue
        for b in range(a + 1, cluster):
            if initial[b] - initial[a] > threshold:
                break  # initial centroids ascend
            if target[b] == b:
                target[b] = a
    merged = target[pair_labels]
    _, dense = np.unique(merged, return_inverse=True)  # targets ascend with the centroids
    labels = np.empty(len(values), int)
    labels[order] = dense
    means, populations = _cluster_means(values, labels, int(dense.max()) + 1)
    return Clusters(labels=labels, means=means, populations=populations)


def find_magic_box(request, rounding='up'):
    """An FFT-friendly box size for ``request`` pixels.

    ``rounding='up'`` (the policy, default): the smallest listed size ≥ the request.
    ``rounding='closest'`` (SIMPLE's code): the closest listed size, ties to the larger.
    Beyond the last size (12500) by more than 16 px, the request rounded up to even is returned.
    """
    request = int(request)
    last = int(MAGIC_BOXES[-1])
    if request > last + MAGIC_BOX_SLACK or (rounding == 'up' and request > last):
        return request + request % 2
    if rounding == 'up':
        return int(MAGIC_BOXES[np.searchsorted(MAGIC_BOXES, request, side='left')])
    if rounding == 'closest':
        distance = np.abs(MAGIC_BOXES - request)
        return int(MAGIC_BOXES[np.flatnonzero(distance == distance.min())[-1]])
    raise ValueError(f"rounding must be 'up' or 'closest', not {rounding!r}")
