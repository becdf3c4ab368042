"""Particle instances from a mask probability map and a centre map (algorithms.md §6.3).

The maps come from the learned MaskNet and CenterNet (:mod:`cryoseg.learn`) but any source works: the
post-processing is plain numpy/scipy. Steps: threshold the mask and drop small components; find the
local maxima of the centre map inside the mask; split each mask component holding several peaks by
nearest peak (within the component's bounding box only); take the float centroid of every instance;
drop instances whose k-th nearest neighbour is too far (a density filter).
"""
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from .errors import CryoSegInputError
from .morphology import FULL_CONNECTIVITY, remove_small_components

NEIGHBOURS = np.ones((3, 3, 3), bool)
NEIGHBOURS[1, 1, 1] = False  # the 26 neighbours of a voxel, without the voxel itself


@dataclass
class Detections:
    """Instances of one tomogram: ``labels`` int32 [z, y, x] (0 background, 1..n instances),
    ``centres`` (n, 3) float (x, y, z) voxels, ``scores`` (n,) centre-map peak values, ``sizes`` (n,)
    voxel counts; row i describes label i + 1."""
    labels: np.ndarray
    centres: np.ndarray
    scores: np.ndarray
    sizes: np.ndarray

    def __len__(self):
        return len(self.centres)


def _check_maps(mask_probability, centre_map):
    mask_probability, centre_map = np.asarray(mask_probability), np.asarray(centre_map)
    if mask_probability.ndim != 3 or mask_probability.shape != centre_map.shape:
        raise CryoSegInputError(f'the mask and centre maps must be 3-D volumes of one shape; got '
                                f'{mask_probability.shape} and {centre_map.shape}')
    return mask_probability, centre_map


def local_maxima(values, strict=True):
    """(n, 3) [z, y, x] indices of the positive local maxima of ``values`` over the 26-neighbourhood.

    ``strict``: a maximum is larger than all its neighbours, so a plateau gives none (upstream).
    Otherwise a voxel may equal its neighbours, and each connected plateau gives one maximum, its
    voxel nearest to the plateau's centroid.
    """
    values = np.asarray(values, np.float32)
    if strict:
        neighbour_max = ndimage.maximum_filter(values, footprint=NEIGHBOURS, mode='constant', cval=-np.inf)
        return np.argwhere((values > neighbour_max) & (values > 0))
    top = (values >= ndimage.maximum_filter(values, size=3, mode='constant', cval=-np.inf)) & (values > 0)
    plateaus, count = ndimage.label(top, structure=FULL_CONNECTIVITY)
    peaks = []
    for index, box in enumerate(ndimage.find_objects(plateaus), start=1):
        voxels = np.argwhere(plateaus[box] == index) + [s.start for s in box]
        peaks.append(voxels[np.argmin(np.sum((voxels - voxels.mean(0)) ** 2, axis=1))])
    return np.asarray(peaks, int).reshape(-1, 3)


def split_by_peaks(mask, peaks_zyx, keep_without_peak=False):
    """Instance labels of a binary mask: every 26-connected component holding peaks is divided
    among them by nearest peak (Voronoi, computed inside the component's bounding box); a component
    without a peak is dropped, or kept whole with ``keep_without_peak``.

    Returns ``(labels int32, peak_of_label)``: ``peak_of_label[i]`` is the index into ``peaks_zyx``
    of label i + 1, or -1 for a component kept without a peak.
    """
    components, _ = ndimage.label(mask, structure=FULL_CONNECTIVITY, output=np.int32)
    peaks_zyx = np.asarray(peaks_zyx, int).reshape(-1, 3)
    peak_component = components[tuple(peaks_zyx.T)] if len(peaks_zyx) else np.zeros(0, int)
    labels = np.zeros(components.shape, np.int32)
    peak_of_label = []
    for component, box in enumerate(ndimage.find_objects(components), start=1):
        if box is None:
            continue
        inside = components[box] == component
        own = np.flatnonzero(peak_component == component)
        if len(own) == 0 and not keep_without_peak:
            continue
        first = len(peak_of_label) + 1
        if len(own) <= 1:
            labels[box][inside] = first
            peak_of_label.append(own[0] if len(own) else -1)
            continue
        voxels = np.argwhere(inside)
        _, nearest = cKDTree(peaks_zyx[own] - [s.start for s in box]).query(voxels)
        labels[box][tuple(voxels.T)] = first + nearest
        peak_of_label.extend(own)
    return labels, np.asarray(peak_of_label, int)


