"""Directional models refined against the density (algorithms.md §3; issue 17).

A geometry fitted to a few rough clicks is only as good as the clicks: real vesicles are not spheres and
a click on a noisy slice strays by a few voxels. The membrane is in the tomogram, so the fitted model is
used as a start: along the normal of many support points on it the band-passed density is sampled
(a thin membrane stays, the edge of a dense lumen goes), the membrane is the extremum of that profile
within a search band (its sign, dark or bright, measured on the data), and the measured shifts are regularised into a smooth surface: a spherical-harmonic radius
for closed vesicles, a thin-plate displacement field over the surface for membranes and general
surfaces, a penalised spline through the tube's centres for filaments. Profiles without a clear
membrane (no extremum inside the band, too weak, or far from their neighbours) are outliers: the
refined surface follows the fitted model there, and they are counted in the report. Where no membrane
is localised at all, or (vesicles) the refined surface does not explain the membrane found
significantly better than the fitted model, the fitted model is kept whole: refinement does no harm.

References: Brechbühler, Gerig & Kübler (1995) Comput. Vis. Image Underst. 61:154 (spherical-harmonic
surfaces); Bookstein (1989) IEEE Trans. Pattern Anal. Mach. Intell. 11:567 (thin-plate splines);
Eilers & Marx (1996) Stat. Sci. 11:89 (penalised splines).
"""
from dataclasses import dataclass

import numpy as np
from scipy import interpolate, ndimage, stats
from scipy.special import sph_harm
from scipy.spatial import cKDTree

from . import geometry
from .errors import CryoSegInputError
from .surface_sampling import poisson_disk_thin

PROFILE_STEP = 0.5  # px between samples of a profile
OUTLIER_WEIGHT = 0.05  # weight of the fitted model where a profile shows no clear membrane


@dataclass
class RefineSettings:
    """Lengths in voxels. ``membrane``: thickness of the membrane (or filament wall) to look for; it sets
    the low-pass filter and the distance between profiles. ``band``: half-width of the search along
    each normal, 0 = from the fit (three times its rms or the click scatter, twice the membrane
    thickness, at least 3 px, whichever is largest, at most a quarter of the model's size). ``min_contrast``: a
    profile's peak must reach this fraction of the median peak of the group."""
    membrane: float = 4.0
    band: float = 0.0
    min_contrast: float = 0.35

    def check(self):
        if self.membrane <= 0 or self.band < 0 or not 0 <= self.min_contrast < 1:
            raise CryoSegInputError('refinement needs a positive membrane thickness, a band >= 0 and a '
                                    'minimum contrast in [0, 1)')

    def filters(self):
        """σ of the low-pass and of the subtracted background (px) for membrane profiles."""
        return self.membrane / 2, 2 * self.membrane

    def search_band(self, rms, scatter, size):
        if self.band:
            return float(self.band)
        band = max(3 * rms, 3 * scatter, 2 * self.membrane, 3.0)
        return float(min(band, max(size / 4, 2.0)))


@dataclass
class Refinement:
    """What the density said: support points on the fitted model, their normals, the measured shift of
    the membrane along each normal (px, nan where unclear), which ones were used, and the regularised
    shift of the refined surface there."""
    support: np.ndarray
    normals: np.ndarray
    shifts: np.ndarray
    inliers: np.ndarray
    smoothed: np.ndarray
    band: float
    contrast: str  # 'dark' or 'bright': the membrane's sign, measured
    method: str

    @property
    def outliers(self):
        return int((~self.inliers).sum())

    def shift_at(self, points):
        """Regularised shift (px) of the refined surface at the support point nearest each point."""
        return self.smoothed[cKDTree(self.support).query(np.asarray(points, float))[1]]

    def summary(self):
        return (f'refined against the density ({self.method}, {self.contrast} membrane, search ±{self.band:.1f} '
                f'px): {len(self.support)} profiles, {self.outliers} outliers kept on the fitted model, '
                f'median |shift| {np.median(np.abs(self.smoothed)):.2f} px')


