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
from pwem.objects import Transform
from pyworkflow.object import Float, String
from tomo.objects import Coordinate3D, MeshPoint, SubTomogram, TomoMask

from .core.mrcio import open_volume, read_info, require_tomogram


def tomogram_path(image):
    """File name of a Scipion image without the ``:mrc`` format suffix some plugins append."""
    return image.getFileName().split(':')[0]


def open_tomogram(tomo):
    """Memory-map a tomogram: a context manager yielding ``(data[z, y, x], VolumeInfo)``; a file that
    is not a 3-D volume raises :class:`MrcError`."""
    require_tomogram(tomogram_path(tomo))
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
    return {ts_id: read_tomogram_coordinates(coord_set, tomo)
            for ts_id, tomo in coord_set.getPrecedentsInvolved().items()}


def read_tomogram_coordinates(coord_set, tomo):
    """The :class:`CoordinateTable` of one tomogram of the set (``tomo`` is one of its precedents)."""
    offset = origin_offset_px(tomo)
    stored, matrices, groups, scores, ids = [], [], [], [], []
    for coord in coord_set.iterCoordinates(volume=tomo):
        stored.append(coord.getPosition(SCIPION))
        matrices.append(coord.getMatrix())
        groups.append(coord.getGroupId() or 0)
        scores.append(coord.getScore() if coord.getScore() is not None else 0.0)
        ids.append(coord.getObjId())
    xyz = np.asarray(stored, float).reshape(-1, 3) - offset
    return CoordinateTable(tomo.getTsId(), xyz, np.asarray(matrices, float).reshape(-1, 4, 4),
                           np.asarray(groups, int), np.asarray(scores, float), np.asarray(ids, int))


def append_coordinates(coord_set, tomo, xyz, matrices=None, group_ids=None, scores=None,
                       attributes=None, item_class=Coordinate3D):
    """Append coordinates of one tomogram to an output set; ``xyz`` are bottom-left-corner pixels.

    ``attributes`` maps an extra attribute name (e.g. ``'_cryosegDiameter'``) to one value per
    position, stored as a Float (or a String for text); every item of a set must carry the same
    attributes, as they become columns of the set. ``item_class`` may be ``MeshPoint``.
    """
    xyz = np.asarray(xyz, float).reshape(-1, 3)
    stored = xyz + origin_offset_px(tomo)
    for index, position in enumerate(stored):
        coord = item_class()
        coord.setVolume(tomo)
        coord.setPosition(*position, SCIPION)
        if matrices is not None:
            coord.setMatrix(np.asarray(matrices[index]))
        coord.setGroupId(int(group_ids[index]) if group_ids is not None else 0)
        if scores is not None:
            coord.setScore(float(scores[index]))
        for name, values in (attributes or {}).items():
            value = values[index]
            setattr(coord, name, String(value) if isinstance(value, str) else Float(float(value)))
        coord_set.append(coord)
    return len(stored)


def make_tomo_mask(tomo, mask_path):
    """A TomoMask for ``tomo`` stored in ``mask_path``: same sampling, tsId and origin."""
    mask = TomoMask()
    mask.copyInfo(tomo)
    mask.setFileName(mask_path)
    mask.setVolName(tomogram_path(tomo))
    return mask


def coordinates_by_id(coord_set, tomo):
    """``{objId: detached Coordinate3D}`` of the coordinates of one tomogram (a precedent of the set)."""
    return {coord.getObjId(): coord.clone() for coord in coord_set.iterCoordinates(volume=tomo)}


def make_subtomogram(coord, path, sampling, matrix, ts_id, acquisition=None):
    """A SubTomogram in ``path`` cut around ``coord`` (kept as is, in its own sampling), with its
    4x4 Scipion ``matrix`` and volName = tsId (scipion.md §3.5)."""
    subtomo = SubTomogram()
    subtomo.setFileName(path)
    subtomo.setSamplingRate(sampling)
    if coord is not None:
        subtomo.setCoordinate3D(coord)
    subtomo.setVolName(ts_id)
    subtomo.setTransform(Transform(np.asarray(matrix, float)))
    if acquisition is not None:
        subtomo.setAcquisition(acquisition)
    return subtomo


def subtomogram_ts_id(subtomo):
    """The tomogram a subtomogram comes from: its coordinate's tsId, else its volName (peers store a
    file path or a tsId there), else '' for subtomograms imported without a tomogram."""
    coord = subtomo.getCoordinate3D()
    if coord is not None and coord.getTomoId():
        return coord.getTomoId()
    return subtomo._volName.get() or ''


@dataclass
class SubtomogramTable:
    """The subtomograms of one tomogram: files, Scipion matrices and ids in the input set."""
    ts_id: str
    obj_ids: np.ndarray  # (N,) int
    paths: list
    matrices: np.ndarray  # (N, 4, 4)

    def __len__(self):
        return len(self.obj_ids)


def read_subtomograms(subtomo_set):
    """``{tsId: SubtomogramTable}`` of a SetOfSubTomograms, in the set's order."""
    rows = {}
    for subtomo in subtomo_set.iterItems():
        transform = subtomo.getTransform()
        matrix = transform.getMatrix() if transform is not None else np.eye(4)
        rows.setdefault(subtomogram_ts_id(subtomo), []).append(
            (subtomo.getObjId(), tomogram_path(subtomo), np.asarray(matrix, float)))
    return {ts_id: SubtomogramTable(ts_id, np.array([r[0] for r in items], int), [r[1] for r in items],
                                    np.array([r[2] for r in items], float).reshape(-1, 4, 4))
            for ts_id, items in rows.items()}


