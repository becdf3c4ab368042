"""Directional model workflow: groups of clicked points → evenly spaced, oriented cropping points.

One group of points describes one geometry (a vesicle, a membrane, a filament). For each group the
geometry is fitted (:mod:`.geometry`), sampled at the requested spacing (:mod:`.surface_sampling`) and
every cropping point gets a Scipion 4×4 matrix whose particle z-axis is the outward normal (filaments:
the axis) in Dynamo's ZXZ convention (:mod:`.orientation`). A group that cannot be fitted is reported
with its reason; the others go on. Also reads user-point files (through :mod:`.formats`) and writes
cropping points as STAR.
"""
import logging
import os
from dataclasses import dataclass, field

import numpy as np

from . import geometry, refinement
from .errors import CryoSegInputError
from .formats import read_points, relion_from_rotations
from .orientation import IN_PLANE_POLICIES, in_plane_angles, matrix_from_normal, matrix_to_euler, scipion_matrix
from .surface_sampling import (dense_count, inside_bounds, offset_along_normals, outside_exclusion,
                               sample_sphere, thin_to_spacing)

logger = logging.getLogger(__name__)

MODEL_TYPES = ('auto', 'sphere', 'ellipsoid', 'membraneByLevels', 'general', 'filamentHelix',
               'filamentRings')
# names used by Dynamo models (``_dynModelName``) and by the CLI, mapped to cryoseg model types
MODEL_ALIASES = {'vesicle': 'sphere', 'ellipsoidalvesicle': 'ellipsoid',
                 'markedellipsoidalvesicle': 'ellipsoid', 'surface': 'membraneByLevels',
                 'membranebylevels': 'membraneByLevels', 'general': 'general', 'boxes': 'general',
                 'filament': 'filamentHelix', 'filamentwithtorsion': 'filamentHelix',
                 'filamentsubunitsinhelix': 'filamentHelix', 'helix': 'filamentHelix',
                 'filamentrings': 'filamentRings', 'rings': 'filamentRings'}


def canonical_model(name):
    """cryoseg model type of a name (cryoseg, Dynamo or CLI spelling), or None if unknown."""
    if not name:
        return None
    if name in MODEL_TYPES:
        return name
    return MODEL_ALIASES.get(str(name).replace(' ', '').replace('_', '').lower())


@dataclass
class ModelParameters:
    """Everything in voxels (px) and degrees."""
    model_type: str = 'auto'
    spacing: float = 10.0  # cropping points (surfaces), subunit rise (helix) or ring distance (rings)
    offset: float = 0.0  # along the outward normal
    in_plane: str = 'zero'
    seed: int = 0
    mesh_edge: float = 5.0  # support-mesh control interval
    max_triangles: int = 100000
    subdivision: int = 0
    robust: bool = True
    exclusion_radius: float = 0.0  # around the inside marker (marked vesicles)
    level_tolerance: float = 1.0  # z gap separating levels
    smoothing: float = 1.0  # expected click scatter (px rms); 0 = splines through the points
    twist: float = 0.0  # degrees per helical subunit
    helix_radius: float = 0.0
    ring_radius: float = 10.0
    subunits_per_ring: int = 8
    ring_twist: float = 0.0
    shape_xyz: tuple = None  # tomogram size; points outside it are dropped
    refine: bool = False  # refine the fitted model against the tomogram's density
    membrane: float = 4.0  # membrane (filament wall) thickness to look for when refining
    refine_band: float = 0.0  # half-width of the search along the normals; 0 = from the fit
    filament_radius: float = 0.0  # tube radius for the filament refinement; 0 = from the helix/ring radius

    def refine_settings(self):
        return refinement.RefineSettings(membrane=self.membrane, band=self.refine_band)

    def check(self):
        if canonical_model(self.model_type) is None and self.model_type != 'auto':
            raise CryoSegInputError(f"unknown model type {self.model_type!r}; choose one of "
                                    f"{', '.join(MODEL_TYPES)}")
        if self.in_plane not in IN_PLANE_POLICIES:
            raise CryoSegInputError(f"in-plane policy must be one of {', '.join(IN_PLANE_POLICIES)}")
        if self.spacing <= 0:
            raise CryoSegInputError('the spacing must be positive')
        if self.mesh_edge <= 0 or self.max_triangles < 8:
            raise CryoSegInputError('the mesh edge must be positive and the triangle cap at least 8')
        if self.refine:
            self.refine_settings().check()