# --------------------------------------------------------------------------- profiles
def lowpassed_region(volume, points, reach, sigma, background=0.0):
    """Gaussian-filtered (σ = ``sigma`` px) box of ``volume`` [z, y, x] around ``points`` (x, y, z)
    extended by ``reach`` px, and the (x, y, z) voxel of its first corner. With ``background`` (px)
    the same box filtered at that σ is subtracted (a band-pass that keeps a thin membrane and drops
    the step between a dense lumen and the outside)."""
    margin = reach + 3 * max(sigma, background) + 2
    low = np.maximum(np.floor(points.min(axis=0) - margin).astype(int), 0)
    high = np.minimum(np.ceil(points.max(axis=0) + margin).astype(int) + 1, np.array(volume.shape[::-1]))
    if np.any(high <= low):
        raise CryoSegInputError('the model lies outside the tomogram')
    box = np.asarray(volume[low[2]:high[2], low[1]:high[1], low[0]:high[0]], np.float32)
    filtered = ndimage.gaussian_filter(box, sigma, mode='nearest')
    if background:
        filtered -= ndimage.gaussian_filter(box, background, mode='nearest')
    return filtered, low


def sample_at(region, corner, xyz):
    """Trilinear values of ``region`` at (…, 3) (x, y, z) voxel positions (nearest edge outside)."""
    local = np.asarray(xyz, float) - corner
    coords = np.moveaxis(local[..., ::-1], -1, 0)
    return ndimage.map_coordinates(region, coords.reshape(3, -1), order=1, mode='nearest').reshape(local.shape[:-1])


def membrane_shifts(profiles, offsets, min_contrast, sign=None):
    """Shift (px) of the membrane along each band-passed profile, the contrast sign (+1 bright, −1 dark)
    and which profiles show it clearly.

    The sign (unless given) is the one of the mean profile's largest value; each profile's membrane is
    its extremum of that sign, refined to sub-sample precision by a parabola. A profile is clear when
    the extremum lies inside the band (not on its last sample) and its height reaches ``min_contrast``
    × the median height of all profiles.

    >>> offsets = np.arange(-4, 4.01, 0.5)
    >>> dip = -np.exp(-0.5 * ((offsets - 1.5) / 1.0) ** 2)  # a dark membrane 1.5 px outward
    >>> shifts, sign, clear = membrane_shifts(np.stack([dip, dip]), offsets, 0.35)
    >>> np.round(shifts, 2).tolist(), sign, clear.tolist()
    ([1.5, 1.5], -1.0, [True, True])
    """
    # band-passed profiles: the background is about 0, so the membrane's sign is the one of the
    # mean profile's largest value
    if sign is None:
        mean = profiles.mean(axis=0)
        sign = 1.0 if mean.max() >= -mean.min() else -1.0
    signed = sign * profiles
    peak = np.argmax(signed, axis=1)
    height = signed[np.arange(len(signed)), peak]
    inner = (peak > 0) & (peak < signed.shape[1] - 1)
    left = signed[np.arange(len(signed)), np.clip(peak - 1, 0, None)]
    right = signed[np.arange(len(signed)), np.clip(peak + 1, None, signed.shape[1] - 1)]
    curvature = left - 2 * height + right
    fraction = np.where(inner & (curvature < 0), 0.5 * (left - right) / np.where(curvature < 0, curvature, -1), 0.0)
    shifts = offsets[peak] + np.clip(fraction, -0.5, 0.5) * (offsets[1] - offsets[0])
    typical = np.median(height[height > 0]) if np.any(height > 0) else 0.0
    clear = inner & (height > 0) & (height >= min_contrast * typical)
    return shifts, sign, clear


def _support(surface, spacing, seed=0):
    """Points about ``spacing`` px apart on a fitted surface, with their outward normals."""
    rng = np.random.default_rng(seed)
    points, normals = surface.dense_points(int(4 * surface.area() / spacing ** 2) + 100, rng)
    kept = poisson_disk_thin(points, spacing, rng)  # one pass: profiles need no exact spacing
    return points[kept], normals[kept]


def _robust_inliers(residuals, floor):
    scale = 1.4826 * np.median(np.abs(residuals)) if len(residuals) else 0.0
    return np.abs(residuals) <= max(3 * scale, floor)


# --------------------------------------------------------------------------- closed vesicles
def _real_harmonics(directions, degree):
    """Real spherical harmonics up to ``degree`` at unit ``directions`` (n, 3): (n, (degree + 1)²) and
    the degree of each column."""
    polar = np.arccos(np.clip(directions[:, 2], -1, 1))
    azimuth = np.arctan2(directions[:, 1], directions[:, 0])
    columns, degrees = [], []
    for n in range(degree + 1):
        for m in range(-n, n + 1):
            value = sph_harm(abs(m), n, azimuth, polar)
            columns.append(value.imag if m < 0 else value.real)
            degrees.append(n)
    return np.column_stack(columns), np.asarray(degrees)


