"""Picking consensus and duplicate removal, independent of the order of sets and points.

Points of several pickings of one tomogram are grouped into clusters: candidate pairs closer than a
radius come from KD-trees, and a constrained Kruskal pass merges them from the closest pair on,
allowing a merge only when the two clusters share no input set. A cluster therefore holds at most
one point per input set and its votes (the number of supporting sets) never exceed the number of
sets. Points and edges are processed in a canonical order derived from the data alone (position,
then score, group and matrix), so permuting the sets or the points gives the same clusters.

Positions are (x, y, z) in Å from a common origin, so pickings at different samplings combine.
Orientations are Scipion 4x4 matrices; their rotations are averaged with the chordal L2 mean of
quaternions (the top eigenvector of sum(q qᵀ), Markley et al. 2007), which does not depend on the
sign of q. In axis mode only the particle's normal (the third row of the rotation, as in
scipion-em-tomo's ``normalFromMatrix``) is averaged and the in-plane angle is kept from the member
of the lowest set.
"""
from dataclasses import dataclass, field, replace

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree
from scipy.spatial.transform import Rotation

from .checks import as_positions
from .errors import CryoSegInputError

MODES = ('ge', 'eq')
KEEP = ('best', 'mean')


@dataclass
class Picks:
    """The picks of one input set in one tomogram.

    ``xyz`` (n, 3) in Å; ``matrices`` (n, 4, 4) or None when the picking has no orientations;
    ``scores`` and ``group_ids`` (n,), zeros when absent.
    """
    xyz: np.ndarray
    matrices: np.ndarray = None
    scores: np.ndarray = None
    group_ids: np.ndarray = None

    def __post_init__(self):
        self.xyz = as_positions(self.xyz, 'pick positions')
        count = len(self.xyz)
        if self.matrices is not None:
            self.matrices = np.asarray(self.matrices, float).reshape(count, 4, 4)
        self.scores = np.zeros(count) if self.scores is None else np.asarray(self.scores, float)
        self.group_ids = (np.zeros(count, int) if self.group_ids is None
                          else np.asarray(self.group_ids, int))
        if len(self.scores) != count or len(self.group_ids) != count:
            raise CryoSegInputError('scores and group ids must have one value per pick')

    def __len__(self):
        return len(self.xyz)


@dataclass
class Clusters:
    """Clusters of one tomogram, sorted by mean position (x, then y, then z).

    ``votes`` counts the distinct input sets in a cluster, ``set_mask`` has bit i set when set i
    supports it; ``size`` counts its points. ``xyz`` is the mean position (Å) and ``spread`` the RMS
    distance of the members to it. ``matrices`` hold the consensus rotation and mean shift of the
    oriented members (identity when none; ``oriented`` says which). ``scores`` is the mean input
    score, ``best_score`` the highest; ``representative`` is (set, index in that set) of the
    highest-scoring member and ``group_ids`` come from the member of the lowest set.
    ``labels[i][j]`` is the cluster of point j of set i.
    """
    xyz: np.ndarray
    votes: np.ndarray
    set_mask: np.ndarray
    size: np.ndarray
    spread: np.ndarray
    matrices: np.ndarray
    oriented: np.ndarray
    scores: np.ndarray
    best_score: np.ndarray
    group_ids: np.ndarray
    representative: np.ndarray
    labels: list = field(default_factory=list)

    def __len__(self):
        return len(self.votes)

    def take(self, selection):
        """The clusters where the boolean ``selection`` holds (``labels`` are dropped)."""
        return replace(self, labels=[], **{name: getattr(self, name)[selection] for name in (
            'xyz', 'votes', 'set_mask', 'size', 'spread', 'matrices', 'oriented', 'scores',
            'best_score', 'group_ids', 'representative')})


# ---------------------------------------------------------------------------------------- matching
def _canonical_order(xyz, set_index, scores, group_ids, matrices):
    """An order of the points that depends only on their data (position, then score, group and
    matrix); the set index breaks exact ties only. Constant keys are left out (lexsort is linear
    in the number of keys)."""
    keys = [set_index]
    if matrices is not None:
        keys += list(matrices.reshape(len(xyz), 16).T[::-1])
    keys += [group_ids, scores, xyz[:, 2], xyz[:, 1], xyz[:, 0]]
    return np.lexsort([k for k in keys if len(k) and k.min() != k.max()] or [np.zeros(len(xyz))])