# --------------------------------------------------------------------------- user points (SetOfMeshes)
POINT_ROLE_ATTRIBUTE = '_cryosegRole'  # 'point' (on the geometry) or 'marker' (inside it)


MODEL_NAME_ATTRIBUTE = '_dynModelName'  # the model type of a mesh, named as Dynamo's vectorial picking does


def append_mesh_points(mesh_set, tomo, xyz, group_ids, roles, models=None):
    """Append clicked points of one tomogram as MeshPoints, one groupId per geometry; ``xyz`` are
    bottom-left-corner pixels, ``roles`` ('point' or 'marker') become the ``_cryosegRole`` attribute
    and ``models`` (optional, one model type per point) the ``_dynModelName`` attribute."""
    count = len(np.asarray(xyz, float).reshape(-1, 3))
    attributes = {POINT_ROLE_ATTRIBUTE: [str(r) for r in roles], '_volumeName': [tomogram_path(tomo)] * count}
    if models is not None:
        attributes[MODEL_NAME_ATTRIBUTE] = [str(m) for m in models]
    return append_coordinates(mesh_set, tomo, xyz, group_ids=group_ids, item_class=MeshPoint,
                              attributes=attributes)


def read_point_annotations(coord_set, tomo):
    """Role and model name of each coordinate of one tomogram, in :func:`read_tomogram_coordinates`
    order: role 'point' or 'marker' ('point' for sets without roles, e.g. grouped coordinates), model
    the Dynamo model name of Dynamo meshes (``_dynModelName``) or ''."""
    roles, models = [], []
    for coord in coord_set.iterCoordinates(volume=tomo):
        role, model = getattr(coord, POINT_ROLE_ATTRIBUTE, None), getattr(coord, MODEL_NAME_ATTRIBUTE, None)
        roles.append((role.get() if role is not None else None) or 'point')
        models.append((model.get() if model is not None else None) or '')
    return roles, models


def precedents_pointer(coord_set):
    """The pointer to the tomograms of a coordinate set, to give a derived set the same precedents
    (``setPrecedents`` copies a pointer; a loaded set object would not keep its link)."""
    return coord_set._precedentsPointer


# --------------------------------------------------------------------------- positions in Å
def read_coordinates_angstrom(coord_set):
    """``{tsId: CoordinateTable}`` with ``xyz`` in Å from the tomogram origin.

    Scipion stores positions relative to the tomogram origin in pixels of the set's sampling, so
    stored × sampling is the physical position: sets of different samplings (binnings) of the same
    tomograms compare directly.
    """
    sampling = coord_set.getSamplingRate()
    tomos = coord_set.getPrecedentsInvolved()
    return {ts_id: CoordinateTable(ts_id, (table.xyz + origin_offset_px(tomos[ts_id])) * sampling,
                                   table.matrices, table.group_ids, table.scores, table.obj_ids)
            for ts_id, table in read_coordinates(coord_set).items()}


def append_coordinates_angstrom(coord_set, tomo, xyz_angstrom, matrices=None, group_ids=None, scores=None):
    """Append coordinates given in Å from the tomogram origin, in the pixels of ``coord_set``'s
    sampling (which must be set); the inverse of :func:`read_coordinates_angstrom`."""
    stored = np.asarray(xyz_angstrom, float).reshape(-1, 3) / coord_set.getSamplingRate()
    return append_coordinates(coord_set, tomo, stored - origin_offset_px(tomo), matrices, group_ids, scores)


# --------------------------------------------------------------------------- picks for export
def read_picks_in_tomogram_pixels(picks_set):
    """``({tsId: CoordinateTable}, {tsId: Tomogram})`` of a SetOfCoordinates3D or SetOfSubTomograms:
    positions in voxels (from the first voxel) of each tomogram, rescaled from the coordinates'
    sampling when it differs from the tomogram's, and rotations from the coordinates' matrices or the
    subtomograms' transforms. Subtomograms are placed at their coordinates (their shifts, offsets
    from the box centre, are not added)."""
    if hasattr(picks_set, 'getCoordinates3D'):
        coords = picks_set.getCoordinates3D()
        tomos = coords.getPrecedentsInvolved()
        coord_sampling = coords.getSamplingRate()
        rows = {}
        for subtomo in picks_set.iterItems():
            coord = subtomo.getCoordinate3D()
            ts_id = coord.getTomoId()
            transform = subtomo.getTransform()
            matrix = transform.getMatrix() if transform is not None else np.eye(4)
            rows.setdefault(ts_id, []).append((coord.getPosition(SCIPION), matrix, subtomo.getObjId()))
        tables = {ts_id: CoordinateTable(ts_id, np.array([r[0] for r in items], float) - origin_offset_px(tomos[ts_id]),
                                         np.array([r[1] for r in items], float), np.zeros(len(items), int),
                                         np.zeros(len(items)), np.array([r[2] for r in items], int))
                  for ts_id, items in rows.items()}
    else:
        tomos = picks_set.getPrecedentsInvolved()
        coord_sampling = picks_set.getSamplingRate()
        tables = {ts_id: table for ts_id, table in read_coordinates(picks_set).items() if len(table)}
    for ts_id, table in tables.items():
        table.xyz = table.xyz * (coord_sampling / tomos[ts_id].getSamplingRate())
    return tables, {ts_id: tomos[ts_id] for ts_id in tables}
