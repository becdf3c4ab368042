"""The one place where Scipion objects become arrays and tables, and back.

Positions handed to and returned from :mod:`cryoseg.core` are (x, y, z) voxel indices from the first
voxel (``BOTTOM_LEFT_CORNER``) in pixels of the coordinate set's sampling rate. Scipion stores
positions relative to the tomogram origin: ``stored = blc + shifts_from_origin / sampling``. Converting
with ``setPosition(..., BOTTOM_LEFT_CORNER)`` re-reads the tomogram header for every coordinate, so
this module computes the offset once per tomogram and converts whole arrays (scipion.md §3.3).
"""
from dataclasses import dataclass

import numpy as np
from tomo.constants import SCIPION
from tomo.objects import Coordinate3D, TomoMask

from .core.mrcio import open_volume, read_info


def tomogram_path(image):
    """File name of a Scipion image without the ``:mrc`` format suffix some plugins append."""
    return image.getFileName().split(':')[0]


def open_tomogram(tomo):
    """Memory-map a tomogram: a context manager yielding ``(data[z, y, x], VolumeInfo)``."""
    return open_volume(tomogram_path(tomo))


def tomogram_info(tomo):
    return read_info(tomogram_path(tomo))


def origin_offset_px(tomo):
    """(x, y, z) offset in voxels between Scipion's stored positions and bottom-left-corner ones."""
    return np.asarray(tomo.getShiftsFromOrigin(), float) / tomo.getSamplingRate()


def tomograms_by_tsid(tomo_set):
    """``{tsId: detached copy}`` of a set of tomograms (or masks), in the set's order."""
    return {tomo.getTsId(): tomo.clone() for tomo in tomo_set.iterItems()}


@dataclass
class CoordinateTable:
    """The coordinates of one tomogram as arrays; positions in pixels of the set's sampling."""
    ts_id: str
    xyz: np.ndarray  # (N, 3) bottom-left-corner positions
    matrices: np.ndarray  # (N, 4, 4) Scipion transformation matrices
    group_ids: np.ndarray  # (N,) int
    scores: np.ndarray  # (N,) float
    obj_ids: np.ndarray  # (N,) int, ids in the input set

    def __len__(self):
        return len(self.obj_ids)


def read_coordinates(coord_set):
    """``{tsId: CoordinateTable}`` for every tomogram of the set's precedents, including empty ones.

    Iterates ``getPrecedentsInvolved()`` rather than the precedents set itself, which would stop
    after the first tomogram (scipion.md §3.4).
    """
    tables = {}
    for ts_id, tomo in coord_set.getPrecedentsInvolved().items():
        offset = origin_offset_px(tomo)
        stored, matrices, groups, scores, ids = [], [], [], [], []
        for coord in coord_set.iterCoordinates(volume=tomo):
            stored.append(coord.getPosition(SCIPION))
            matrices.append(coord.getMatrix())
            groups.append(coord.getGroupId() or 0)
            scores.append(coord.getScore() if coord.getScore() is not None else 0.0)
            ids.append(coord.getObjId())
        xyz = np.asarray(stored, float).reshape(-1, 3) - offset
        tables[ts_id] = CoordinateTable(ts_id, xyz, np.asarray(matrices, float).reshape(-1, 4, 4),
                                        np.asarray(groups, int), np.asarray(scores, float),
                                        np.asarray(ids, int))
    return tables


def append_coordinates(coord_set, tomo, xyz, matrices=None, group_ids=None, scores=None):
    """Append coordinates of one tomogram to an output set; ``xyz`` are bottom-left-corner pixels."""
    xyz = np.asarray(xyz, float).reshape(-1, 3)
    stored = xyz + origin_offset_px(tomo)
    for index, position in enumerate(stored):
        coord = Coordinate3D()
        coord.setVolume(tomo)
        coord.setPosition(*position, SCIPION)
        if matrices is not None:
            coord.setMatrix(np.asarray(matrices[index]))
        coord.setGroupId(int(group_ids[index]) if group_ids is not None else 0)
        if scores is not None:
            coord.setScore(float(scores[index]))
        coord_set.append(coord)
    return len(stored)


def make_tomo_mask(tomo, mask_path):
    """A TomoMask for ``tomo`` stored in ``mask_path``: same sampling, tsId and origin."""
    mask = TomoMask()
    mask.copyInfo(tomo)
    mask.setFileName(mask_path)
    mask.setVolName(tomogram_path(tomo))
    return mask
