"""Picking consensus and duplicate removal (cryoseg.core.consensus) against known answers."""
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from cryoseg.core.consensus import Picks, consensus, match, remove_duplicates
from cryoseg.core.errors import CryoSegInputError


def z_rotation_matrices(degrees):
    matrices = np.tile(np.eye(4), (len(degrees), 1, 1))
    matrices[:, :3, :3] = Rotation.from_euler('z', degrees, degrees=True).as_matrix()
    return matrices


def rotation_angle_about_z(matrix):
    rotvec = Rotation.from_matrix(matrix[:3, :3]).as_rotvec()
    np.testing.assert_allclose(rotvec[:2], 0, atol=1e-9)
    return np.degrees(rotvec[2])


def separated_points(count, rng, spacing=100.0):
    """``count`` points on a jittered grid, at least ``spacing`` / 2 Å apart."""
    side = int(np.ceil(count ** (1 / 3)))
    grid = np.stack(np.meshgrid(*[np.arange(side)] * 3, indexing='ij'), -1).reshape(-1, 3)[:count]
    return grid * spacing + rng.uniform(-spacing / 4, spacing / 4, (count, 3))


def sorted_rows(clusters):
    """The consensus as one comparable array: position, votes, size, rotation."""
    return np.column_stack([clusters.xyz, clusters.votes, clusters.size,
                            clusters.matrices.reshape(len(clusters), 16)])


def test_identical_jittered_sets_and_returns_all_at_the_mean_positions():
    rng = np.random.default_rng(0)
    truth = separated_points(50, rng)
    jittered = [truth + rng.normal(0, 1.0, truth.shape) for _ in range(3)]
    result = consensus([{'TS_01': Picks(xyz)} for xyz in jittered], radius=20.0, k=-1)
    chosen = result.selected()['TS_01']
    assert len(chosen) == 50 and np.all(chosen.votes == 3)
    expected = np.mean(jittered, axis=0)
    expected = expected[np.lexsort(expected.T[::-1])]
    np.testing.assert_allclose(chosen.xyz, expected, atol=1e-9)
    assert result.jaccard()['TS_01'] == 1.0
    assert np.all(chosen.spread < 3.0)


def test_positions_are_floats_not_truncated():
    sets = [{'T': Picks([[0.9, -0.9, 5.99]])}, {'T': Picks([[0.9, -0.9, 5.99]])}]
    np.testing.assert_allclose(consensus(sets, 1.0).selected()['T'].xyz, [[0.9, -0.9, 5.99]])


def test_disjoint_sets_give_an_empty_and_and_the_union_under_or():
    rng = np.random.default_rng(1)
    points = separated_points(40, rng)
    sets = [{'TS_01': Picks(points[:15])}, {'TS_01': Picks(points[15:])}]
    assert len(consensus(sets, 10.0, k=-1).selected()['TS_01']) == 0
    union = consensus(sets, 10.0, k=1).selected()['TS_01']
    assert len(union) == 40 and np.all(union.votes == 1)
    np.testing.assert_allclose(np.sort(union.xyz, axis=0), np.sort(points, axis=0))
    assert consensus(sets, 10.0).jaccard()['TS_01'] == 0.0


def test_duplicates_inside_a_set_never_give_more_votes_than_sets():
    # upstream: A = {0}, B = {1, 2} gave 3 votes with 2 sets and AND '=' returned nothing
    sets = [{'T': Picks([[0, 0, 0]])}, {'T': Picks([[1, 0, 0], [2, 0, 0]])}]
    result = consensus(sets, 10.0, k=-1, mode='eq')
    assert result.clusters['T'].votes.max() == 2
    chosen = result.selected()['T']
    assert len(chosen) == 1 and chosen.votes[0] == 2
    np.testing.assert_allclose(chosen.xyz, [[0.5, 0, 0]])  # the closer duplicate is taken
    rng = np.random.default_rng(2)
    crowded = [{'T': Picks(rng.uniform(0, 60, (200, 3)))} for _ in range(3)]
    clusters = consensus(crowded, 10.0).clusters['T']
    assert clusters.votes.max() <= 3 and np.array_equal(clusters.votes, clusters.size)
    assert sum(len(labels) for labels in clusters.labels) == 600 == clusters.size.sum()


def test_chain_that_makes_the_greedy_algorithm_order_dependent():
    # upstream OR gave [4, 16] or [12, 0] for x = 0, 8, 16 and r = 10 depending on the order
    a, b = Picks([[0, 0, 0], [16, 0, 0]]), Picks([[8, 0, 0]])
    for sets in ([{'T': a}, {'T': b}], [{'T': b}, {'T': a}]):
        chosen = consensus(sets, 10.0, k=1).selected()['T']
        np.testing.assert_allclose(chosen.xyz[:, 0], [4, 16])
        np.testing.assert_array_equal(chosen.votes, [2, 1])


