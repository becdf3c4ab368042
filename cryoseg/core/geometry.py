"""Geometries fitted to a few clicked points: spheres, rotated ellipsoids, membranes by z levels,
general surfaces and filaments (algorithms.md §3.5).

Every fitter returns a model that can produce dense surface points with outward unit normals (or, for
filaments, oriented frames) and a :class:`FitReport` (centre, radii/axes, rms distance of the clicked
points to the model, points used). A group that cannot determine its geometry raises
:class:`UnderdeterminedGeometryError` with a message saying what is missing. Positions are (x, y, z)
voxels; everything here is in voxels.
"""
from dataclasses import dataclass, field

import numpy as np
from scipy import interpolate
from scipy.optimize import least_squares
from scipy.spatial import ConvexHull, Delaunay, cKDTree
from scipy.spatial.transform import Rotation

from .checks import as_positions
from .errors import CryoSegInputError
from .orientation import matrix_from_normal, rotation_about_z
from .surface_sampling import fibonacci_sphere, mesh_area, sample_triangles


class GeometryError(CryoSegInputError):
    """The points of one geometry cannot be fitted; the message says why."""


class UnderdeterminedGeometryError(GeometryError):
    """Too few points, or points in a configuration that leaves the geometry undetermined."""


@dataclass
class FitReport:
    model: str
    method: str
    centre: tuple = None
    radii: tuple = None
    axes: tuple = None  # rows: unit axes, in the order of ``radii``
    rms: float = 0.0  # px, distance of the points used to the fitted geometry
    points_used: int = 0
    points_total: int = 0
    notes: list = field(default_factory=list)

    def as_dict(self):
        def plain(value):
            return None if value is None else np.round(np.asarray(value, float), 4).tolist()
        return dict(model=self.model, method=self.method, centre=plain(self.centre), radii=plain(self.radii),
                    axes=plain(self.axes), rms=round(float(self.rms), 4), points_used=int(self.points_used),
                    points_total=int(self.points_total), notes=list(self.notes))


# --------------------------------------------------------------------------- helpers
def _finite_points(points, what):
    try:
        return as_positions(points, f'{what}: the points')
    except CryoSegInputError as err:
        raise GeometryError(str(err)) from None


def _as_points(points, minimum, what):
    points = np.unique(_finite_points(points, what), axis=0)
    if len(points) < minimum:
        raise UnderdeterminedGeometryError(
            f'{what} needs at least {minimum} distinct points, this group has {len(points)}')
    return points


def principal_axes(points):
    """Centroid, singular values (descending) and principal axes (rows) of a point cloud."""
    centroid = points.mean(axis=0)
    _, singular, axes = np.linalg.svd(points - centroid, full_matrices=False)
    return centroid, singular, axes


def _robust_inliers(residuals, floor=1.0):
    """Points whose residual is below 3 robust standard deviations (never below ``floor`` px)."""
    scale = 1.4826 * np.median(np.abs(residuals))
    return np.abs(residuals) <= max(3 * scale, floor)


# --------------------------------------------------------------------------- sphere
@dataclass
class SphereModel:
    centre: np.ndarray
    radius: float

    def distances(self, points):
        return np.linalg.norm(np.asarray(points, float) - self.centre, axis=1) - self.radius

    def normals_at(self, points):
        offsets = np.asarray(points, float) - self.centre
        return offsets / np.linalg.norm(offsets, axis=1, keepdims=True)


def _algebraic_sphere(points):
    design = np.column_stack([2 * points, np.ones(len(points))])
    solution, *_ = np.linalg.lstsq(design, np.sum(points ** 2, axis=1), rcond=None)
    centre = solution[:3]
    return centre, float(np.sqrt(max(solution[3] + centre @ centre, 1e-12)))


def fit_sphere(points, robust=True):
    """Sphere through ≥ 4 non-coplanar points: algebraic fit, then (``robust``) outlier rejection and
    a soft-L1 geometric least-squares refinement of ‖p − c‖ − R. Returns ``(SphereModel, FitReport)``."""
    points = _as_points(points, 4, 'a sphere')
    _, singular, _ = principal_axes(points)
    if singular[2] < 1e-3 * singular[0]:
        raise UnderdeterminedGeometryError(
            'the points of this sphere are coplanar (e.g. all on one slice): click the membrane on '
            'at least two slices')
    centre, radius = _algebraic_sphere(points)
    used = np.ones(len(points), bool)
    if robust:
        for _ in range(3):
            used = _robust_inliers(np.linalg.norm(points - centre, axis=1) - radius)
            if used.sum() < 4:
                used[:] = True
                break
            centre, radius = _algebraic_sphere(points[used])
        scale = max(1.4826 * np.median(np.abs(np.linalg.norm(points[used] - centre, axis=1) - radius)), 0.5)
        result = least_squares(lambda q: np.linalg.norm(points - q[:3], axis=1) - q[3],
                               np.r_[centre, radius], loss='soft_l1', f_scale=scale)
        centre, radius = result.x[:3], abs(result.x[3])
        used = _robust_inliers(np.linalg.norm(points - centre, axis=1) - radius)
    model = SphereModel(np.asarray(centre, float), float(radius))
    residuals = model.distances(points[used])
    return model, FitReport('sphere', 'algebraic + robust least squares' if robust else 'algebraic',
                            centre=model.centre, radii=(radius,) * 3, axes=np.eye(3),
                            rms=float(np.sqrt(np.mean(residuals ** 2))), points_used=int(used.sum()),
                            points_total=len(points))


