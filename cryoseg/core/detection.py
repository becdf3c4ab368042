"""Filtering of detected particles (algorithms.md §6.3's density filter).

Whatever picked them, crowded particles (ribosomes along a membrane, in the cytosol) have close
neighbours; a detection whose k-th nearest neighbour is far away is likely noise.
"""
import numpy as np
from scipy.spatial import cKDTree

from .errors import CryoSegInputError


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