def test_permuting_sets_and_points_gives_identical_output():
    rng = np.random.default_rng(3)
    centres = rng.uniform(0, 200, (120, 3))  # dense: many competing candidate pairs
    sets = []
    for index in range(4):
        xyz = centres[rng.random(len(centres)) < 0.8]
        xyz = xyz + rng.normal(0, 4, xyz.shape)
        sets.append(Picks(xyz, matrices=z_rotation_matrices(rng.uniform(0, 360, len(xyz))),
                          scores=rng.random(len(xyz))))
    reference = consensus([{'T': p} for p in sets], 12.0, k=2).selected()['T']
    assert len(reference) > 20
    for trial in range(3):
        order = rng.permutation(len(sets))
        shuffled = []
        for index in order:
            points = rng.permutation(len(sets[index]))
            shuffled.append({'T': Picks(sets[index].xyz[points], sets[index].matrices[points],
                                        sets[index].scores[points])})
        result = consensus(shuffled, 12.0, k=2).selected()['T']
        np.testing.assert_allclose(sorted_rows(result), sorted_rows(reference), atol=1e-9)


@pytest.mark.parametrize('k', [1, 2, 3, 4])
def test_points_planted_in_exactly_k_of_n_sets(k):
    rng = np.random.default_rng(4)
    planted = {1: 5, 2: 6, 3: 7, 4: 8}  # number of particles seen by exactly j of the 4 sets
    points = separated_points(sum(planted.values()), rng)
    members = [[] for _ in range(4)]
    start = 0
    for seen_by, count in planted.items():
        for point in points[start:start + count]:
            for set_index in rng.choice(4, seen_by, replace=False):
                members[set_index].append(point + rng.normal(0, 1.0, 3))
        start += count
    sets = [{'T': Picks(np.array(m))} for m in members]
    at_least = consensus(sets, 15.0, k=k, mode='ge').selected()['T']
    exactly = consensus(sets, 15.0, k=k, mode='eq').selected()['T']
    assert len(at_least) == sum(c for j, c in planted.items() if j >= k)
    assert len(exactly) == planted[k]


def test_rotations_average_with_the_chordal_mean():
    sets = [{'T': Picks([[5, 5, 5]], matrices=z_rotation_matrices([angle]))} for angle in (0, 0, 90)]
    chosen = consensus(sets, 1.0).selected()['T']
    assert rotation_angle_about_z(chosen.matrices[0]) == pytest.approx(26.565, abs=1e-3)
    assert chosen.oriented[0]


def test_quaternion_sign_does_not_matter():
    # -89° and -91° about z: the quaternions scipy derives from the matrices have opposite signs
    # (largest component made positive), so a plain quaternion mean would be wrong; the chordal
    # mean is -90°
    matrices = z_rotation_matrices([-89, -91])
    quats = Rotation.from_matrix(matrices[:, :3, :3]).as_quat()
    assert np.dot(quats[0], quats[1]) < 0
    sets = [{'T': Picks([[0, 0, 0]], matrices=matrices[i:i + 1])} for i in range(2)]
    mean = consensus(sets, 1.0).selected()['T'].matrices[0]
    assert rotation_angle_about_z(mean) == pytest.approx(-90.0, abs=1e-6)
    # q and -q describe the same rotation: the same matrix, hence the same consensus
    flipped = Rotation.from_quat(-quats[1]).as_matrix()
    np.testing.assert_allclose(flipped, matrices[1, :3, :3], atol=1e-12)


def test_axis_mode_averages_normals_and_keeps_the_in_plane_angle_of_the_first_set():
    tilt = Rotation.from_euler('zx', [[30, 0], [70, 20]], degrees=True).as_matrix()
    matrices = np.tile(np.eye(4), (2, 1, 1))
    matrices[:, :3, :3] = tilt
    sets = [{'T': Picks([[0, 0, 0]], matrices=matrices[i:i + 1])} for i in range(2)]
    mean = consensus(sets, 1.0, axis_mode=True).selected()['T'].matrices[0, :3, :3]
    normals = tilt[:, 2, :]
    expected = normals.sum(0) / np.linalg.norm(normals.sum(0))
    np.testing.assert_allclose(mean[2], expected, atol=1e-9)
    np.testing.assert_allclose(mean @ mean.T, np.eye(3), atol=1e-9)
    assert np.degrees(np.arccos(np.clip(tilt[0, 2] @ mean[2], -1, 1))) == pytest.approx(10.0, abs=1e-6)


def test_angular_gate_separates_differently_oriented_picks():
    sets = [{'T': Picks([[0, 0, 0]], matrices=z_rotation_matrices([a]))} for a in (0, 90)]
    assert consensus(sets, 5.0, angular_gate=30).clusters['T'].votes.tolist() == [1, 1]
    assert consensus(sets, 5.0, angular_gate=120).clusters['T'].votes.tolist() == [2]
    unoriented = [sets[0], {'T': Picks([[0, 0, 0]])}]  # a picking without orientations is not gated
    assert consensus(unoriented, 5.0, angular_gate=30).clusters['T'].votes.tolist() == [2]


