"""The density filter of detected particles (algorithms.md §6.3)."""
import numpy as np
import pytest

from cryoseg.core.detection import isolated
from cryoseg.core.errors import CryoSegInputError


def test_outlier_filter_counts():
    cluster = np.array([[0, 0, 0], [10, 0, 0], [0, 10, 0], [0, 0, 10.0]])
    points = np.concatenate([cluster, [[100.0, 0, 0]]])
    assert isolated(points, 3, 30).tolist() == [False] * 4 + [True]
    assert isolated(cluster[:3], 3, 30).all()  # three points alone have no third neighbour


def test_outlier_filter_bad_neighbour_number():
    with pytest.raises(CryoSegInputError, match='neighbour number'):
        isolated(np.zeros((4, 3)), 0, 30)
