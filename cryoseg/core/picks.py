"""Points picked by hand on one tomogram, kept apart from any window so that they can be tested and saved.

A :class:`PickSession` holds groups of points (one vesicle, membrane or filament each, with the model
type the directional model workflow fits to it, an optional marker point inside it, a colour and a
name) and particles (positions with one diameter). Positions are (x, y, z) voxels from the first voxel
(bottom-left corner), as everywhere in :mod:`cryoseg.core`. A session is saved as JSON, atomically
(:func:`save_session`): a crash while saving leaves the previous file intact.

A slice view shows the voxels of one slice in one orientation: ``xy`` (slices along z, the image
axes are x and y), ``xz`` (along y) or ``yz`` (along x); :func:`view_coordinates` and
:func:`voxel_position` convert between voxels and (u, v, depth) view coordinates.
"""
import json
from dataclasses import asdict, dataclass, field

import numpy as np

from .atomic import atomic_output
from .errors import CryoSegInputError
from .model_workflow import canonical_model

# model types of the directional model workflow (cryoseg.core.model_workflow.MODEL_TYPES) a group may
# have, with the words the picking window shows; 'auto' leaves the choice to the workflow (it infers
# the model from the points), so it is written as no model name
MODEL_LABELS = {'sphere': 'vesicle', 'ellipsoid': 'ellipsoidal vesicle', 'membraneByLevels': 'membrane by levels',
                'general': 'general surface', 'filamentHelix': 'filament', 'auto': 'auto (from the points)'}
COLOURS = ('#e6194b', '#3cb44b', '#4363d8', '#f58231', '#911eb4', '#42d4f4', '#f032e6', '#bfef45',
           '#fabed4', '#469990', '#dcbeff', '#9a6324', '#fffac8', '#800000', '#aaffc3', '#808000')
ORIENTATIONS = {'xy': (0, 1, 2), 'xz': (0, 2, 1), 'yz': (1, 2, 0)}  # (u, v, slice) axes among (x, y, z)
SESSION_VERSION = 1


def _check_model(model):
    if model not in MODEL_LABELS:
        raise CryoSegInputError(f"unknown model {model!r}; choose one of {', '.join(MODEL_LABELS)}")


def _default_name(model, group_id):
    return f"{'group' if model == 'auto' else MODEL_LABELS[model]} {group_id}"


def view_coordinates(xyz, orientation):
    """(N, 3) voxel positions → (N, 3) (u, v, depth) coordinates of the ``orientation`` view.

    >>> view_coordinates([[1, 2, 3]], 'xz').tolist()
    [[1.0, 3.0, 2.0]]
    """
    return np.asarray(xyz, float).reshape(-1, 3)[:, ORIENTATIONS[orientation]]


def voxel_position(orientation, u, v, depth):
    """(x, y, z) voxel position of the point (u, v) of the slice ``depth`` of the ``orientation`` view."""
    xyz = [0.0, 0.0, 0.0]
    for axis, value in zip(ORIENTATIONS[orientation], (u, v, depth)):
        xyz[axis] = float(value)
    return tuple(xyz)


def slice_image(volume_zyx, orientation, index):
    """The 2-D image [v, u] of slice ``index`` of a [z, y, x] volume in the ``orientation`` view."""
    if orientation == 'xy':
        return volume_zyx[index, :, :]
    if orientation == 'xz':
        return volume_zyx[:, index, :]
    return volume_zyx[:, :, index]


def view_shape(shape_xyz, orientation):
    """(width u, height v, number of slices) of the ``orientation`` view of a volume."""
    return tuple(int(shape_xyz[axis]) for axis in ORIENTATIONS[orientation])


@dataclass(frozen=True)
class PointRef:
    """One picked position: ``kind`` 'point' (``index`` in the group), 'marker' or 'particle' (``index``)."""
    kind: str
    group_id: int = 0
    index: int = 0


@dataclass
class PointGroup:
    group_id: int
    name: str
    model: str = 'sphere'
    colour: str = COLOURS[0]
    hidden: bool = False
    points: list = field(default_factory=list)  # [x, y, z] voxels
    marker: list = None  # [x, y, z] inside the geometry, or None