# --------------------------------------------------------------------------- ellipsoid
@dataclass
class EllipsoidModel:
    centre: np.ndarray
    radii: np.ndarray  # descending
    axes: np.ndarray  # rows: unit axes in the lab frame, right-handed

    def body(self, points):
        return (np.asarray(points, float) - self.centre) @ self.axes.T

    def distances(self, points):
        """Signed distance along the ray from the centre (exact for spheres, close for ellipsoids)."""
        body = self.body(points)
        scaled = np.linalg.norm(body / self.radii, axis=1)
        return (scaled - 1) * np.linalg.norm(body, axis=1) / np.maximum(scaled, 1e-12)

    def normals_at(self, points):
        gradient = (self.body(points) / self.radii ** 2) @ self.axes
        return gradient / np.linalg.norm(gradient, axis=1, keepdims=True)

    def area(self):
        a, b, c = self.radii
        p = 1.6075  # Knud Thomsen's approximation, within 1.1 %
        return 4 * np.pi * (((a * b) ** p + (a * c) ** p + (b * c) ** p) / 3) ** (1 / p)

    def dense_points(self, count, rng):
        """Area-uniform random points with outward normals: uniform sphere directions stretched by the
        radii, kept with probability proportional to the local area stretch."""
        a, b, c = self.radii
        points, total = [], 0
        stretch_max = max(a * b, a * c, b * c)
        while total < count:
            directions = rng.standard_normal((2 * count, 3))
            directions /= np.linalg.norm(directions, axis=1, keepdims=True)
            stretch = np.sqrt((b * c * directions[:, 0]) ** 2 + (a * c * directions[:, 1]) ** 2
                              + (a * b * directions[:, 2]) ** 2)
            kept = directions[rng.random(len(directions)) * stretch_max < stretch]
            points.append(self.centre + (kept * self.radii) @ self.axes)
            total += len(kept)
        points = np.concatenate(points)[:count]
        return points, self.normals_at(points)


def _quadric_to_ellipsoid(quadric, linear):
    """Centre, radii and axes of xᵀQx + 2bᵀx = 1, or None when it is not an ellipsoid."""
    try:
        centre = -np.linalg.solve(quadric, linear)
    except np.linalg.LinAlgError:
        return None
    scale = 1 + centre @ quadric @ centre
    eigenvalues, eigenvectors = np.linalg.eigh(quadric / scale)
    if not np.all(eigenvalues > 0):
        return None
    return centre, 1 / np.sqrt(eigenvalues), eigenvectors.T


def _algebraic_ellipsoid(points):
    """Least-squares quadric fits, most general first: rotated ellipsoid (9 parameters), then
    axis-aligned (6). Returns (centre, radii, axes, method) or None."""
    mean = points.mean(axis=0)
    scale = np.abs(points - mean).max()
    x, y, z = ((points - mean) / scale).T
    one = np.ones(len(points))
    design = np.column_stack([x * x, y * y, z * z, 2 * x * y, 2 * x * z, 2 * y * z, 2 * x, 2 * y, 2 * z])
    singular = np.linalg.svd(design, compute_uv=False)
    if singular[-1] > 1e-9 * singular[0]:
        a, b, c, d, e, f, g, h, i = np.linalg.lstsq(design, one, rcond=None)[0]
        found = _quadric_to_ellipsoid(np.array([[a, d, e], [d, b, f], [e, f, c]]), np.array([g, h, i]))
        if found is not None:
            return mean + scale * found[0], scale * found[1], found[2], 'rotated quadric'
    aligned = design[:, [0, 1, 2, 6, 7, 8]]
    a, b, c, g, h, i = np.linalg.lstsq(aligned, one, rcond=None)[0]
    found = _quadric_to_ellipsoid(np.diag([a, b, c]), np.array([g, h, i]))
    if found is not None:
        return mean + scale * found[0], scale * found[1], found[2], 'axis-aligned quadric'
    return None


def _ordered_axes(radii, axes):
    order = np.argsort(radii)[::-1]
    radii, axes = np.asarray(radii)[order], np.asarray(axes)[order]
    if np.linalg.det(axes) < 0:
        axes = axes.copy()
        axes[2] *= -1
    return radii, axes