@dataclass
class HarmonicRadius:
    """Radius about ``centre`` as a spherical-harmonic series of the direction."""
    centre: np.ndarray
    coefficients: np.ndarray
    degree: int

    def __call__(self, directions):
        return _real_harmonics(np.asarray(directions, float), self.degree)[0] @ self.coefficients


ROUGHNESS = 5e-4  # bending penalty of the harmonic radius, relative to the data term


def fit_harmonic_radius(centre, points, weights, degree, roughness=ROUGHNESS):
    """Weighted least-squares spherical-harmonic radius through ``points`` about ``centre``, with a
    small penalty on l²(l+1)² (bending) so that noisy profiles are averaged and sparse regions stay
    smooth. Returns a :class:`HarmonicRadius` (callable on unit directions).

    References: Brechbühler, Gerig & Kübler (1995) Parametrization of closed surfaces for 3-D shape
    description, Comput. Vis. Image Underst. 61:154.

    >>> directions = np.random.default_rng(0).standard_normal((400, 3))
    >>> directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    >>> radius = fit_harmonic_radius(np.zeros(3), 20 * directions, np.ones(400), 4)
    >>> round(float(radius(np.array([[0.0, 0.0, 1.0]]))[0]), 2)
    20.0
    """
    offsets = points - centre
    radii = np.linalg.norm(offsets, axis=1)
    basis, degrees = _real_harmonics(offsets / radii[:, None], degree)
    weighted = basis * weights[:, None]
    # relative to the data term (orthonormal harmonics: mean square 1/4π)
    bending = roughness * weights.sum() / (4 * np.pi) * (degrees * (degrees + 1.0)) ** 2
    coefficients = np.linalg.solve(basis.T @ weighted + np.diag(bending), weighted.T @ radii)
    return HarmonicRadius(np.asarray(centre, float), coefficients, degree)


def _harmonic_degree(count):
    return int(np.clip(np.sqrt(count / 8.0), 2, 10))


def _harmonic_pass(volume, surface, centre, settings, band, spacing, sign=None):
    """One round for a closed vesicle: profiles along the normals of ``surface``, a robust harmonic
    radius through the membrane found (outliers weighted down onto ``surface``)."""
    support, normals = _support(surface, spacing)
    region, corner = lowpassed_region(volume, support, band, *settings.filters())
    offsets = np.arange(-band, band + 1e-9, PROFILE_STEP)
    profiles = sample_at(region, corner, support[:, None, :] + offsets[None, :, None] * normals[:, None, :])
    shifts, sign, clear = membrane_shifts(profiles, offsets, settings.min_contrast, sign)
    degree = _harmonic_degree(int(clear.sum()))
    inliers = clear.copy()
    for _ in range(2):
        targets = support + np.where(inliers, shifts, 0.0)[:, None] * normals
        radius = fit_harmonic_radius(centre, targets, np.where(inliers, 1.0, OUTLIER_WEIGHT), degree)
        found = support + shifts[:, None] * normals
        directions = (found - centre) / np.linalg.norm(found - centre, axis=1, keepdims=True)
        residuals = np.linalg.norm(found - centre, axis=1) - radius(directions)
        inliers = clear & _robust_inliers(residuals, settings.membrane / 2)
    return radius, found, clear, inliers, sign, degree