@dataclass
class PickSession:
    """Everything picked on one tomogram. Methods that change it return what they changed."""
    ts_id: str
    shape_xyz: tuple
    particle_diameter: float = 20.0  # px
    groups: list = field(default_factory=list)
    particles: list = field(default_factory=list)  # [x, y, z] voxels

    # ------------------------------------------------------------------------------------ groups
    def group(self, group_id):
        for group in self.groups:
            if group.group_id == group_id:
                return group
        raise KeyError(f'no group {group_id}')

    def new_group(self, model='sphere', name=None):
        _check_model(model)
        group_id = max((g.group_id for g in self.groups), default=0) + 1
        group = PointGroup(group_id, name or _default_name(model, group_id), model,
                           COLOURS[(group_id - 1) % len(COLOURS)])
        self.groups.append(group)
        return group

    def set_model(self, group_id, model):
        """Give a group another model type; a group still named by default is renamed after it."""
        _check_model(model)
        group = self.group(group_id)
        if group.name == _default_name(group.model, group_id):
            group.name = _default_name(model, group_id)
        group.model = model
        return group

    def delete_group(self, group_id):
        self.groups.remove(self.group(group_id))

    # ------------------------------------------------------------------------------------ points
    def add_point(self, group_id, xyz):
        group = self.group(group_id)
        group.points.append(self._inside(xyz))
        return PointRef('point', group_id, len(group.points) - 1)

    def set_marker(self, group_id, xyz):
        self.group(group_id).marker = self._inside(xyz)
        return PointRef('marker', group_id)

    def add_particle(self, xyz):
        self.particles.append(self._inside(xyz))
        return PointRef('particle', 0, len(self.particles) - 1)

    def position(self, ref):
        if ref.kind == 'particle':
            return self.particles[ref.index]
        group = self.group(ref.group_id)
        return group.marker if ref.kind == 'marker' else group.points[ref.index]

    def move(self, ref, xyz):
        xyz = self._inside(xyz)
        if ref.kind == 'particle':
            self.particles[ref.index] = xyz
        elif ref.kind == 'marker':
            self.group(ref.group_id).marker = xyz
        else:
            self.group(ref.group_id).points[ref.index] = xyz
        return ref

    def delete(self, ref):
        if ref.kind == 'particle':
            del self.particles[ref.index]
        elif ref.kind == 'marker':
            self.group(ref.group_id).marker = None
        else:
            del self.group(ref.group_id).points[ref.index]

    def _inside(self, xyz):
        """``xyz`` as a list of floats, clipped into the tomogram (a drag may leave the image)."""
        upper = np.asarray(self.shape_xyz, float) - 1
        return [round(float(v), 2) for v in np.clip(np.asarray(xyz, float).reshape(3), 0, upper)]

    # ------------------------------------------------------------------------------------ queries
    def visible(self):
        """``[(PointRef, xyz)]`` of every position of the groups that are shown, and of the particles."""
        items = []
        for group in self.groups:
            if group.hidden:
                continue
            items += [(PointRef('point', group.group_id, i), p) for i, p in enumerate(group.points)]
            if group.marker is not None:
                items.append((PointRef('marker', group.group_id), group.marker))
        items += [(PointRef('particle', 0, i), p) for i, p in enumerate(self.particles)]
        return items

    def near_slice(self, orientation, index, reach):
        """``[(PointRef, u, v, depth distance)]`` of the shown positions within ``reach`` slices of
        slice ``index`` of the ``orientation`` view."""
        items = self.visible()
        if not items:
            return []
        uvd = view_coordinates([xyz for _, xyz in items], orientation)
        distance = np.abs(uvd[:, 2] - index)
        return [(ref, u, v, d) for (ref, _), (u, v, _), d in zip(items, uvd, distance) if d <= reach]

    def nearest(self, orientation, index, u, v, radius):
        """The shown position on slice ``index`` (within half a slice) nearest to (u, v) and closer
        than ``radius`` (view units), or None."""
        best, best_distance = None, radius
        for ref, pu, pv, depth in self.near_slice(orientation, index, 0.5):
            distance = np.hypot(pu - u, pv - v)
            if distance <= best_distance:
                best, best_distance = ref, distance
        return best

    def counts(self):
        """(groups, points in groups, particles)."""
        return len(self.groups), sum(len(g.points) for g in self.groups), len(self.particles)

    # ------------------------------------------------------------------------------------ outputs
    def mesh_rows(self):
        """The groups with points as per-position rows: (N, 3) voxels, group ids, roles ('point' or
        'marker') and model types ('' for 'auto'), in group order; groups without points are left out."""
        xyz, ids, roles, models = [], [], [], []
        for group in self.groups:
            if not group.points:
                continue
            positions = group.points + ([group.marker] if group.marker is not None else [])
            xyz += positions
            ids += [group.group_id] * len(positions)
            roles += ['point'] * len(group.points) + ['marker'] * (group.marker is not None)
            models += ['' if group.model == 'auto' else group.model] * len(positions)
        return np.asarray(xyz, float).reshape(-1, 3), np.asarray(ids, int), roles, models

    def to_json(self):
        return json.dumps(dict(asdict(self), version=SESSION_VERSION, shape_xyz=list(self.shape_xyz)), indent=1)

    @classmethod
    def from_json(cls, text):
        data = json.loads(text)
        data.pop('version', None)
        groups = [PointGroup(**g) for g in data.pop('groups', [])]
        return cls(groups=groups, **dict(data, shape_xyz=tuple(data['shape_xyz'])))


def save_session(session, path):
    """Write ``session`` to ``path`` atomically (:func:`cryoseg.core.atomic.atomic_output`), so that
    ``path`` always holds a whole session."""
    with atomic_output(path, suffix='.json') as temporary:
        with open(temporary, 'w') as stream:
            stream.write(session.to_json())
    return path


def load_session(path):
    """The :class:`PickSession` saved in ``path``."""
    with open(path) as handle:
        try:
            return PickSession.from_json(handle.read())
        except (ValueError, TypeError, KeyError) as err:
            raise CryoSegInputError(f'{path} is not a saved picking session ({err})') from None


def session_from_points(ts_id, shape_xyz, xyz, group_ids, roles=None, models=None, particle_diameter=20.0):
    """A session holding given points: rows of a group id > 0 become groups (marker-role rows their
    marker; the model type named by the rows, in cryoseg's or Dynamo's spelling, else 'auto'), rows of
    group 0 become particles. The reverse of :meth:`PickSession.mesh_rows` plus the particles."""
    session = PickSession(ts_id, tuple(int(s) for s in shape_xyz), float(particle_diameter))
    xyz = np.asarray(xyz, float).reshape(-1, 3)
    group_ids = np.asarray(group_ids, int)
    roles = list(roles) if roles is not None else ['point'] * len(xyz)
    models = list(models) if models is not None else [''] * len(xyz)
    groups = {}
    for position, group_id, role, model in zip(xyz, group_ids, roles, models):
        if group_id <= 0:
            session.add_particle(position)
            continue
        if group_id not in groups:
            model = canonical_model(model)
            groups[group_id] = session.new_group(model if model in MODEL_LABELS else 'auto')
        if role == 'marker':
            session.set_marker(groups[group_id].group_id, position)
        else:
            session.add_point(groups[group_id].group_id, position)
    return session