def _rotation_angles(matrices_a, matrices_b, axis_mode):
    """Angles (degrees) between rotations, or between normals (third rows) in axis mode."""
    if axis_mode:
        cosine = np.einsum('ij,ij->i', matrices_a[:, 2, :3], matrices_b[:, 2, :3])
    else:
        trace = np.einsum('nij,nij->n', matrices_a[:, :3, :3], matrices_b[:, :3, :3])
        cosine = (trace - 1) / 2
    return np.degrees(np.arccos(np.clip(cosine, -1, 1)))


def _candidate_pairs(picks, offsets, radius, one_per_set):
    """Global index pairs (u, v) closer than ``radius``: across sets, or within the set."""
    trees = [cKDTree(p.xyz) for p in picks]
    pairs = []
    if one_per_set:
        for a in range(len(picks)):
            for b in range(a + 1, len(picks)):
                if len(picks[a]) and len(picks[b]):
                    found = trees[a].sparse_distance_matrix(trees[b], radius, output_type='ndarray')
                    pairs.append(np.stack([found['i'] + offsets[a], found['j'] + offsets[b]], 1))
    else:
        for a, tree in enumerate(trees):
            pairs.append(tree.query_pairs(radius, output_type='ndarray') + offsets[a])
    return np.concatenate(pairs).astype(np.int64) if pairs else np.zeros((0, 2), np.int64)


def _kruskal(edges, set_index, one_per_set, complete_linkage):
    """Constrained Kruskal over ``edges`` (already in processing order): ``(nodes, roots)``.

    A merge is refused when the clusters share an input set (``one_per_set``) or, with
    ``complete_linkage``, when some pair of their members is not itself a candidate pair.
    """
    nodes, local = np.unique(edges, return_inverse=True)
    local = local.reshape(-1, 2).tolist()
    parent = list(range(len(nodes)))
    masks = [1 << s for s in set_index[nodes].tolist()]
    members = [[i] for i in range(len(nodes))] if complete_linkage else None
    candidate = {(min(u, v), max(u, v)) for u, v in local} if complete_linkage else None
    for u, v in local:
        while parent[u] != u:  # find with path halving
            parent[u] = u = parent[parent[u]]
        while parent[v] != v:
            parent[v] = v = parent[parent[v]]
        if u == v or (one_per_set and masks[u] & masks[v]):
            continue
        if complete_linkage:
            if not all((min(a, b), max(a, b)) in candidate for a in members[u] for b in members[v]):
                continue
            members[u] += members[v]
        parent[v] = u
        masks[u] |= masks[v]
    roots = np.array(parent)
    while True:  # flatten: every node points at its root
        next_roots = roots[roots]
        if np.array_equal(next_roots, roots):
            return nodes, roots
        roots = next_roots