@dataclass
class GroupResult:
    group_id: int
    model: str
    positions: np.ndarray  # (N, 3) px
    matrices: np.ndarray  # (N, 4, 4) Scipion
    report: geometry.FitReport
    surface: object = None  # the model the points come from (refined when refined), for viewers
    refinement: object = None  # refinement.Refinement when refined against the density
    shifts: np.ndarray = None  # per cropping point: shift (px) of the refined surface from the fitted one

    @property
    def normals(self):
        return self.matrices[:, 2, :3]


@dataclass
class WorkflowResult:
    results: list = field(default_factory=list)  # GroupResult
    failures: dict = field(default_factory=dict)  # group id → reason

    def arrays(self):
        """All cropping points as arrays: positions (N, 3), matrices (N, 4, 4), group ids (N,) and the
        fit rms (px) of each point's geometry (N,)."""
        results = self.results
        return (np.concatenate([r.positions for r in results]) if results else np.zeros((0, 3)),
                np.concatenate([r.matrices for r in results]) if results else np.zeros((0, 4, 4)),
                np.concatenate([np.full(len(r.positions), r.group_id) for r in results]).astype(int)
                if results else np.zeros(0, int),
                np.concatenate([np.full(len(r.positions), r.report.rms) for r in results]) if results
                else np.zeros(0))

    def shifts(self):
        """Per cropping point (in the order of :meth:`arrays`): the shift (px) of the refined surface from
        the fitted model there, nan where the group was not refined."""
        return np.concatenate([r.shifts for r in self.results]) if self.results else np.zeros(0)

    def surface_points(self):
        """The density profiles' support points on the fitted models and the same points moved onto the
        refined surfaces (both (N, 3) px, refined groups only), for figures."""
        refined = [r.refinement for r in self.results if r.refinement is not None]
        if not refined:
            return np.zeros((0, 3)), np.zeros((0, 3))
        return (np.concatenate([r.support for r in refined]),
                np.concatenate([r.support + r.smoothed[:, None] * r.normals for r in refined]))

    def report_rows(self):
        """One row per group (fitted or failed) for summaries and tables."""
        rows = [dict(group=r.group_id, status='ok', crop_points=len(r.positions), **r.report.as_dict(),
                     **_refinement_columns(r.refinement)) for r in self.results]
        rows += [dict(group=g, status='failed', reason=reason) for g, reason in self.failures.items()]
        return sorted(rows, key=lambda row: row['group'])


def infer_model(points):
    """Model type for ``auto`` without a name: fewer than 4 points or collinear → filament; a sphere
    or ellipsoid that fits within 3 % of its size and is not much larger than the points → vesicle;
    points on several z levels → membrane by levels; else a general surface."""
    points = np.asarray(points, float).reshape(-1, 3)
    singular = geometry.principal_axes(points)[1] if len(points) >= 4 else None
    if singular is None or singular[1] < 0.08 * singular[0]:
        return 'filamentHelix'
    extent = np.ptp(points, axis=0).max()
    for fitter, name in ((geometry.fit_sphere, 'sphere'), (geometry.fit_ellipsoid, 'ellipsoid')):
        try:
            model, report = fitter(points)
        except geometry.GeometryError:
            continue
        size = float(np.mean(report.radii))
        if report.rms <= 0.03 * size and max(report.radii) <= 1.5 * extent:
            return name
    levels = geometry.z_levels(points, 1.0)
    if sum(len(level) >= 2 for level in levels) >= 2:
        return 'membraneByLevels'
    return 'general'