def refine_closed(volume, surface, settings, band, spacing):
    """Closed vesicle (sphere or ellipsoid model) → a spherical-harmonic surface through the membrane
    found along the normals of ``volume`` [z, y, x]; returns (MeshModel, Refinement).

    Two rounds: along the fitted model's normals within ``band``, then along the first refined
    surface's normals within half of it (at least twice the membrane thickness), which are closer to the
    membrane's own normals. The Refinement's shifts are radial, from the fitted model.
    """
    if isinstance(surface, geometry.SphereModel):
        surface = geometry.EllipsoidModel(surface.centre, np.full(3, surface.radius), np.eye(3))
    centre = np.asarray(surface.centre, float)
    count = int(np.clip(4 * np.pi * np.mean(surface.radii) ** 2 / (0.433 * spacing ** 2), 500, 20000))
    unit, faces = geometry.unit_sphere_mesh(count)
    start, sign = surface, None
    for round_band in (band, max(band / 2, 2 * settings.membrane)):
        radius, found, clear, inliers, sign, degree = _harmonic_pass(volume, start, centre, settings, round_band,
                                                                     spacing, sign)
        vertices = centre + unit * radius(unit)[:, None]
        start = geometry.MeshModel(vertices, faces, geometry.vertex_normals(vertices, faces))
    directions = (found - centre) / np.linalg.norm(found - centre, axis=1, keepdims=True)
    fitted_radius = 1 / np.linalg.norm((directions @ surface.axes.T) / surface.radii, axis=1)
    on_fit = centre + directions * fitted_radius[:, None]
    measured = np.linalg.norm(found - centre, axis=1) - fitted_radius
    smoothed = radius(directions) - fitted_radius
    method = f'spherical harmonics up to degree {degree}'
    independent = inliers.sum() * min((spacing / settings.membrane) ** 2, 1.0)
    if not _localised(measured, smoothed, clear, band, settings.membrane):
        start, smoothed = surface, np.zeros(len(found))
        method = 'fitted model kept: no membrane localised in the density'
    elif not _significant(measured[inliers], measured[inliers] - smoothed[inliers], (degree + 1) ** 2,
                          independent):
        # the membrane found agrees with the fitted model within the profiles' noise: keep the model
        start, smoothed = surface, np.zeros(len(found))
        method = 'fitted model kept: the membrane found agrees with it'
    refinement = Refinement(on_fit, directions, np.where(clear, measured, np.nan), inliers, smoothed, band,
                            'bright' if sign > 0 else 'dark', method)
    return start, refinement


def _localised(measured, smoothed, clear, band, membrane):
    """Is there a membrane? The positions found must lie on the smooth surface within half the
    membrane thickness (and a quarter of the band), robustly: extrema of noise scatter over the band."""
    if clear.sum() < 10:
        return False
    scatter = 1.4826 * np.median(np.abs(measured[clear] - smoothed[clear]))
    return scatter < min(membrane / 2, band / 4)


def _significant(before, after, parameters, independent, level=0.999):
    """F test: does a model with ``parameters`` more coefficients explain the residuals ``before``
    (leaving ``after``) better than noise would, counting ``independent`` measurements?"""
    freedom = independent - parameters
    if freedom < 5:
        return False
    gain = (np.mean(before ** 2) - np.mean(after ** 2)) * independent / parameters
    noise = np.mean(after ** 2) * independent / freedom
    return gain > stats.f.ppf(level, parameters, freedom) * noise


# --------------------------------------------------------------------------- open membranes, general surfaces
def refine_mesh(volume, mesh, settings, band, spacing):
    """Triangulated membrane → the same mesh moved along its normals by a thin-plate spline of the
    measured shifts (robust, outliers kept on the fitted model); returns (MeshModel, Refinement)."""
    support, normals = _support(mesh, spacing)
    region, corner = lowpassed_region(volume, support, band, *settings.filters())
    offsets = np.arange(-band, band + 1e-9, PROFILE_STEP)
    profiles = sample_at(region, corner, support[:, None, :] + offsets[None, :, None] * normals[:, None, :])
    shifts, sign, clear = membrane_shifts(profiles, offsets, settings.min_contrast)
    inliers = clear.copy()
    smoothing = 5 * settings.membrane ** 2  # thin-plate smoothing: bends no shorter than a few membranes
    for _ in range(2):
        values = np.where(inliers, shifts, 0.0)
        weights = np.where(inliers, 1.0, OUTLIER_WEIGHT)
        field = interpolate.RBFInterpolator(support, values, kernel='thin_plate_spline',
                                            smoothing=smoothing / weights, neighbors=min(len(support), 60))
        fitted = field(support)
        inliers = clear & _robust_inliers(shifts - fitted, settings.membrane / 2)
    fine = mesh
    while np.median(np.linalg.norm(fine.vertices[fine.faces[:, 0]] - fine.vertices[fine.faces[:, 1]], axis=1)) \
            > spacing and len(fine.faces) < 200000:
        fine = geometry.subdivide(fine, 1, 10 ** 6)
    if not _localised(shifts, fitted, clear, band, settings.membrane):
        refinement = Refinement(support, normals, np.where(clear, shifts, np.nan), inliers, np.zeros(len(support)),
                                band, 'bright' if sign > 0 else 'dark',
                                'fitted model kept: no membrane localised in the density')
        return mesh, refinement
    vertices = fine.vertices + field(fine.vertices)[:, None] * fine.vertex_normals
    refined = geometry.MeshModel(vertices, fine.faces, geometry.vertex_normals(vertices, fine.faces))
    if np.einsum('ij,ij->', refined.vertex_normals, fine.vertex_normals) < 0:
        refined = refined.flipped()
    refinement = Refinement(support, normals, np.where(clear, shifts, np.nan), inliers, fitted, band,
                            'bright' if sign > 0 else 'dark', 'thin-plate displacement of the fitted mesh')
    return refined, refinement


