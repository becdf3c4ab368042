"""The picking window's model: slice-view coordinates, editing a session, atomic saving, output rows."""
import json
import os

import numpy as np
import pytest

from cryoseg.core.errors import CryoSegInputError
from cryoseg.core.model_workflow import split_groups
from cryoseg.core.picks import (ORIENTATIONS, PickSession, PointRef, load_session, save_session, session_from_points,
                                slice_image, view_coordinates, view_shape, voxel_position)

SHAPE = (40, 30, 20)  # x, y, z


@pytest.mark.parametrize('orientation', list(ORIENTATIONS))
def test_view_coordinates_and_slices_agree_with_the_volume(orientation):
    volume = np.arange(SHAPE[2] * SHAPE[1] * SHAPE[0]).reshape(SHAPE[::-1])  # [z, y, x]
    xyz = np.array([7.0, 11.0, 13.0])
    u, v, depth = view_coordinates([xyz], orientation)[0]
    assert voxel_position(orientation, u, v, depth) == tuple(xyz)
    image = slice_image(volume, orientation, int(depth))
    width, height, count = view_shape(SHAPE, orientation)
    assert image.shape == (height, width) and count == SHAPE[ORIENTATIONS[orientation][2]]
    assert image[int(v), int(u)] == volume[13, 11, 7]  # the image pixel (u, v) is the voxel (x, y, z)


def test_adding_selecting_moving_and_deleting_points():
    session = PickSession('TS_01', SHAPE, particle_diameter=6.0)
    vesicle = session.new_group('sphere')
    first = session.add_point(vesicle.group_id, [10, 10, 5])
    session.add_point(vesicle.group_id, [20, 10, 5])
    session.add_point(vesicle.group_id, [10.4, 10.3, 6])  # on the next slice
    particle = session.add_particle([30, 20, 5])
    # only positions on the slice (within half a slice) and within the radius are found, nearest first
    assert session.nearest('xy', 5, 10.5, 10.5, 2.0) == first
    assert session.nearest('xy', 5, 15, 10, 2.0) is None
    assert session.nearest('xy', 4, 10, 10, 2.0) is None
    assert session.nearest('xy', 5, 29, 21, 2.0) == particle
    assert session.nearest('xz', 10, 20, 5, 0.5) == PointRef('point', vesicle.group_id, 1)
    session.move(first, [12, 13, 5])
    assert session.position(first) == [12.0, 13.0, 5.0]
    session.move(first, [-3, 99, 5])  # a drag out of the image stays on its edge
    assert session.position(first) == [0.0, SHAPE[1] - 1, 5.0]
    session.delete(first)
    assert vesicle.points == [[20.0, 10.0, 5.0], [10.4, 10.3, 6.0]]
    marker = session.set_marker(vesicle.group_id, [15, 15, 5])
    assert session.nearest('xy', 5, 15, 15, 1) == marker
    vesicle.hidden = True  # hidden groups are neither drawn nor selectable
    assert session.nearest('xy', 5, 15, 15, 1) is None
    assert [ref.kind for ref, *_ in session.near_slice('xy', 5, 3)] == ['particle']
    assert session.counts() == (1, 2, 1)


def test_groups_models_and_names():
    session = PickSession('TS_01', SHAPE)
    first = session.new_group('sphere')
    second = session.new_group('filamentHelix', name='actin')
    assert (first.name, second.name, first.group_id, second.group_id) == ('vesicle 1', 'actin', 1, 2)
    assert first.colour != second.colour
    session.set_model(first.group_id, 'membraneByLevels')
    session.set_model(second.group_id, 'general')
    assert (first.name, second.name) == ('membrane by levels 1', 'actin')  # a chosen name is kept
    with pytest.raises(CryoSegInputError, match='unknown model'):
        session.new_group('cube')
    session.delete_group(first.group_id)
    assert session.new_group('auto').group_id == 3 and session.groups[-1].name == 'group 3'


def test_mesh_rows_are_what_the_model_workflow_splits_and_round_trip():
    session = PickSession('TS_01', SHAPE, particle_diameter=5.0)
    vesicle, filament, empty = session.new_group('ellipsoid'), session.new_group('auto'), session.new_group()
    for xyz in ([1, 2, 3], [4, 5, 6], [7, 8, 9]):
        session.add_point(vesicle.group_id, xyz)
    session.set_marker(vesicle.group_id, [4, 4, 4])
    session.add_point(filament.group_id, [10, 10, 10])
    session.add_particle([20, 20, 10])
    xyz, ids, roles, models = session.mesh_rows()
    assert ids.tolist() == [1, 1, 1, 1, 2] and empty.group_id not in ids
    assert roles == ['point', 'point', 'point', 'marker', 'point'] and models == ['ellipsoid'] * 4 + ['']
    groups = split_groups(xyz, ids, roles, models)
    assert groups[1]['model'] == 'ellipsoid' and groups[2]['model'] is None  # auto: inferred by the workflow
    np.testing.assert_array_equal(groups[1]['marker'], [4, 4, 4])
    rebuilt = session_from_points('TS_01', SHAPE, np.vstack([xyz, [[20, 20, 10]]]), np.append(ids, 0),
                                  roles + ['point'], models + [''], 5.0)
    assert [(g.model, g.points, g.marker) for g in rebuilt.groups] == \
        [(g.model, g.points, g.marker) for g in (vesicle, filament)]
    assert rebuilt.particles == session.particles
    dynamo = session_from_points('TS_01', SHAPE, xyz[:3], [5, 5, 5], models=['ellipsoidalVesicle'] * 3)
    assert dynamo.groups[0].model == 'ellipsoid'  # Dynamo's names are understood


def test_saving_is_atomic_and_loads_back(tmp_path):
    path = str(tmp_path / 'picks' / 'TS_01.json')
    session = PickSession('TS_01', SHAPE, particle_diameter=7.5)
    group = session.new_group('membraneByLevels')
    session.add_point(group.group_id, [1.25, 2.5, 3])
    session.add_particle([5, 6, 7])
    save_session(session, path)
    assert load_session(path) == session
    # a save that fails half-way (here: a value JSON cannot write) leaves the last saved session whole
    group.points.append([object(), 0, 0])
    with pytest.raises(TypeError):
        save_session(session, path)
    assert load_session(path).counts() == (1, 1, 1)
    assert os.listdir(os.path.dirname(path)) == ['TS_01.json']  # no temporary file left behind
    with open(path, 'w') as handle:
        json.dump({'groups': 3}, handle)
    with pytest.raises(CryoSegInputError, match='not a saved picking session'):
        load_session(path)