def test_tomograms_never_mix_and_a_tomogram_only_in_the_second_set_appears_under_or():
    same = [[10, 10, 10]]
    sets = [{'TS_01': Picks(same)}, {'TS_02': Picks(same), 'TS_03': Picks([[1, 2, 3]])}]
    result = consensus(sets, 50.0, k=1)
    assert sorted(result.clusters) == ['TS_01', 'TS_02', 'TS_03']
    for ts_id, clusters in result.selected().items():
        assert len(clusters) == 1 and clusters.votes[0] == 1
    assert all(len(c) == 0 for c in consensus(sets, 50.0, k=-1).selected().values())


def test_a_binned_set_matches_its_unbinned_twin():
    rng = np.random.default_rng(5)
    pixels = separated_points(30, rng, spacing=30)  # bin-1 pixels of 10 Å
    sets = [{'T': Picks(pixels * 10.0)}, {'T': Picks(pixels / 2 * 20.0)}]
    chosen = consensus(sets, 15.0).selected()['T']
    assert len(chosen) == 30 and np.all(chosen.votes == 2)


def test_one_point_and_empty_results():
    sets = [{'T': Picks([[0, 0, 0], [100, 0, 0]])}, {'T': Picks([[1, 0, 0]])}]
    chosen = consensus(sets, 5.0).selected()['T']
    assert len(chosen) == 1 and chosen.xyz.shape == (1, 3) and chosen.matrices.shape == (1, 4, 4)
    empty = consensus([{'T': Picks(np.zeros((0, 3)))}, {'T': Picks([[1, 0, 0]])}], 5.0)
    assert len(empty.selected()['T']) == 0 and empty.selected()['T'].xyz.shape == (0, 3)
    nothing = consensus([{'T': Picks(np.zeros((0, 3)))}, {}], 5.0)
    assert len(nothing.clusters['T']) == 0 and np.isnan(nothing.jaccard()['T'])


def test_set_difference_lists_points_no_other_set_confirms():
    sets = [{'T': Picks([[0, 0, 0], [50, 0, 0], [90, 0, 0]])}, {'T': Picks([[1, 0, 0]])},
            {'T': Picks([[51, 0, 0], [200, 0, 0]])}]
    result = consensus(sets, 5.0)
    np.testing.assert_allclose(result.difference(0)['T'].xyz, [[90, 0, 0]])
    assert len(result.difference(1)['T']) == 0
    np.testing.assert_allclose(result.difference(2)['T'].xyz, [[200, 0, 0]])
    with pytest.raises(CryoSegInputError):
        result.difference(3)


def test_bad_parameters_are_input_errors():
    sets = [{'T': Picks([[0, 0, 0]])}, {'T': Picks([[0, 0, 0]])}]
    for kwargs in ({'k': 3}, {'k': 0}, {'k': -2}, {'mode': 'gt'}, {'radius': 0}, {'angular_gate': 0}):
        with pytest.raises(CryoSegInputError):
            consensus(sets, **{'radius': 5.0, **kwargs})
    with pytest.raises(CryoSegInputError):
        consensus(sets[:1], 5.0)


def test_remove_duplicates_keeps_the_best_and_does_not_collapse_chains():
    rng = np.random.default_rng(6)
    blob = np.array([[0, 0, 0], [3, 0, 0], [0, 3, 0]], float)
    chain = np.column_stack([np.arange(6) * 8.0 + 100, np.zeros(6), np.zeros(6)])  # 8 Å apart, r = 10
    xyz = np.concatenate([blob, chain])
    scores = np.array([0.2, 0.9, 0.5, *rng.random(6)])
    clusters = remove_duplicates(Picks(xyz, scores=scores), 10.0, keep='best')
    assert len(clusters) == 1 + 3  # the blob, and the chain in pairs: no member farther than r
    assert clusters.size.max() == 3 and np.all(clusters.size[1:] == 2)
    first = clusters.representative[0]
    assert first[0] == 0 and first[1] == 1 and clusters.best_score[0] == pytest.approx(0.9)
    np.testing.assert_allclose(clusters.xyz[0], blob.mean(0))
    single = remove_duplicates(Picks(xyz, scores=scores), 10.0, complete_linkage=False)
    assert len(single) == 2  # single linkage would chain the filament into one pick
    with pytest.raises(CryoSegInputError):
        remove_duplicates(Picks(xyz), 10.0, keep='median')


def test_match_scales_to_many_points():
    rng = np.random.default_rng(7)
    truth = rng.uniform(0, 20000, (20000, 3))
    sets = [Picks(truth + rng.normal(0, 2, truth.shape)) for _ in range(3)]
    clusters = match(sets, 10.0)
    assert np.bincount(clusters.votes, minlength=4)[3] >= 19900
