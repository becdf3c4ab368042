"""Point-matching scores on constructed point sets with known answers (algorithms.md §6.4, §6.5)."""
import numpy as np
import pytest

from cryoseg.core.errors import CryoSegInputError
from cryoseg.core.evaluation import Score, match_points, score_points, score_tomograms


def grid_points(count, spacing=20.0):
    side = int(np.ceil(count ** (1 / 3)))
    grid = np.stack(np.meshgrid(*[np.arange(side)] * 3, indexing='ij'), -1).reshape(-1, 3)[:count]
    return grid * spacing + 10.0


def test_jittered_truth_is_perfect():
    truth = grid_points(30)
    jitter = np.random.default_rng(0).normal(size=truth.shape)
    jitter *= 1.0 / np.linalg.norm(jitter, axis=1, keepdims=True)  # exactly 1 voxel away
    score = score_points(truth + jitter, truth, radius=3)
    assert (score.tp, score.fp, score.fn) == (30, 0, 0)
    assert score.precision == score.recall == score.f1 == 1.0


def test_far_false_positives():
    truth = grid_points(20)
    predicted = np.concatenate([truth + 0.5, grid_points(5) + 1000])
    score = score_points(predicted, truth, radius=3)
    assert (score.tp, score.fp, score.fn) == (20, 5, 0)
    assert score.precision == pytest.approx(0.8) and score.recall == 1.0
    assert score.f1 == pytest.approx(2 * 0.8 / 1.8)


def test_radius_below_jitter_matches_nothing():
    truth = grid_points(10)
    score = score_points(truth + [2.0, 0, 0], truth, radius=1.5)
    assert (score.tp, score.fp, score.fn) == (0, 10, 10)
    assert score.f1 == 0.0


def test_two_predictions_at_one_truth():
    score = score_points([[10, 10, 10], [11, 10, 10]], [[10.5, 10, 10]], radius=3)
    assert (score.tp, score.fp, score.fn) == (1, 1, 0)


def test_exact_coincidence_counts():
    assert score_points([[5, 5, 5]], [[5, 5, 5]], radius=1).tp == 1


def test_assignment_maximises_matches_not_greedy():
    # the greedy nearest pair (p0, t1) would leave t0 unmatched; the optimum matches both
    predicted = [[0, 0, 0], [3.5, 0, 0]]
    reference = [[-2.5, 0, 0], [1, 0, 0]]
    pairs = match_points(predicted, reference, radius=3)
    assert sorted(map(tuple, pairs)) == [(0, 0), (1, 1)]


def test_empty_sets_score_zero():
    assert score_points([], [], 3).f1 == 0.0
    assert score_points([], [[1, 2, 3]], 3).as_dict() == dict(tp=0, fp=0, fn=1, precision=0.0, recall=0.0, f1=0.0)
    assert score_points([[1, 2, 3]], [], 3).fp == 1


def test_per_tomogram_and_total():
    truth = grid_points(8)
    scores, total = score_tomograms({'TS_01': truth, 'TS_03': truth[:2]}, {'TS_01': truth, 'TS_02': truth}, 2)
    assert scores['TS_01'] == Score(8, 0, 0)
    assert scores['TS_02'] == Score(0, 0, 8)
    assert scores['TS_03'] == Score(0, 2, 0)
    assert total == Score(8, 2, 8)


def test_bad_radius_is_explained():
    with pytest.raises(CryoSegInputError, match='radius'):
        score_points([[0, 0, 0]], [[0, 0, 0]], 0)