def _surface_points(surface, params):
    """Dense area-uniform points on a fitted surface, offset along the normals, thinned to spacing."""
    rng = np.random.default_rng(params.seed)
    area = surface.area()
    if params.offset and isinstance(surface, geometry.EllipsoidModel):
        scale = 1 + params.offset / float(np.mean(surface.radii))
        area *= max(scale, 0.1) ** 2
    points, normals = surface.dense_points(dense_count(area, params.spacing), rng)
    points = offset_along_normals(points, normals, params.offset)
    kept = thin_to_spacing(points, params.spacing, params.seed)
    return points[kept], normals[kept]


def _refinement_columns(refined):
    if refined is None:
        return dict(refined=False)
    return dict(refined=True, profiles=len(refined.support), outliers=refined.outliers,
                median_shift=round(float(np.median(np.abs(refined.smoothed))), 4))


def crop_points_for_group(points, params, marker=None, model_name=None, group_id=0, volume=None):
    """Fit one geometry and produce its cropping points; raises :class:`geometry.GeometryError`.

    With ``params.refine`` the fitted model is refined against ``volume`` [z, y, x] (:mod:`.refinement`)
    and the cropping points and normals come from the refined surface or path.
    """
    params.check()
    if params.refine and volume is None:
        raise CryoSegInputError('refining against the density needs the tomogram')
    model = canonical_model(params.model_type if params.model_type != 'auto' else model_name)
    if model is None:
        model = infer_model(points)
    tangents, refined = None, None
    settings = params.refine_settings()
    if model in ('sphere', 'ellipsoid'):
        fitter = geometry.fit_sphere if model == 'sphere' else geometry.fit_ellipsoid
        surface, report = fitter(points, params.robust)
        if params.refine:
            band = settings.search_band(report.rms, params.smoothing, min(report.radii))
            moved, refined = refinement.refine_closed(volume, surface, settings, band, _support_spacing(params))
            surface = moved if np.any(refined.smoothed) else surface  # kept: sampled as without refinement
        if isinstance(surface, geometry.SphereModel):
            radius = surface.radius + params.offset
            if radius <= 0:
                raise geometry.GeometryError(f'the offset {params.offset:.1f} px is deeper than the radius')
            positions, normals = sample_sphere(surface.centre, radius, params.spacing)
        else:
            positions, normals = _surface_points(surface, params)
    elif model in ('membraneByLevels', 'general'):
        fitter = geometry.fit_membrane_levels if model == 'membraneByLevels' else geometry.fit_general_surface
        options = dict(control_interval=params.mesh_edge, inside=marker, smoothing=params.smoothing,
                       subdivision=params.subdivision, max_triangles=params.max_triangles)
        if model == 'membraneByLevels':
            options['level_tolerance'] = params.level_tolerance
        surface, report = fitter(points, **options)
        if params.refine:
            size = np.sqrt(surface.area())
            band = settings.search_band(report.rms, params.smoothing, size)
            surface, refined = refinement.refine_mesh(volume, surface, settings, band, _support_spacing(params))
        positions, normals = _surface_points(surface, params)
    else:
        surface, report = geometry.fit_filament(points, params.smoothing)
        if params.refine:
            radius = params.filament_radius or (params.helix_radius if model == 'filamentHelix'
                                                else params.ring_radius)
            band = settings.search_band(report.rms, params.smoothing, surface.length)
            surface, refined = refinement.refine_filament(volume, surface, settings, band, radius)
        if model == 'filamentHelix':
            phase = in_plane_angles(params.in_plane, [[0, 0, 1.0]], params.seed)[0] \
                if params.in_plane == 'random' else 0.0
            positions, rotations = geometry.helical_subunits(surface, params.spacing, params.twist,
                                                             params.helix_radius, phase)
        else:
            positions, normals, tangents = geometry.ring_subunits(
                surface, params.spacing, params.ring_radius, params.subunits_per_ring, params.ring_twist)
    report.model = model
    if refined is not None:
        report.notes.append(refined.summary())
    if model != 'filamentHelix':
        if model == 'sphere' or model == 'ellipsoid':
            keep = outside_exclusion(positions, marker, params.exclusion_radius)
            positions, normals = positions[keep], normals[keep]
            tangents = None
        narot = in_plane_angles(params.in_plane, normals, params.seed, tangents)
        rotations = matrix_from_normal(normals, narot)
    if params.shape_xyz is not None:
        keep = inside_bounds(positions, params.shape_xyz)
        if not keep.all():
            report.notes.append(f'{int((~keep).sum())} cropping points outside the tomogram dropped')
        positions, rotations = positions[keep], rotations[keep]
    shifts = refined.shift_at(positions) if refined is not None else np.full(len(positions), np.nan)
    return GroupResult(group_id, model, positions, scipion_matrix(rotations), report, surface, refined, shifts)