def fit_ellipsoid(points, robust=True):
    """Ellipsoid with rotated axes through ≥ 9 points.

    Algebraic quadric fit with proper matrix products and ``eigh`` (all eigenvalues must be positive),
    falling back to an axis-aligned quadric and then to a sphere; then (``robust``) a soft-L1 geometric
    refinement of centre, radii and rotation. Returns ``(EllipsoidModel, FitReport)``; radii descending.
    """
    points = _as_points(points, 9, 'an ellipsoid')
    _, singular, _ = principal_axes(points)
    if singular[2] < 1e-3 * singular[0]:
        raise UnderdeterminedGeometryError(
            'the points of this ellipsoid are coplanar: click the membrane on several slices')
    notes = []
    found = _algebraic_ellipsoid(points)
    if found is None:
        sphere, _ = fit_sphere(points, robust)
        centre, radii, axes, method = sphere.centre, np.full(3, sphere.radius), np.eye(3), 'sphere'
        notes.append('the points do not describe an ellipsoid; fitted a sphere instead')
    else:
        centre, radii, axes, method = found
    radii, axes = _ordered_axes(radii, axes)
    model = EllipsoidModel(np.asarray(centre, float), radii, axes)
    used = np.ones(len(points), bool)
    if robust:
        initial = _ordered_axes(radii, axes)

        def build(q):
            rotation = Rotation.from_rotvec(q[6:]).as_matrix()
            return EllipsoidModel(q[:3], np.exp(q[3:6]), initial[1] @ rotation.T)

        used = _robust_inliers(model.distances(points))
        scale = max(1.4826 * np.median(np.abs(model.distances(points[used]))), 0.5)
        result = least_squares(lambda q: build(q).distances(points[used]),
                               np.r_[centre, np.log(radii), np.zeros(3)], loss='soft_l1', f_scale=scale)
        refined = build(result.x)
        radii, axes = _ordered_axes(refined.radii, refined.axes)
        model = EllipsoidModel(refined.centre, radii, axes)
        used = _robust_inliers(model.distances(points))
        method += ' + robust least squares'
    residuals = model.distances(points[used])
    return model, FitReport('ellipsoid', method, centre=model.centre, radii=model.radii, axes=model.axes,
                            rms=float(np.sqrt(np.mean(residuals ** 2))), points_used=int(used.sum()),
                            points_total=len(points), notes=notes)


# --------------------------------------------------------------------------- triangle meshes
@dataclass
class MeshModel:
    vertices: np.ndarray
    faces: np.ndarray
    vertex_normals: np.ndarray

    def area(self):
        return mesh_area(self.vertices, self.faces)

    def dense_points(self, count, rng):
        return sample_triangles(self.vertices, self.faces, count, rng, self.vertex_normals)

    def distances(self, points):
        """Distance to the nearest of a dense sample of the surface (≈ distance to the mesh)."""
        dense, _ = self.dense_points(min(max(20 * len(self.faces), 5000), 400000), np.random.default_rng(0))
        return cKDTree(dense).query(np.asarray(points, float))[0]

    def flipped(self):
        return MeshModel(self.vertices, self.faces[:, ::-1].copy(), -self.vertex_normals)


def vertex_normals(vertices, faces):
    """Area-weighted average of the facet normals (winding order) around each vertex."""
    a, b, c = (vertices[faces[:, k]] for k in range(3))
    facet = np.cross(b - a, c - a)
    normals = np.zeros_like(vertices)
    for k in range(3):
        np.add.at(normals, faces[:, k], facet)
    lengths = np.linalg.norm(normals, axis=1, keepdims=True)
    return normals / np.where(lengths > 0, lengths, 1)


def subdivide(mesh, iterations, max_triangles):
    """Split every triangle in four, ``iterations`` times while the count stays ≤ ``max_triangles``.

    New edge midpoints are lifted along the interpolated normal by ((p1 − p0)·(n1 − n0))/8, the
    midpoint of the cubic Hermite edge through the two vertex normals, so refinement rounds a coarse
    mesh towards the smooth surface instead of only adding flat facets.
    """
    vertices, faces, normals = mesh.vertices, mesh.faces, mesh.vertex_normals
    for _ in range(iterations):
        if 4 * len(faces) > max_triangles:
            break
        edges = np.sort(np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]), axis=1)
        unique, inverse = np.unique(edges, axis=0, return_inverse=True)
        inverse = inverse.ravel()
        p0, p1 = vertices[unique[:, 0]], vertices[unique[:, 1]]
        n0, n1 = normals[unique[:, 0]], normals[unique[:, 1]]
        mid_normals = n0 + n1
        mid_normals /= np.maximum(np.linalg.norm(mid_normals, axis=1, keepdims=True), 1e-12)
        lift = np.einsum('ij,ij->i', p1 - p0, n1 - n0) / 8
        midpoints = (p0 + p1) / 2 + lift[:, None] * mid_normals
        first = len(vertices)
        count = len(faces)
        m01, m12, m20 = (first + inverse[k * count:(k + 1) * count] for k in range(3))
        a, b, c = faces.T
        faces = np.concatenate([np.column_stack(t) for t in
                                ((a, m01, m20), (m01, b, m12), (m20, m12, c), (m01, m12, m20))])
        vertices = np.concatenate([vertices, midpoints])
        normals = np.concatenate([normals, mid_normals])
    return MeshModel(vertices, faces, normals)


def orient_mesh(mesh, inside=None):
    """Make normals point away from ``inside`` (area-weighted majority over the surface, so one
    consistently wound mesh flips as a whole). Without ``inside``, the mean normal is made to point
    along the positive direction of its largest component."""
    a, b, c = (mesh.vertices[mesh.faces[:, k]] for k in range(3))
    facet = np.cross(b - a, c - a)  # length = twice the area: area weighting for free
    if inside is None:
        mean = facet.sum(axis=0)
        vote = mean[np.argmax(np.abs(mean))]
    else:
        vote = np.einsum('ij,ij->', facet, (a + b + c) / 3 - np.asarray(inside, float))
    return mesh if vote >= 0 else mesh.flipped()