# --------------------------------------------------------------------------- filaments
def refine_filament(volume, path, settings, band, radius):
    """Filament path → a penalised spline through the centres of the tube's density.

    Every ``membrane``/2 px along the path, the low-passed density in the cross-section disk of radius
    ``band + radius`` is re-centred three times on its weighted centroid (weights: the signed density
    above the disk's median); cross-sections whose centre moves out of the band or whose density is
    weak are outliers and keep the fitted path. Returns (FilamentPath, Refinement).
    """
    stations = np.arange(0, path.length + 1e-9, max(settings.membrane / 2, 1.0))
    centres, frames = path.at(stations)
    reach = band + radius
    region, corner = lowpassed_region(volume, centres, reach, settings.membrane / 2)
    grid = np.arange(-reach, reach + 1e-9, PROFILE_STEP)
    gu, gv = np.meshgrid(grid, grid, indexing='ij')
    disk = gu ** 2 + gv ** 2 <= reach ** 2
    gu, gv = gu[disk], gv[disk]
    inner = gu ** 2 + gv ** 2 <= (reach / 2) ** 2

    def cross_sections(at):
        planes = at[:, None, :] + gu[None, :, None] * frames[:, None, 0] + gv[None, :, None] * frames[:, None, 1]
        return sample_at(region, corner, planes)

    values = cross_sections(centres)
    sign = 1.0 if np.mean(values[:, inner]) >= np.mean(values[:, ~inner]) else -1.0
    moved = centres.copy()
    for _ in range(3):
        values = sign * cross_sections(moved)
        median = np.median(values, axis=1, keepdims=True)
        spread = 1.4826 * np.median(np.abs(values - median), axis=1, keepdims=True)
        weights = np.clip(values - median - 2 * spread, 0, None)  # the tube, not the background's noise
        total = weights.sum(axis=1)
        safe = np.where(total > 0, total, 1.0)
        du, dv = (weights @ gu) / safe, (weights @ gv) / safe
        moved = moved + du[:, None] * frames[:, 0] + dv[:, None] * frames[:, 1]
    offsets = moved - centres
    offsets -= np.einsum('ij,ij->i', offsets, frames[:, 2])[:, None] * frames[:, 2]
    distance = np.linalg.norm(offsets, axis=1)
    typical = np.median(total[total > 0]) if np.any(total > 0) else 0.0
    clear = (distance < band) & (total > 0) & (total >= settings.min_contrast * typical)
    inliers = clear.copy()
    s = stations / max(path.length, 1e-9)
    knots = int(path.length / (2 * reach)) + 4  # no bend shorter than the cross-section's diameter
    for _ in range(2):
        targets = centres + np.where(inliers[:, None], offsets, 0.0)
        curve = geometry.fit_penalised_curve(s, targets, settings.membrane / 8,
                                             np.where(inliers, 1.0, OUTLIER_WEIGHT), knots)
        inliers = clear & _robust_inliers(np.linalg.norm(curve(s) - (centres + offsets), axis=1),
                                          settings.membrane / 2)
    moved = curve(s) - centres
    fitted = np.linalg.norm(moved, axis=1)
    directions = moved / np.maximum(fitted, 1e-12)[:, None]  # support + shift × direction: the refined axis
    residuals = np.linalg.norm(curve(s) - (centres + offsets), axis=1)
    method = 'penalised spline through the tube centres'
    if not _localised(residuals, np.zeros(len(residuals)), clear, band, settings.membrane):
        return path, Refinement(centres, directions, np.where(clear, distance, np.nan), inliers,
                                np.zeros(len(centres)), band, 'bright' if sign > 0 else 'dark',
                                'fitted path kept: no tube localised in the density')
    refined = geometry.filament_path(curve(np.linspace(0, 1, int(2 * path.length / 0.25) + 2)))
    refinement = Refinement(centres, directions, np.where(clear, distance, np.nan), inliers, fitted, band,
                            'bright' if sign > 0 else 'dark', method)
    return refined, refinement