def _cluster_labels(xyz, set_index, edges, one_per_set, complete_linkage):
    """Cluster label of every point (indices in canonical order) from the candidate ``edges``."""
    count = len(xyz)
    if not len(edges):
        return np.arange(count)
    low, high = edges.min(1), edges.max(1)
    distance = np.linalg.norm(xyz[low] - xyz[high], axis=1)
    order = np.lexsort((high, low, distance))
    edges = np.stack([low[order], high[order]], 1)

    graph = coo_matrix((np.ones(len(edges)), (edges[:, 0], edges[:, 1])), shape=(count, count))
    _, component = connected_components(graph, directed=False)
    # A component whose points all come from different sets (and, for complete linkage, that is
    # a clique) is exactly what Kruskal would build: accept it without the sequential pass.
    sizes = np.bincount(component)
    simple = np.ones(len(sizes), bool)
    if one_per_set:
        n_sets = set_index.max() + 1
        distinct_sets = np.bincount(np.unique(component * n_sets + set_index) // n_sets, minlength=len(sizes))
        simple &= distinct_sets == sizes
    if complete_linkage:
        simple &= np.bincount(component[edges[:, 0]], minlength=len(sizes)) == sizes * (sizes - 1) // 2
    labels = component.copy()
    hard_edges = edges[~simple[component[edges[:, 0]]]]
    if len(hard_edges):
        nodes, roots = _kruskal(hard_edges, set_index, one_per_set, complete_linkage)
        labels[nodes] = len(sizes) + roots
    return np.unique(labels, return_inverse=True)[1]


def _first_per_label(labels, key=None):
    """Per label, the lowest (canonical) index among its points with the smallest integer ``key``."""
    if not len(labels):
        return np.zeros(0, np.int64)
    composite = labels if key is None else labels * (int(key.max()) + 1) + key
    order = np.argsort(composite, kind='stable')
    first = np.ones(len(order), bool)
    first[1:] = labels[order][1:] != labels[order][:-1]
    return order[first]


def _mean_rotations(labels, count, rotations, oriented, reference, axis_mode):
    """Consensus rotation per cluster from its oriented members (identity when none)."""
    result = np.tile(np.eye(3), (count, 1, 1))
    has = np.bincount(labels[oriented], minlength=count) > 0
    if axis_mode:
        normals = np.stack([np.bincount(labels[oriented], rotations[oriented, 2, a], count)
                            for a in range(3)], 1)
        length = np.linalg.norm(normals, axis=1)
        base = rotations[reference]  # in-plane angle of the lowest set's oriented member
        usable = length > 1e-9
        target = np.where(usable[:, None], normals / np.where(usable, length, 1)[:, None], base[:, 2])
        # R' = R Aᵀ with A the smallest rotation taking the reference normal onto the mean normal
        axis = np.cross(base[:, 2], target)
        sine = np.linalg.norm(axis, axis=1)
        angle = np.arctan2(sine, np.einsum('ij,ij->i', base[:, 2], target))
        rotvec = axis / np.where(sine > 1e-12, sine, 1)[:, None] * angle[:, None]
        align = Rotation.from_rotvec(rotvec).as_matrix()
        return np.where(has[:, None, None], base @ np.transpose(align, (0, 2, 1)), result)
    quats = Rotation.from_matrix(rotations[oriented]).as_quat()
    outer = (quats[:, :, None] * quats[:, None, :]).reshape(-1, 16)
    sums = np.stack([np.bincount(labels[oriented], outer[:, c], count) for c in range(16)], 1)
    _, vectors = np.linalg.eigh(sums[has].reshape(-1, 4, 4))
    result[has] = Rotation.from_quat(vectors[:, :, -1]).as_matrix()
    return result


def match(picks, radius, *, one_per_set=True, complete_linkage=False, angular_gate=None,
          axis_mode=False):
    """Cluster the picks of one tomogram (a list with one :class:`Picks` per input set).

    ``radius`` in Å: points farther apart never share a cluster. ``one_per_set`` (consensus) limits a
    cluster to one point per set; without it (duplicate removal) points of the same set merge.
    ``complete_linkage`` requires every pair in a cluster to be within the radius. ``angular_gate``
    (degrees) forbids pairing oriented picks whose rotations (normals in ``axis_mode``) differ more.
    """
    if not radius > 0:
        raise CryoSegInputError(f'the matching radius must be positive, got {radius}')
    if angular_gate is not None and not 0 < angular_gate <= 180:
        raise CryoSegInputError(f'the angular gate must be between 0 and 180 degrees, got {angular_gate}')
    n_sets = max(len(picks), 1)
    sizes = [len(p) for p in picks]
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    any_oriented = any(p.matrices is not None for p in picks)

    def joined(values, empty):
        return np.concatenate(values) if values else empty

    # every array below is in canonical order; `source` maps back to the input order
    set_index = np.repeat(np.arange(len(picks)), sizes)
    xyz = joined([p.xyz for p in picks], np.zeros((0, 3)))
    scores = joined([p.scores for p in picks], np.zeros(0))
    group_ids = joined([p.group_ids for p in picks], np.zeros(0, int))
    oriented = joined([np.full(len(p), p.matrices is not None) for p in picks], np.zeros(0, bool))
    matrices = joined([p.matrices if p.matrices is not None else np.tile(np.eye(4), (len(p), 1, 1))
                       for p in picks], np.zeros((0, 4, 4))) if any_oriented else None
    source = _canonical_order(xyz, set_index, scores, group_ids, matrices)
    position = np.empty_like(source)
    position[source] = np.arange(len(source))
    set_index, xyz, scores, group_ids, oriented = (a[source] for a in (set_index, xyz, scores, group_ids, oriented))
    matrices = matrices[source] if any_oriented else None

    edges = position[_candidate_pairs(picks, offsets, radius, one_per_set)]
    if angular_gate is not None and any_oriented and len(edges):
        both = oriented[edges[:, 0]] & oriented[edges[:, 1]]
        angle = _rotation_angles(matrices[edges[:, 0]], matrices[edges[:, 1]], axis_mode)
        edges = edges[~both | (angle <= angular_gate)]
    labels = _cluster_labels(xyz, set_index, edges, one_per_set, complete_linkage)

    # canonical cluster order: by mean position
    count = labels.max() + 1 if len(labels) else 0
    size = np.bincount(labels, minlength=count)
    mean = np.stack([np.bincount(labels, xyz[:, a], count) for a in range(3)], 1) / np.maximum(size, 1)[:, None]
    relabel = np.empty(count, np.int64)
    relabel[np.lexsort((mean[:, 2], mean[:, 1], mean[:, 0]))] = np.arange(count)
    labels = relabel[labels]
    size[relabel], mean[relabel] = size.copy(), mean.copy()

    spread = np.sqrt(np.bincount(labels, np.sum((xyz - mean[labels]) ** 2, 1), count) / np.maximum(size, 1))
    pairs = np.unique(labels * n_sets + set_index)  # distinct (cluster, set)
    votes = np.bincount(pairs // n_sets, minlength=count)
    set_mask = np.zeros(count, np.uint64)
    np.bitwise_or.at(set_mask, pairs // n_sets, np.left_shift(np.uint64(1), (pairs % n_sets).astype(np.uint64)))
    best = _first_per_label(labels, np.unique(-scores, return_inverse=True)[1])
    lowest_set = _first_per_label(labels, set_index)

    out_matrices = np.tile(np.eye(4), (count, 1, 1))
    has_orientation = np.bincount(labels[oriented], minlength=count) > 0
    if any_oriented:
        reference = _first_per_label(labels, (~oriented) * n_sets + set_index)
        out_matrices[:, :3, :3] = _mean_rotations(labels, count, matrices[:, :3, :3], oriented,
                                                  reference, axis_mode)
        oriented_size = np.maximum(np.bincount(labels[oriented], minlength=count), 1)
        for axis in range(3):
            out_matrices[:, axis, 3] = np.bincount(labels[oriented], matrices[oriented, axis, 3],
                                                   count) / oriented_size
    best_source = source[best]
    labels_in_input_order = labels[position]
    return Clusters(
        xyz=mean, votes=votes, set_mask=set_mask, size=size, spread=spread, matrices=out_matrices,
        oriented=has_orientation, scores=np.bincount(labels, scores, count) / np.maximum(size, 1),
        best_score=scores[best], group_ids=group_ids[lowest_set],
        representative=np.stack([set_index[best], best_source - offsets[set_index[best]]], 1),
        labels=[labels_in_input_order[offsets[i]:offsets[i + 1]] for i in range(len(picks))])


# ---------------------------------------------------------------------------------------- consensus
def resolve_consensus(k, n_sets):
    """The number of votes asked for: −1 means every set (AND), 1 any set (OR)."""
    if k == -1:
        return n_sets
    if not 1 <= k <= n_sets:
        raise CryoSegInputError(f'consensus must be -1 (all sets) or between 1 and the number of '
                                f'input sets ({n_sets}), got {k}')
    return k


def select(votes, k, n_sets, mode='ge'):
    """Boolean selection of clusters with ``votes >= k`` (mode 'ge') or ``votes == k`` ('eq')."""
    if mode not in MODES:
        raise CryoSegInputError(f"mode must be one of {MODES}, got {mode!r}")
    needed = resolve_consensus(k, n_sets)
    return votes >= needed if mode == 'ge' else votes == needed


@dataclass
class ConsensusResult:
    """All clusters per tomogram with the selection asked for."""
    clusters: dict  # {tsId: Clusters}
    n_sets: int
    k: int
    mode: str

    def selected(self):
        """``{tsId: Clusters}`` of the consensus (every tomogram, possibly empty)."""
        return {ts_id: c.take(select(c.votes, self.k, self.n_sets, self.mode))
                for ts_id, c in self.clusters.items()}

    def difference(self, set_index):
        """``{tsId: Clusters}`` of the points of set ``set_index`` that no other set confirms."""
        if not 0 <= set_index < self.n_sets:
            raise CryoSegInputError(f'there is no input set number {set_index + 1}')
        only = np.uint64(1) << np.uint64(set_index)
        return {ts_id: c.take(c.set_mask == only) for ts_id, c in self.clusters.items()}

    def jaccard(self):
        """``{tsId: |clusters supported by every set| / |clusters|}`` (NaN without clusters)."""
        return {ts_id: float(np.mean(c.votes == self.n_sets)) if len(c) else float('nan')
                for ts_id, c in self.clusters.items()}

    def vote_counts(self):
        """``{tsId: counts}`` where ``counts[v]`` is the number of clusters with v votes."""
        return {ts_id: np.bincount(c.votes, minlength=self.n_sets + 1)
                for ts_id, c in self.clusters.items()}


def consensus(sets, radius, k=-1, mode='ge', **match_options):
    """Consensus of pickings: ``sets`` is a list (one per input set) of ``{tsId: Picks}``.

    Tomograms are the union of the tsIds of all sets; a tomogram a set does not have counts as
    empty for that set. See :func:`match` for ``radius`` (Å) and the options.
    """
    if len(sets) < 2:
        raise CryoSegInputError('a consensus needs at least two pickings')
    if len(sets) > 64:
        raise CryoSegInputError('a consensus combines at most 64 pickings')
    select(np.zeros(0, int), k, len(sets), mode)  # validate before the work
    ts_ids = sorted(set().union(*(s.keys() for s in sets)))
    empty = Picks(np.zeros((0, 3)))
    clusters = {ts_id: match([s.get(ts_id, empty) for s in sets], radius, **match_options)
                for ts_id in ts_ids}
    return ConsensusResult(clusters, len(sets), k, mode)


def remove_duplicates(picks, radius, keep='best', **match_options):
    """Merge the picks of one set (one tomogram) closer than ``radius`` Å to each other.

    Complete linkage: every pair of points merged is within the radius, so a row of picks along a
    filament does not collapse into one. ``keep='best'`` keeps the highest-scoring pick of each group
    (``Clusters.representative``), ``'mean'`` the mean position and rotation.
    """
    if keep not in KEEP:
        raise CryoSegInputError(f"keep must be one of {KEEP}, got {keep!r}")
    match_options.setdefault('complete_linkage', True)
    return match([picks], radius, one_per_set=False, **match_options)


# ---------------------------------------------------------------------------------------- STAR files
@dataclass
class LoadedPicks:
    """Picks of one file: ``{tsId: Picks in Å}``, whether it has angles and the position convention
    it was read in (see :func:`cryoseg.core.formats.read_points`)."""
    picks: dict
    has_angles: bool
    convention: str


def read_star_picks(path, pixel_size=1.0, tomograms=None, file_format='auto'):
    """:class:`LoadedPicks` of a particle file: STAR in voxels (rlnCoordinateX/Y/Z, pixels of
    ``pixel_size`` Å) or RELION 5 centred Å (needs ``tomograms``: {name: TomogramGeometry}, whose pixel
    size then replaces ``pixel_size``), or any other format of :mod:`cryoseg.core.formats`. Rows without
    rlnTomoName belong to one tomogram named 'tomogram'; rlnAutopickFigureOfMerit is the score."""
    from .formats import read_points

    table = read_points(path, file_format, tomograms)
    names = np.array([name or 'tomogram' for name in table.names], dtype=object)
    sizes = np.array([tomograms[name].pixel_size if tomograms and name in (tomograms or {}) else pixel_size
                      for name in table.names], float)
    xyz = table.xyz * sizes[:, None]
    matrices = None
    if table.rotations is not None:
        matrices = np.tile(np.eye(4), (len(table), 1, 1))
        matrices[:, :3, :3] = table.rotations
    picks = {ts_id: Picks(xyz[names == ts_id], None if matrices is None else matrices[names == ts_id],
                          table.scores[names == ts_id])
             for ts_id in sorted(set(names))}
    return LoadedPicks(picks, table.rotations is not None, table.convention)


def write_star_clusters(path, clusters_by_ts, pixel_size=1.0, with_angles=False):
    """Write clusters as a voxel STAR table (:func:`cryoseg.core.formats.write_voxel_star`): positions in
    pixels of ``pixel_size`` Å, RELION angles when asked, cryosegVotes, cryosegSets (the 1-based numbers
    of the supporting inputs) and cryosegPicks (the number of picks merged)."""
    from .formats import PointTable, write_voxel_star

    names, xyz, rotations, scores, votes, sets, sizes = [], [], [], [], [], [], []
    for ts_id, clusters in clusters_by_ts.items():
        names += [ts_id] * len(clusters)
        scores += [float(s) for s in clusters.scores]
        xyz.append(clusters.xyz / pixel_size)
        rotations.append(clusters.matrices[:, :3, :3])
        votes += [int(v) for v in clusters.votes]
        sets += [','.join(str(bit + 1) for bit in range(64) if int(mask) >> bit & 1) for mask in clusters.set_mask]
        sizes += [int(s) for s in clusters.size]
    table = PointTable(names, np.concatenate(xyz) if xyz else np.zeros((0, 3)),
                       np.concatenate(rotations) if with_angles and rotations else
                       (np.zeros((0, 3, 3)) if with_angles else None), scores)
    write_voxel_star(path, table, {'cryosegVotes': votes, 'cryosegSets': sets, 'cryosegPicks': sizes})