# --------------------------------------------------------------------------- membrane by levels
def z_levels(points, tolerance):
    order = np.argsort(points[:, 2], kind='stable')
    breaks = np.flatnonzero(np.diff(points[order, 2]) > tolerance) + 1
    return [np.sort(chunk) for chunk in np.split(order, breaks)]


def _circle_centre(xy):
    design = np.column_stack([2 * xy, np.ones(len(xy))])
    return np.linalg.lstsq(design, np.sum(xy ** 2, axis=1), rcond=None)[0][:2]


def _is_closed_contour(xy):
    """Points form a closed contour when they go around the centre of their best circle (largest
    angular gap < 150°)."""
    if len(xy) < 4:
        return False
    centre = _circle_centre(xy)
    angles = np.sort(np.arctan2(xy[:, 1] - centre[1], xy[:, 0] - centre[0]))
    gaps = np.diff(np.r_[angles, angles[0] + 2 * np.pi])
    return gaps.max() < np.radians(150)


def _arc_resample(dense, count, closed):
    """``count`` points evenly spaced by arc length along a dense polyline."""
    if closed:
        dense = np.vstack([dense, dense[:1]])
    arc = np.r_[0, np.cumsum(np.linalg.norm(np.diff(dense, axis=0), axis=1))]
    targets = np.linspace(0, arc[-1], count, endpoint=not closed)
    return np.column_stack([np.interp(targets, arc, dense[:, k]) for k in range(dense.shape[1])])


def _closed_contour(xy, count, smoothing):
    """Closed contour as a periodic spline of the radius r(θ) about the best-circle centre: robust to
    uneven clicks (a gap in the clicks keeps the local curvature instead of cutting the corner).
    Starts at θ = 0 and runs counter-clockwise, so the contours of all levels line up."""
    centre = _circle_centre(xy)
    theta = np.arctan2(xy[:, 1] - centre[1], xy[:, 0] - centre[0])
    radius = np.linalg.norm(xy - centre, axis=1)
    order = np.argsort(theta)
    theta, radius = theta[order], radius[order]
    knots, values = np.r_[theta, theta[0] + 2 * np.pi], np.r_[radius, radius[0]]
    if smoothing > 0 and len(xy) > 3:
        tck = interpolate.splrep(knots, values, per=1, s=smoothing ** 2 * len(xy), quiet=2)
        curve = lambda t: interpolate.splev((t - theta[0]) % (2 * np.pi) + theta[0], tck)  # noqa: E731
    else:
        curve = interpolate.CubicSpline(knots, values, bc_type='periodic')
    dense_theta = np.linspace(0, 2 * np.pi, 40 * count, endpoint=False)
    dense = centre + curve(dense_theta)[:, None] * np.column_stack([np.cos(dense_theta), np.sin(dense_theta)])
    return _arc_resample(dense, count, closed=True), radius - curve(theta)


def _open_contour(xy, count, smoothing, keep_order, direction):
    """Open contour through the points ordered along ``direction`` (or in click order)."""
    projection = xy @ direction
    if not keep_order:
        xy = xy[np.argsort(projection)]
    elif projection[-1] < projection[0]:
        xy = xy[::-1]
    try:
        tck, _ = interpolate.splprep(xy.T, k=min(3, len(xy) - 1), s=smoothing ** 2 * len(xy), quiet=2)
        dense = np.column_stack(interpolate.splev(np.linspace(0, 1, 40 * count + 1), tck))
    except (ValueError, TypeError):  # too few points for a spline of this degree: polyline
        dense = xy
    return _arc_resample(dense, count, closed=False), cKDTree(dense).query(xy)[0]