def _support_spacing(params):
    """Distance between density profiles: the membrane thickness, at most half the spacing, at least 1 px."""
    return float(np.clip(params.membrane / 2, 1.0, max(params.spacing / 2, 1.0)))


def run_model_workflow(groups, params, volume=None):
    """Cropping points of every group; ``groups`` maps group id → dict(points, marker=None, model=None).
    ``volume`` [z, y, x]: the tomogram, needed when ``params.refine``.

    Groups that fail are listed in ``failures`` with their reason and the others complete.
    """
    params.check()
    workflow = WorkflowResult()
    for group_id in sorted(groups):
        group = groups[group_id]
        try:
            result = crop_points_for_group(group['points'], params, group.get('marker'), group.get('model'),
                                           group_id, volume)
        except CryoSegInputError as err:
            logger.warning('group %s: %s', group_id, err)
            workflow.failures[group_id] = str(err)
            continue
        logger.info('group %s: %s, rms %.2f px, %d cropping points%s', group_id, result.model,
                    result.report.rms, len(result.positions),
                    f'; {result.refinement.summary()}' if result.refinement is not None else '')
        workflow.results.append(result)
    return workflow


# --------------------------------------------------------------------------- user-point files
@dataclass
class UserPoints:
    """Points read from a file: (x, y, z) as written, a group label and a role per point."""
    xyz: np.ndarray
    groups: list
    roles: list  # 'point' or 'marker'
    tomo_names: list = None  # per point, when the file names the tomogram (STAR rlnTomoName)
    convention: str = ''  # how the file's positions were read (cryoseg.core.formats)


def read_user_points(path, file_format='auto', tomograms=None):
    """Read points from STAR (rlnCoordinateX/Y/Z, a group column such as cryosegGroup or
    rlnGroupNumber, optional cryosegRole and rlnTomoName), CSV (header with x, y, z, group, role or
    positional columns), whitespace text ``x y z [group] [role]`` (``#`` comments), IMOD model2point
    text or a Dynamo table, through :func:`cryoseg.core.formats.read_points` (``tomograms``: the
    {name: TomogramGeometry} that RELION 5 centred coordinates need). Roles: ``point`` (default) or
    ``marker`` (a point inside the geometry; also ``centre``)."""
    if not os.path.exists(path):
        raise CryoSegInputError(f'point file {path} does not exist')
    table = read_points(path, file_format, tomograms)
    names = table.names.tolist()
    return UserPoints(table.xyz, table.groups.tolist(), table.roles.tolist(),
                      names if any(names) else None, table.convention)


