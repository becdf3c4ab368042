"""Scoring a picking against reference positions (algorithms.md §6.4).

Predicted and reference points are matched one-to-one within a radius: among all assignments that
match the most pairs, the one with the smallest total distance (Hungarian assignment, solved per
connected group of the sparse KD-tree distance graph, so large tomograms stay cheap). Then
TP = matched pairs, FP = unmatched predictions, FN = unmatched references, P = TP / (TP + FP),
R = TP / (TP + FN), F1 = 2PR / (P + R), each 0 when its denominator is 0.
"""
from dataclasses import asdict, dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from .errors import CryoSegInputError


@dataclass
class Score:
    """Counts and rates of one comparison (or of several added up)."""
    tp: int
    fp: int
    fn: int

    @property
    def precision(self):
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 0.0

    @property
    def recall(self):
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 0.0

    @property
    def f1(self):
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    def __add__(self, other):
        return Score(self.tp + other.tp, self.fp + other.fp, self.fn + other.fn)

    def as_dict(self):
        return dict(asdict(self), precision=self.precision, recall=self.recall, f1=self.f1)


def _points(name, xyz):
    xyz = np.asarray(xyz, float).reshape(-1, 3) if np.size(xyz) else np.zeros((0, 3))
    if not np.all(np.isfinite(xyz)):
        raise CryoSegInputError(f'the {name} positions hold a value that is not a finite number')
    return xyz


def match_points(predicted, reference, radius):
    """One-to-one pairs ``(i_predicted, j_reference)`` (an (n, 2) int array) within ``radius``,
    maximising the number of pairs, then minimising their summed distance."""
    predicted, reference = _points('predicted', predicted), _points('reference', reference)
    if not radius > 0:
        raise CryoSegInputError(f'the matching radius must be positive; got {radius}')
    if not len(predicted) or not len(reference):
        return np.zeros((0, 2), int)
    edges = cKDTree(predicted).sparse_distance_matrix(cKDTree(reference), radius, output_type='ndarray')
    if not len(edges):
        return np.zeros((0, 2), int)
    n_pred = len(predicted)
    # one graph of predictions and references; each connected group is an independent assignment
    graph = coo_matrix((np.ones(len(edges)), (edges['i'], n_pred + edges['j'])),
                       shape=(n_pred + len(reference),) * 2)
    _, group = connected_components(graph, directed=False)
    pairs = []
    edge_group = group[edges['i']]
    order = np.argsort(edge_group, kind='stable')
    starts = np.flatnonzero(np.r_[True, np.diff(edge_group[order]) != 0])
    for part in np.split(order, starts[1:]):
        rows, cols = np.unique(edges['i'][part]), np.unique(edges['j'][part])
        # a missing edge costs more than every edge of the group together: the assignment first
        # maximises the number of real pairs, then minimises their distance
        missing = radius * (min(len(rows), len(cols)) + 1)
        cost = np.full((len(rows), len(cols)), missing)
        cost[np.searchsorted(rows, edges['i'][part]), np.searchsorted(cols, edges['j'][part])] = edges['v'][part]
        r, c = linear_sum_assignment(cost)
        real = cost[r, c] < missing
        pairs.append(np.stack([rows[r[real]], cols[c[real]]], 1))
    return np.concatenate(pairs).astype(int)


def score_points(predicted, reference, radius):
    """:class:`Score` of predicted against reference points, matched by :func:`match_points`."""
    predicted, reference = _points('predicted', predicted), _points('reference', reference)
    tp = len(match_points(predicted, reference, radius))
    return Score(tp, len(predicted) - tp, len(reference) - tp)


def score_tomograms(predicted_by_ts, reference_by_ts, radius):
    """``({tsId: Score}, total Score)`` over every tomogram of either input; a tomogram missing from
    one side counts as having no points there (all FN, or all FP)."""
    scores = {ts_id: score_points(predicted_by_ts.get(ts_id, ()), reference_by_ts.get(ts_id, ()), radius)
              for ts_id in sorted(set(predicted_by_ts) | set(reference_by_ts))}
    return scores, sum(scores.values(), Score(0, 0, 0))