def fit_membrane_levels(points, control_interval=5.0, inside=None, level_tolerance=1.0,
                        keep_order=False, smoothing=1.0, subdivision=0, max_triangles=100000):
    """Triangulated membrane lofted through points clicked on several z slices (Dynamo's
    membraneByLevels).

    Points are grouped into levels by z (gaps larger than ``level_tolerance`` px separate levels).
    A level whose points go around a centre becomes a closed contour (periodic spline of the radius
    about the centre, so the click order does not matter); otherwise an open contour ordered along
    the main in-plane direction (``keep_order`` keeps the click order, for folded membranes).
    ``smoothing`` (expected click scatter, px) turns interpolation into smoothing splines. Contours
    are resampled by arc length every ``control_interval`` px and neighbouring levels are joined by
    triangles; ``subdivision`` rounds of smooth refinement follow, never exceeding ``max_triangles``.
    Closed membranes (tubes) get normals away from their axis, or towards it when the ``inside``
    marker lies outside the tube; open membranes get normals away from ``inside``.
    """
    points = _as_points(points, 4, 'a membrane by levels')
    levels = [points[index] for index in z_levels(points, level_tolerance)]
    skipped = sum(1 for level in levels if len(level) < 2)
    levels = [level for level in levels if len(level) >= 2]
    if len(levels) < 2:
        raise UnderdeterminedGeometryError(
            f'a membrane by levels needs at least 2 points on each of at least 2 z levels; found '
            f'{len(levels)} usable level(s) (levels are separated by more than {level_tolerance} px in z)')
    closed = _is_closed_contour(np.concatenate(levels)[:, :2])  # pooled: one sparse level cannot open it
    direction = principal_axes(points[:, :2])[2][0]
    lengths = [np.ptp(level[:, :2] @ direction) if not closed else
               2 * np.pi * np.linalg.norm(level[:, :2] - _circle_centre(level[:, :2]), axis=1).mean()
               for level in levels]
    count = max(int(np.ceil(max(lengths) / control_interval)) + (0 if closed else 1), 8 if closed else 2)
    count = max(min(count, max_triangles // (2 * (len(levels) - 1))), 3 if closed else 2)
    rings, residuals = [], []
    for level in levels:
        if closed:
            contour, residual = _closed_contour(level[:, :2], count, smoothing)
        else:
            contour, residual = _open_contour(level[:, :2], count, smoothing, keep_order, direction)
        rings.append(np.column_stack([contour, np.full(len(contour), level[:, 2].mean())]))
        residuals.append(residual)
    vertices = np.concatenate(rings)
    faces = _loft_faces(len(rings), count, closed)
    mesh = MeshModel(vertices, faces, vertex_normals(vertices, faces))
    if closed:  # a tube: outward from its axis, inward if the marker was put outside it
        mesh = orient_mesh(mesh, points.mean(axis=0))
        if inside is not None and not _inside_tube(inside, rings):
            mesh = mesh.flipped()
    else:
        mesh = orient_mesh(mesh, inside)
    mesh = subdivide(mesh, subdivision, max_triangles)
    residuals = np.concatenate(residuals)
    notes = [f'{len(levels)} z levels, {"closed" if closed else "open"} contours, {len(mesh.faces)} triangles']
    if skipped:
        notes.append(f'{skipped} level(s) with a single point ignored')
    return mesh, FitReport('membraneByLevels', 'lofted splines', centre=inside,
                           rms=float(np.sqrt(np.mean(residuals ** 2))), points_used=int(sum(map(len, levels))),
                           points_total=len(points), notes=notes)


def _inside_polygon(point_xy, polygon):
    """Even-odd rule: is the point inside the closed polygon (rows x, y)?"""
    x, y = point_xy
    x0, y0 = polygon.T
    x1, y1 = np.roll(polygon, -1, axis=0).T
    crosses = (y0 > y) != (y1 > y)
    with np.errstate(divide='ignore', invalid='ignore'):
        at_x = x0 + (y - y0) * (x1 - x0) / (y1 - y0)
    return bool(np.sum(crosses & (x < at_x)) % 2)


def _inside_tube(point, rings):
    """Is the point inside the closed contour of the level nearest to it in z?"""
    nearest = min(rings, key=lambda ring: abs(ring[0, 2] - point[2]))
    return _inside_polygon(np.asarray(point, float)[:2], nearest[:, :2])


def _loft_faces(level_count, count, closed):
    faces = []
    columns = count if closed else count - 1
    for level in range(level_count - 1):
        for i in range(columns):
            j = (i + 1) % count
            a, b = level * count + i, level * count + j
            c, d = a + count, b + count
            faces += [(a, b, d), (a, d, c)]
    return np.asarray(faces, int)


# --------------------------------------------------------------------------- general surface
def fit_general_surface(points, control_interval=5.0, inside=None, smoothing=1.0, subdivision=0,
                        max_triangles=100000):
    """Smooth surface through scattered points.

    Closed blobs (points all around their centre) become a radial function r(direction) interpolated
    by thin-plate splines on the unit sphere; open patches a thin-plate height field over their best
    plane (PCA frame), triangulated inside the convex hull of the points. Normals point away from
    ``inside``; closed blobs point outward, or inward when the ``inside`` marker lies outside them.
    """
    points = _as_points(points, 5, 'a general surface')
    centroid, singular, axes = principal_axes(points)
    if singular[1] < 1e-3 * singular[0]:
        raise UnderdeterminedGeometryError('the points of this surface lie on a line: a surface needs '
                                           'points spread in two directions')
    directions = points - centroid
    directions /= np.maximum(np.linalg.norm(directions, axis=1, keepdims=True), 1e-12)
    surrounded = len(points) >= 10 and singular[2] > 0.35 * singular[0] and \
        np.linalg.norm(directions.mean(axis=0)) < 0.35
    smooth = smoothing ** 2 * len(points)
    if surrounded:
        radii = np.linalg.norm(points - centroid, axis=1)
        spline = interpolate.RBFInterpolator(directions, radii, kernel='thin_plate_spline', smoothing=smooth)
        count = int(np.clip(4 * np.pi * radii.mean() ** 2 / (0.433 * control_interval ** 2), 50,
                            max_triangles // 2))
        unit, faces = unit_sphere_mesh(count)
        vertices = centroid + unit * spline(unit)[:, None]
        residuals = radii - spline(directions)
        # outward from the centre, inward if the marker was put outside the blob
        marker_outside = inside is not None and _outside_radial(inside, centroid, spline)
        inside = centroid
        method = 'radial thin-plate spline'
    else:
        frame = points @ axes.T - centroid @ axes.T
        spline = interpolate.RBFInterpolator(frame[:, :2], frame[:, 2], kernel='thin_plate_spline',
                                             smoothing=smooth)
        low, high = frame[:, :2].min(axis=0), frame[:, :2].max(axis=0)
        steps = np.maximum(np.ceil((high - low) / control_interval).astype(int), 1)
        while 2 * steps.prod() > max_triangles:
            steps = np.maximum(steps // 2, 1)
        gu, gv = np.meshgrid(*(np.linspace(low[k], high[k], steps[k] + 1) for k in range(2)), indexing='ij')
        grid = np.column_stack([gu.ravel(), gv.ravel()])
        cells = []
        width = steps[1] + 1
        for i in range(steps[0]):
            for j in range(steps[1]):
                a = i * width + j
                cells += [(a, a + width, a + width + 1), (a, a + width + 1, a + 1)]
        faces = np.asarray(cells, int)
        hull = Delaunay(frame[:, :2])
        centres = grid[faces].mean(axis=1)
        faces = faces[hull.find_simplex(centres) >= 0]
        if len(faces) == 0:
            raise UnderdeterminedGeometryError('the points of this surface enclose no area')
        heights = spline(grid)
        vertices = centroid + grid[:, :1] * axes[0] + grid[:, 1:] * axes[1] + heights[:, None] * axes[2]
        residuals = frame[:, 2] - spline(frame[:, :2])
        method = 'thin-plate height field'
    mesh = orient_mesh(MeshModel(vertices, faces, vertex_normals(vertices, faces)), inside)
    if surrounded and marker_outside:
        mesh = mesh.flipped()
    mesh = subdivide(mesh, subdivision, max_triangles)
    return mesh, FitReport('general', method, centre=None if inside is None else np.asarray(inside, float),
                           rms=float(np.sqrt(np.mean(residuals ** 2))), points_used=len(points),
                           points_total=len(points), notes=[f'{len(mesh.faces)} triangles'])


def unit_sphere_mesh(count):
    """``count`` Fibonacci directions and the outward-wound triangles of their convex hull."""
    unit = fibonacci_sphere(count)
    faces = ConvexHull(unit).simplices
    a, b, c = (unit[faces[:, k]] for k in range(3))
    inward = np.einsum('ij,ij->i', np.cross(b - a, c - a), a) < 0  # hull facets come unoriented
    faces[inward] = faces[inward][:, ::-1]
    return unit, faces


def _outside_radial(point, centre, radius_of):
    """Is the point farther from ``centre`` than the radial surface ``radius_of(direction)``?"""
    offset = np.asarray(point, float) - centre
    distance = np.linalg.norm(offset)
    return distance > 0 and distance > radius_of((offset / distance)[None])[0]


# --------------------------------------------------------------------------- filaments
@dataclass
class FilamentPath:
    """Smooth path with arc-length parametrisation and rotation-minimising frames."""
    points: np.ndarray  # dense samples along the path
    arc: np.ndarray  # arc length of each dense sample
    frames: np.ndarray  # (n, 3, 3) rows: u, v, tangent

    @property
    def length(self):
        return float(self.arc[-1])

    def at(self, arc_positions):
        """Positions and frames (rows u, v, tangent) at arc lengths (px from the first point)."""
        arc_positions = np.clip(np.asarray(arc_positions, float), 0, self.length)
        positions = np.column_stack([np.interp(arc_positions, self.arc, self.points[:, k]) for k in range(3)])
        nearest = np.clip(np.searchsorted(self.arc, arc_positions), 0, len(self.arc) - 1)
        return positions, self.frames[nearest]


def _rotation_minimising_frames(points, first_frame):
    """Double-reflection rotation-minimising frames (Wang et al. 2008) along a dense polyline."""
    tangents = np.gradient(points, axis=0)
    tangents /= np.linalg.norm(tangents, axis=1, keepdims=True)
    frames = np.empty((len(points), 3, 3))
    u = first_frame[0]
    for i in range(len(points)):
        if i:
            step = points[i] - points[i - 1]
            c1 = step @ step
            u_left = u - 2 * (step @ u) / c1 * step
            t_left = tangents[i - 1] - 2 * (step @ tangents[i - 1]) / c1 * step
            second = tangents[i] - t_left
            c2 = second @ second
            u = u_left - 2 * (second @ u_left) / c2 * second if c2 > 1e-18 else u_left
            u -= (u @ tangents[i]) * tangents[i]
            u /= np.linalg.norm(u)
        frames[i] = [u, np.cross(tangents[i], u), tangents[i]]
    return frames


def order_along_path(points):
    """Indices that put clicked path points in order along the filament, whatever order they were
    clicked in: the shortest polyline among the click order, the order of the projections on the
    principal axis and nearest-neighbour chains started at either end of that axis."""
    points = np.asarray(points, float)
    if len(points) < 3:
        return np.arange(len(points))
    along = (points - points.mean(axis=0)) @ principal_axes(points)[2][0]
    candidates = [np.arange(len(points)), np.argsort(along, kind='stable')]
    for start in (int(np.argmin(along)), int(np.argmax(along))):
        chain, left = [start], set(range(len(points))) - {start}
        while left:
            rest = np.fromiter(left, int)
            chain.append(int(rest[np.argmin(np.linalg.norm(points[rest] - points[chain[-1]], axis=1))]))
            left.discard(chain[-1])
        candidates.append(np.asarray(chain))
    lengths = [np.linalg.norm(np.diff(points[order], axis=0), axis=1).sum() for order in candidates]
    return candidates[int(np.argmin(lengths))]


STIFFNESS_GRID = np.logspace(-6, 6, 37)  # penalty weights relative to the data term, then a straight line


@dataclass
class PenalisedCurve:
    """A 3-D curve x(s), s in [0, 1], fitted by a P-spline (cubic B-splines, second-difference penalty)."""
    knots: np.ndarray
    coefficients: np.ndarray  # (basis, 3)
    stiffness: float  # chosen penalty weight; inf = straight line, 0 = interpolation
    degree: int = 3

    def __call__(self, s):
        return interpolate.BSpline(self.knots, self.coefficients, self.degree)(np.asarray(s, float))


def _pspline_basis(s, count):
    # equally spaced knots running past both ends: the penalty's null space is then exactly the lines
    step = 1.0 / (count - 3)
    outside = step * np.arange(1, 4)
    knots = np.r_[-outside[::-1], np.linspace(0, 1, count - 2), 1 + outside]  # exactly 0 and 1 at the ends
    return interpolate.BSpline.design_matrix(np.clip(s, 0, 1), knots, 3).toarray(), knots


def fit_penalised_curve(s, points, scatter=0.0, weights=None, basis_count=None):
    """Smooth 3-D curve through ``points`` at parameters ``s`` (0…1) whose stiffness is chosen by
    generalised cross-validation, never bending more than the ``scatter`` (px rms per axis) allows.

    A P-spline's second-difference penalty leaves straight lines free, so the stiffest fit is the
    least-squares line: with noisy clicks the path does not bend to the last click. Among the penalty
    weights whose residual scatter is at least ``scatter``, the stiffest one whose cross-validation
    error is within 30 % of the best is kept (generalised cross-validation, which unlike leave-one-out
    does not let the extrapolated end clicks decide); ``scatter`` 0 passes through the points.
    ``basis_count``: number of B-splines (default: two more than the points, at most 60). Returns a
    :class:`PenalisedCurve`.

    References: Eilers & Marx (1996) Flexible smoothing with B-splines and penalties, Stat. Sci. 11:89.

    >>> s = np.linspace(0, 1, 6)
    >>> curve = fit_penalised_curve(s, np.column_stack([100 * s, 2 * s, 0 * s]), scatter=1.0)
    >>> bool(np.isinf(curve.stiffness))
    True
    """
    s, points = np.asarray(s, float), np.asarray(points, float)
    count = len(points)
    if scatter <= 0:  # through the points: not-a-knot interpolation, no end condition bends the ends
        spline = interpolate.make_interp_spline(s, points, k=min(3, count - 1))
        return PenalisedCurve(spline.t, spline.c, 0.0, spline.k)
    weights = np.ones(count) if weights is None else np.asarray(weights, float)
    basis_count = int(np.clip(basis_count or count + 2, 6, 60))
    basis, knots = _pspline_basis(s, basis_count)
    difference = np.diff(np.eye(basis_count), 2, axis=0)
    normal = basis.T @ (weights[:, None] * basis)
    penalty = difference.T @ difference
    scale = np.trace(normal) / np.trace(penalty)
    line_basis = np.column_stack([np.ones(count), s])
    fits = []
    for stiffness in list(STIFFNESS_GRID) + [np.inf]:
        if np.isinf(stiffness):
            design = line_basis
            solve = np.linalg.pinv(design.T @ (weights[:, None] * design)) @ (design.T * weights)
        else:
            design = basis
            solve = np.linalg.solve(normal + stiffness * scale * penalty + 1e-9 * scale * np.eye(basis_count),
                                    basis.T * weights)
        hat = design @ solve
        residuals = points - hat @ points
        freedom = max(count - np.trace(hat), 1e-9)
        squares = np.sum(weights[:, None] * residuals ** 2) / weights.mean()
        fits.append((stiffness, count * squares / freedom ** 2, np.sqrt(squares / (3 * freedom)), solve))
    allowed = [fit for fit in fits if fit[2] >= scatter] or fits[-1:]
    best = min(fit[1] for fit in allowed)
    stiffness, _, _, solve = [fit for fit in allowed if fit[1] <= 1.3 * best + 1e-12][-1]
    if np.isinf(stiffness):  # a line in the B-spline basis: its coefficients are the line at the Greville abscissae
        greville = np.convolve(knots[1:-1], np.ones(3) / 3, mode='valid')
        line = solve @ points
        coefficients = line[0] + np.outer(greville, line[1])
    else:
        coefficients = solve @ points
    return PenalisedCurve(knots, coefficients, float(stiffness))


def fit_filament(points, smoothing=1.0, step=0.25):
    """Path through ≥ 2 clicked points of a filament, in any click order, parametrised by arc length
    (``step`` px samples).

    The clicks are ordered along the filament (:func:`order_along_path`) and fitted by a penalised
    spline (:func:`fit_penalised_curve`) whose stiffness comes from cross-validation, down to a
    straight line, and never follows the clicks closer than ``smoothing`` (expected click scatter, px);
    the clicks are then re-parametrised by their position along that curve and fitted once more
    (a principal-curve step). The report's rms is the distance of the clicks to the path. The first
    frame's u axis is the particle x-axis of Dynamo angles with narot = 0 for the starting tangent, so
    on a straight filament the in-plane angle of subunit i is exactly i × twist.
    """
    raw = _finite_points(points, 'a filament')
    _, first = np.unique(raw, axis=0, return_index=True)
    points = raw[np.sort(first)]
    if len(points) < 2:
        raise UnderdeterminedGeometryError(f'a filament needs at least 2 distinct path points, '
                                           f'this group has {len(points)}')
    points = points[order_along_path(points)]
    chord = np.r_[0, np.cumsum(np.linalg.norm(np.diff(points, axis=0), axis=1))]
    s = chord / chord[-1]
    curve = fit_penalised_curve(s, points, smoothing)
    fine = np.linspace(0, 1, int(2 * chord[-1] / step) + 2)
    dense = curve(fine)
    along = fine[cKDTree(dense).query(points)[1]]
    order = np.argsort(along, kind='stable')
    along = along[order]
    if along[-1] - along[0] > 0.5 and np.all(np.diff(along) > 0):
        # a principal-curve step: refit against each click's place along the first curve
        points = points[order]
        curve = fit_penalised_curve((along - along[0]) / (along[-1] - along[0]), points, smoothing)
        dense = curve(fine)
    path = filament_path(dense, step)
    residuals = cKDTree(path.points).query(points)[0]
    shape = 'straight line' if np.isinf(curve.stiffness) else 'spline through the points' \
        if curve.stiffness == 0 else f'penalised spline (stiffness {curve.stiffness:.2g})'
    return path, FitReport('filament', shape, rms=float(np.sqrt(np.mean(residuals ** 2))),
                           points_used=len(points), points_total=len(raw),
                           notes=[f'path length {path.length:.1f} px'])


def filament_path(dense, step=0.25):
    """:class:`FilamentPath` through a dense polyline: resampled every ``step`` px of arc length, with
    rotation-minimising frames starting from the Dynamo frame of the first tangent."""
    arc = np.r_[0, np.cumsum(np.linalg.norm(np.diff(dense, axis=0), axis=1))]
    samples = np.arange(0, arc[-1], step)
    samples = np.r_[samples, arc[-1]] if arc[-1] - samples[-1] > 1e-9 else samples
    dense = np.column_stack([np.interp(samples, arc, dense[:, k]) for k in range(3)])
    frames = _rotation_minimising_frames(dense, matrix_from_normal(dense[1] - dense[0]))
    return FilamentPath(dense, samples, frames)


def helical_subunits(path, rise, twist, radius=0.0, phase=0.0):
    """Subunits every ``rise`` px along the path, turning ``twist`` degrees each (Dynamo
    filamentWithTorsion; ``radius`` > 0 puts them on a helix around the axis).

    Returns positions and rotations: particle z-axis along the filament, particle x-axis at in-plane
    angle phase + i × twist from the rotation-minimising frame (Rz(angle) applied to its rows).
    """
    if rise <= 0:
        raise GeometryError(f'the rise between subunits must be positive (got {rise})')
    arcs = np.arange(0, path.length + 1e-9, rise)
    centres, frames = path.at(arcs)
    angles = np.radians(phase + twist * np.arange(len(arcs)))
    rotations = rotation_about_z(angles) @ frames
    return centres + radius * rotations[:, 0, :], rotations


def ring_subunits(path, ring_spacing, radius, per_ring, ring_twist=0.0):
    """Rings every ``ring_spacing`` px along the path with ``per_ring`` subunits at ``radius`` px from
    the axis (Dynamo filamentRings). Returns positions, radial unit normals and the filament tangent
    at each subunit (for the tangent in-plane policy)."""
    if ring_spacing <= 0 or radius <= 0 or per_ring < 1:
        raise GeometryError('rings need a positive spacing, a positive radius and at least one subunit')
    arcs = np.arange(0, path.length + 1e-9, ring_spacing)
    centres, frames = path.at(arcs)
    angles = 2 * np.pi * np.arange(per_ring) / per_ring
    positions, normals, tangents = [], [], []
    for k, (centre, frame) in enumerate(zip(centres, frames)):
        theta = angles + np.radians(ring_twist * k)
        radial = np.cos(theta)[:, None] * frame[0] + np.sin(theta)[:, None] * frame[1]
        positions.append(centre + radius * radial)
        normals.append(radial)
        tangents.append(np.repeat(frame[2][None], per_ring, axis=0))
    return np.concatenate(positions), np.concatenate(normals), np.concatenate(tangents)