def split_groups(xyz, group_ids, roles=None, models=None):
    """``{group id: dict(points, marker, model)}`` from per-point arrays; a group's marker is the mean
    of its marker-role points."""
    xyz = np.asarray(xyz, float).reshape(-1, 3)
    group_ids = np.asarray(group_ids)
    roles = np.asarray(roles if roles is not None else ['point'] * len(xyz))
    groups = {}
    for group_id in np.unique(group_ids):
        member = group_ids == group_id
        is_marker = member & (roles == 'marker')
        model = None
        if models is not None:
            named = [m for m, inside in zip(models, member) if inside and m]
            model = named[0] if named else None
        groups[int(group_id)] = dict(points=xyz[member & ~is_marker],
                                     marker=xyz[is_marker].mean(axis=0) if is_marker.any() else None,
                                     model=model)
    return groups


def crop_table_rows(result):
    """Per cropping point: position, Dynamo angles (tdrot, tilt, narot) and the same rotation as RELION
    angles (rot, tilt, psi) (:func:`cryoseg.core.formats.relion_from_rotations`: rot = narot − 90,
    psi = tdrot + 90)."""
    rotations = result.matrices[:, :3, :3]
    tdrot, tilt, narot = matrix_to_euler(rotations)
    relion_rot, relion_tilt, relion_psi = relion_from_rotations(rotations).T
    return [dict(x=p[0], y=p[1], z=p[2], tdrot=a, tilt=b, narot=c, rot=r, relion_tilt=t, psi=s)
            for p, a, b, c, r, t, s in zip(result.positions, tdrot, tilt, narot, relion_rot, relion_tilt,
                                           relion_psi)]


def write_crop_star(path, workflows):
    """Write the cropping points of ``{tomogram name or None: WorkflowResult}`` as one STAR table:
    positions in voxels from the first voxel, group, model, Dynamo (tdrot, tilt, narot) and RELION
    (rot, tilt, psi) angles in degrees, and the fit rms (px) of the geometry."""
    from emtable import Table

    named = any(name is not None for name in workflows)
    columns = (['rlnTomoName'] if named else []) + [
        'rlnCoordinateX', 'rlnCoordinateY', 'rlnCoordinateZ', 'cryosegGroup', 'cryosegModel', 'cryosegTdrot',
        'cryosegTilt', 'cryosegNarot', 'rlnAngleRot', 'rlnAngleTilt', 'rlnAnglePsi', 'cryosegFitRms']
    table = Table(columns=columns)
    for name, workflow in workflows.items():
        for result in workflow.results:
            for row in crop_table_rows(result):
                table.addRow(*([name] if named else []), row['x'], row['y'], row['z'], result.group_id,
                             result.model, row['tdrot'], row['tilt'], row['narot'], row['rot'],
                             row['relion_tilt'], row['psi'], result.report.rms)
    table.write(path, tableName='particles')
    return path


def simulate_clicks(vesicle, voxel_size, count=25, seed=0, scatter=0.5, band=0.7):
    """Click-like points on a ground-truth vesicle (phantom ``truth.vesicles`` entry): ``count`` points
    on its mid-membrane surface with |body z| < ``band`` (users click on central slices), scattered by
    ``scatter`` px. Returns (x, y, z) voxels."""
    rng = np.random.default_rng(seed)
    directions = rng.standard_normal((20 * count, 3))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    directions = directions[np.abs(directions[:, 2]) < band][:count]
    radii = np.asarray(vesicle['radii'], float) / voxel_size
    body = directions * radii
    return (np.asarray(vesicle['centre'], float) + body @ np.asarray(vesicle['axes'], float)
            + rng.normal(0, scatter, body.shape))


def vesicle_normals(vesicle, voxel_size, positions):
    """Outward unit normals of a ground-truth vesicle (``truth.vesicles`` entry) at ``positions`` and
    their signed distances (px, along the ray from the centre) to its mid-membrane surface."""
    surface = geometry.EllipsoidModel(np.asarray(vesicle['centre'], float),
                                      np.asarray(vesicle['radii'], float) / voxel_size,
                                      np.asarray(vesicle['axes'], float))
    positions = np.asarray(positions, float).reshape(-1, 3)
    return surface.normals_at(positions), surface.distances(positions)
