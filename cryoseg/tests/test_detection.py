"""Post-processing of mask and centre maps into particle instances (algorithms.md §6.3, §6.5)."""
import numpy as np
import pytest
from scipy import ndimage

from cryoseg.core.detection import detect, isolated, local_maxima, split_by_peaks
from cryoseg.core.errors import CryoSegInputError
from cryoseg.core.evaluation import score_points
from cryoseg.learn.labels import detection_targets


def test_three_balls_two_touching_and_a_speck():
    centres = np.array([[20.0, 20, 20], [30.0, 20, 20], [45.0, 35, 25]])  # x, y, z; first two touch
    targets = detection_targets((40, 50, 60), centres, diameter=10.0)
    mask = targets.mask.astype(np.float32)
    mask[2:4, 2:4, 2:4] = 1.0  # an 8-voxel speck far from everything
    found = detect(mask, targets.centre, min_size=64, filter_outliers=False)
    assert len(found) == 3
    order = np.argsort(found.centres[:, 0])
    assert np.abs(found.centres[order] - centres).max() < 0.1
    assert found.labels[2:4, 2:4, 2:4].max() == 0
    assert np.all(found.scores == pytest.approx(1.0))
    assert set(np.unique(found.labels)) == {0, 1, 2, 3}
    assert found.sizes.sum() == np.count_nonzero(found.labels)


def test_touching_balls_split_by_nearest_peak():
    mask = np.zeros((30, 30, 50), bool)
    z, y, x = np.ogrid[:30, :30, :50]
    mask |= (x - 18) ** 2 + (y - 15) ** 2 + (z - 15) ** 2 <= 36
    mask |= (x - 29) ** 2 + (y - 15) ** 2 + (z - 15) ** 2 <= 36
    labels, peak_of_label = split_by_peaks(mask, [[15, 15, 18], [15, 15, 29]])
    assert sorted(peak_of_label) == [0, 1]
    left = labels[15, 15, 18]
    assert np.all(labels[:, :, :23][mask[:, :, :23]] == left)  # nearer the first peak
    assert np.all(labels[:, :, 24:][mask[:, :, 24:]] != left)


def test_component_without_peak_dropped_or_kept():
    mask = np.zeros((20, 20, 20), bool)
    mask[5:10, 5:10, 5:10] = True
    assert split_by_peaks(mask, np.zeros((0, 3)))[0].max() == 0
    labels, peak_of_label = split_by_peaks(mask, np.zeros((0, 3)), keep_without_peak=True)
    assert labels.max() == 1 and list(peak_of_label) == [-1]


def test_strict_and_plateau_maxima():
    values = np.zeros((9, 9, 9), np.float32)
    values[4, 4, 3:5] = 1.0  # a two-voxel plateau
    values[1, 1, 1] = 0.5
    assert local_maxima(values, strict=True).tolist() == [[1, 1, 1]]
    assert len(local_maxima(values, strict=False)) == 2


def test_outlier_filter_counts():
    cluster = np.array([[0, 0, 0], [10, 0, 0], [0, 10, 0], [0, 0, 10.0]])
    points = np.concatenate([cluster, [[100.0, 0, 0]]])
    assert isolated(points, 3, 30).tolist() == [False] * 4 + [True]
    assert isolated(cluster[:3], 3, 30).all()  # three points alone have no third neighbour


def test_outlier_removed_by_label_not_by_centroid_voxel():
    centres = np.array([[10.0, 10, 10], [22, 10, 10], [10, 22, 10], [22, 22, 10], [80, 60, 10]])
    targets = detection_targets((24, 80, 100), centres, diameter=8.0)
    found = detect(targets.mask, targets.centre, min_size=10, neighbor_number=3, distance_threshold=30)
    assert len(found) == 4
    assert found.labels[10, 60, 80] == 0
    assert found.labels.max() == 4 and np.abs(np.sort(found.centres[:, 0]) - [10, 10, 22, 22]).max() < 0.1


def test_end_to_end_without_network_in_noise():
    rng = np.random.default_rng(3)
    shape, radius = (60, 120, 120), 5
    centres = []
    while len(centres) < 30:  # balls r = 5 at least 14 voxels apart
        point = rng.uniform([8, 8, 8], [112, 112, 52])
        if all(np.linalg.norm(point - c) > 14 for c in centres):
            centres.append(point)
    centres = np.array(centres)
    truth = detection_targets(shape, centres, diameter=2 * radius)
    noisy = truth.mask + rng.normal(0, 0.8, shape).astype(np.float32)
    smoothed = ndimage.gaussian_filter(noisy, 1.5)
    # the EDT of a thresholded ball has flat tops: plateaus count as one maximum each
    found = detect(smoothed, ndimage.distance_transform_edt(smoothed > 0.5), mask_threshold=0.5,
                   centre_threshold=1.0, min_size=30, strict_maxima=False, filter_outliers=False)
    assert score_points(found.centres, centres, radius=3).f1 >= 0.95


def test_bad_maps_are_explained():
    with pytest.raises(CryoSegInputError, match='one shape'):
        detect(np.zeros((4, 4, 4)), np.zeros((4, 4, 5)))