def remove_instances(detections, remove):
    """A copy of ``detections`` without the instances flagged in ``remove`` (bool per instance),
    removed by label (not by looking at the centroid voxel, which may belong to a neighbour) and
    renumbered 1..n in order."""
    keep = ~np.asarray(remove, bool)
    new_label = np.zeros(len(detections) + 1, np.int32)
    new_label[1:][keep] = np.arange(1, keep.sum() + 1)
    return Detections(new_label[detections.labels], detections.centres[keep], detections.scores[keep],
                      detections.sizes[keep])


def isolated(centres, neighbor_number=3, distance_threshold=30.0):
    """Bool per point: is its ``neighbor_number``-th nearest other point farther than
    ``distance_threshold`` (or missing, when there are too few points)?"""
    centres = np.asarray(centres, float).reshape(-1, 3)
    if neighbor_number < 1:
        raise CryoSegInputError(f'the neighbour number must be at least 1; got {neighbor_number}')
    if len(centres) <= neighbor_number:
        return np.ones(len(centres), bool)
    distances, _ = cKDTree(centres).query(centres, k=neighbor_number + 1)
    return distances[:, neighbor_number] > distance_threshold


def detect(mask_probability, centre_map, mask_threshold=0.1, centre_threshold=0.1, min_size=64,
           strict_maxima=True, check_centre=True, filter_outliers=True, neighbor_number=3,
           distance_threshold=30.0):
    """Particle instances from a mask probability map and a centre map (both [z, y, x], one shape).

    ``mask_threshold``: mask = probability > threshold; ``min_size``: components with fewer voxels are
    removed first; ``centre_threshold``: centre values below it are ignored; ``strict_maxima``: see
    :func:`local_maxima`; ``check_centre``: drop mask components without a centre peak (else keep them
    whole, scored by their largest centre value); ``filter_outliers``: drop instances whose
    ``neighbor_number``-th neighbour is farther than ``distance_threshold`` voxels.
    """
    mask_probability, centre_map = _check_maps(mask_probability, centre_map)
    if min_size < 0 or neighbor_number < 1 or distance_threshold <= 0:
        raise CryoSegInputError('minimum size must be >= 0, neighbour number >= 1 and the outlier distance > 0')
    mask = remove_small_components(mask_probability > mask_threshold, int(min_size))
    centres_only = np.where(mask & (centre_map >= centre_threshold), centre_map, 0).astype(np.float32)
    peaks = local_maxima(centres_only, strict_maxima)
    labels, peak_of_label = split_by_peaks(mask, peaks, keep_without_peak=not check_centre)
    count = len(peak_of_label)
    index = np.arange(1, count + 1)
    occupied = labels > 0
    sizes = np.asarray(ndimage.sum_labels(occupied, labels, index), int).reshape(-1)
    centroids = np.asarray(ndimage.center_of_mass(occupied, labels, index), float).reshape(-1, 3)[:, ::-1]
    scores = np.zeros(count, np.float32)
    with_peak = peak_of_label >= 0
    scores[with_peak] = centre_map[tuple(peaks[peak_of_label[with_peak]].T)]
    if count and not with_peak.all():
        scores[~with_peak] = np.asarray(ndimage.maximum(centre_map, labels, index[~with_peak]))
    detections = Detections(labels, centroids, scores, sizes)
    if filter_outliers and count:
        detections = remove_instances(detections, isolated(centroids, neighbor_number, distance_threshold))
    return detections
