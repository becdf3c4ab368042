"""Segmentation picking with particle-diameter statistics (algorithms.md §2; SIMPLE's segdiampick).

Two parts:

* :func:`pick_components` — the per-volume picker (3-D tomograms, also 2-D images): bin to a working
  pixel size, denoise, binarise by the 1-D k-means threshold whose foreground fraction is closest
  to a target (Otsu as an option), erode twice, fill holes, label connected components (26-connected
  in 3-D), measure each component's centre and diameter, and keep the components whose peak contrast
  reaches ``min_peak`` robust σ (a guard SIMPLE lacks: the foreground-fraction threshold cuts into the
  noise and the ice texture of a tomogram, whose faint blobs would outnumber the particles).
* :func:`estimate_particle_size` — over all volumes: statistics, 1-D clustering (10-cluster k-means
  with the two edge clusters excluded, or threshold HAC), acceptance of clusters by two robust
  z-scores, then the box size and mask diameter; :func:`gate_diameters` re-picks with the accepted
  [minv, maxv]. When nothing can be estimated the result is a :class:`NoEstimate` with its reason.

Diameters: the default estimator re-grows each eroded component geodesically (inside the binary
mask, as far as it was eroded) and reports the diameter of the ball (disk) of equal volume (area),
which is unbiased on ideal balls. ``estimator='policy'`` is SIMPLE's 2 × max centroid-to-voxel
distance of the eroded component plus 2 working pixels (the erosion correction, applied here once).
Because the missing wedge stretches objects along z, the in-plane (xy, largest cross-section)
diameter is reported besides the 3-D one and is the one used by default.
"""
import logging
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
from scipy import ndimage
from skimage.filters import threshold_otsu
from skimage.segmentation import watershed

from .checks import check_volume_values
from .clustering import calc_stats, find_magic_box, hac_1d_fast, mad_gau, nint, sortmeans
from .errors import CryoSegInputError

logger = logging.getLogger(__name__)

SMPD_SHRINK1 = 4.0  # Å, SIMPLE's working pixel size
FRAC_FG = 0.17  # SIMPLE's foreground-fraction target (micrographs)
NQ_DIAMS = 10
SIGMA_CRIT = 2.0
COSMSKHALFWIDTH = 6.0  # px kept free for the cosine edge of the mask
BOX_FACTOR = 1.5
MASK_FACTOR = 1.2
THRESHOLD_SAMPLE = 1_000_000  # voxels the k-means threshold is computed on
ESTIMATORS = ('equal_volume', 'policy')
THRESHOLDS = ('kmeans', 'otsu')
NYQUIST_LOWPASS = 4.0  # working px: the low-pass never resolves finer than twice the Nyquist period
DOG_RATIO = 1.6  # σ2/σ1 of the difference of Gaussians approximating the Laplacian of Gaussian
SCALE_ROUNDS = 3  # blob detections at most: at the first-pass median diameter, then re-centred on the measured one
SCALE_TOLERANCE = 0.05  # ... until the measured median lies this close to the scale it was detected at
REGION_LEVEL = 0.5  # a split region reaches down to this fraction of its mean contrast


@dataclass(frozen=True)
class PickSettings:
    """How :func:`pick_components` segments a volume. Sizes in Å."""
    working_size: float = SMPD_SHRINK1  # pixel size of the work; never finer than the input's
    contrast: str = 'dark'  # particles darker ('dark', as reconstructed) or brighter than the ice
    lowpass: float = 60.0  # Å: Gaussian low-pass whose transfer is 1/2 at this resolution
    threshold: str = 'kmeans'  # 'kmeans' (policy) or 'otsu'
    foreground_fraction: float = 0.10  # target of the k-means threshold choice (SIMPLE: 0.17, 2-D)
    estimator: str = 'equal_volume'  # or 'policy'
    in_plane: bool = True  # gate and report the in-plane (xy) diameter rather than the 3-D one
    diameter_range: tuple = (20.0, 500.0)  # Å, SIMPLE's MOLDIAMS_PICK
    median: bool = False  # SIMPLE's 3×3(×3) median after the low-pass; slow in 3-D, little gain
    min_peak: float = 5.0  # robust σ: blobs whose brightest voxel is fainter are noise or texture; 0 = off
    split: bool = True  # split touching particles: blob seeds at the particle scale, then a watershed
    min_seed: float = 9.0  # robust σ of the band-passed tomogram a seed (particle centre) must reach

    def validate(self):
        if self.contrast not in ('dark', 'light'):
            raise CryoSegInputError(f"contrast must be 'dark' or 'light', not {self.contrast!r}")
        if self.threshold not in THRESHOLDS:
            raise CryoSegInputError(f"threshold must be one of {THRESHOLDS}, not {self.threshold!r}")
        if self.estimator not in ESTIMATORS:
            raise CryoSegInputError(f"diameter estimator must be one of {ESTIMATORS}, not {self.estimator!r}")
        if not 0 < self.foreground_fraction < 1:
            raise CryoSegInputError('the foreground fraction must lie between 0 and 1')
        low, high = self.diameter_range
        if not 0 <= low < high:
            raise CryoSegInputError(f'the diameter range must be MIN < MAX (Å), got {low} - {high}')
        if not self.min_peak >= 0:
            raise CryoSegInputError(f'the minimum peak contrast must be 0 or more (σ), not {self.min_peak}')
        if not self.min_seed >= 0:
            raise CryoSegInputError(f'the minimum seed contrast must be 0 or more (σ), not {self.min_seed}')
        if self.working_size <= 0 or self.lowpass < 0:
            raise CryoSegInputError('the working pixel size must be positive and the low-pass not negative')


@dataclass
class Components:
    """Components found in one volume. Positions are (x, y[, z]) voxel indices of the INPUT volume."""
    xyz: np.ndarray  # (N, ndim)
    diameter: np.ndarray  # Å, the one gated and used by the statistics (in-plane or 3-D)
    diameter_3d: np.ndarray  # Å (equal to diameter_xy for 2-D input)
    diameter_xy: np.ndarray  # Å
    score: np.ndarray  # mean contrast of the component in units of the background's robust σ
    working_size: float = 0.0
    threshold: float = 0.0

    def __len__(self):
        return len(self.diameter)

    def select(self, keep):
        return Components(self.xyz[keep], self.diameter[keep], self.diameter_3d[keep],
                          self.diameter_xy[keep], self.score[keep], self.working_size, self.threshold)


# ----------------------------------------------------------------------------- picker
def working_grid(shape, voxel_size, working_size):
    """Shape of the working grid and its per-axis scale (input voxels per working voxel)."""
    factor = max(working_size / voxel_size, 1.0)
    out_shape = tuple(max(int(round(n / factor)), 1) for n in shape)
    return out_shape, np.asarray(shape, float) / np.asarray(out_shape, float)


def _to_working(volume, scale, out_shape, order=1):
    """Resample to the working grid; working voxel i is centred on input coordinate (i+½)·s − ½."""
    if np.allclose(scale, 1.0):
        return np.asarray(volume, np.float32 if order else volume.dtype)
    if order:
        volume = ndimage.gaussian_filter(np.asarray(volume, np.float32), sigma=0.5 * scale, truncate=2.5)
    return ndimage.affine_transform(volume, np.diag(scale), offset=0.5 * scale - 0.5, output_shape=out_shape,
                                    order=order, mode='nearest')


def lowpass_sigma(resolution, pixel_size):
    """σ (px) of the Gaussian whose transfer falls to 1/2 at ``resolution`` Å: σ = √(ln2/2)·R/(π·px)."""
    return np.sqrt(np.log(2) / 2) * resolution / (np.pi * pixel_size)


def binarisation_threshold(values, foreground_fraction=FRAC_FG, method='kmeans', clusters=NQ_DIAMS):
    """SIMPLE's ``calc_bin_thres``: 1-D k-means of the grey values; the candidate thresholds are the
    clusters' minima and the one whose foreground fraction is closest to the target wins.
    ``method='otsu'`` uses Otsu's threshold instead. Computed on at most a million voxels."""
    values = np.asarray(values, np.float32).ravel()
    if len(values) > THRESHOLD_SAMPLE:
        values = values[::int(np.ceil(len(values) / THRESHOLD_SAMPLE))]
    if method == 'otsu':
        return float(threshold_otsu(values))
    partition = sortmeans(values, clusters)
    candidates = ndimage.minimum(values, partition.labels, np.flatnonzero(partition.nonempty))
    ordered = np.sort(values)
    fractions = 1.0 - np.searchsorted(ordered, candidates, side='left') / len(ordered)
    return float(candidates[np.argmin(np.abs(fractions - foreground_fraction))])


def _fill_holes(mask, structure):
    """Every background component but the largest becomes foreground (SIMPLE's hole filling)."""
    background, count = ndimage.label(~mask, structure=ndimage.generate_binary_structure(mask.ndim, 1))
    if count <= 1:
        return mask
    sizes = np.bincount(background.ravel())
    sizes[0] = 0
    return mask | ((background > 0) & (background != np.argmax(sizes)))


def _equivalent_diameter(count, ndim):
    if ndim == 3:
        return 2.0 * np.cbrt(3.0 * count / (4.0 * np.pi))
    return 2.0 * np.sqrt(count / np.pi)


def _grow_to_half_maximum(work, labels, count, structure, inside):
    """Per component: geodesic re-growth of the eroded core through the voxels brighter than half
    the core's mean contrast (the background is at 0), within a box twice the core's size.
    The half-maximum surface of a blurred ball is its true surface, whatever threshold found it.
    Returns a label image of the re-grown components (neighbours never take each other's cores)."""
    grown = np.zeros_like(labels)
    cores = labels > 0
    for index, box in enumerate(ndimage.find_objects(labels), start=1):
        margin = [max((s.stop - s.start) // 2, 1) + 2 for s in box]
        wide = tuple(slice(max(s.start - m, 0), min(s.stop + m, n))
                     for s, m, n in zip(box, margin, labels.shape))
        core = labels[wide] == index
        level = 0.5 * float(work[wide][core].mean())
        candidate = (work[wide] >= level) & ~(cores[wide] & ~core)
        if inside is not None:
            candidate &= inside[wide]
        region = ndimage.binary_propagation(core, structure, mask=candidate | core)
        target = grown[wide]
        target[region & (target == 0)] = index
    return grown


def _to_input_xyz(centres_zyx, scale):
    """Working-grid (z, y[, x]) positions to (x, y[, z]) voxel positions of the input volume."""
    return ((np.asarray(centres_zyx, float) + 0.5) * scale - 0.5)[:, ::-1]


def _measure(labels, count, work, scale, working_size, estimator):
    """Centres (input voxels, x-first), 3-D and in-plane diameters (Å), scores (mean contrast) and peak
    contrasts of components."""
    ndim = labels.ndim
    voxels = np.nonzero(labels)
    owner = labels[voxels]
    sizes = np.bincount(owner, minlength=count + 1)[1:].astype(float)
    with np.errstate(invalid='ignore', divide='ignore'):
        centres = np.stack([np.bincount(owner, weights=axis, minlength=count + 1)[1:] / sizes
                            for axis in voxels], axis=1)  # working (z, y, x)
        score = np.bincount(owner, weights=work[voxels], minlength=count + 1)[1:] / sizes
    peak = np.full(count, -np.inf)
    np.maximum.at(peak, owner - 1, work[voxels])  # ndimage.maximum would sort the whole volume
    if ndim == 3:  # largest xy cross-section of each component
        plane_counts = np.bincount(owner * labels.shape[0] + voxels[0],
                                   minlength=(count + 1) * labels.shape[0]).reshape(count + 1, -1)[1:]
        section = plane_counts.max(axis=1).astype(float)
    else:
        section = sizes
    if estimator == 'equal_volume':
        d3 = _equivalent_diameter(sizes, ndim)
        dxy = _equivalent_diameter(section, 2)
    else:  # 2 × farthest voxel centre from the centroid, + the erosion correction of 2 px
        index = np.arange(1, count + 1)
        offsets = np.stack(voxels, axis=1) - centres[owner - 1]
        d3 = 2 * np.sqrt(ndimage.maximum((offsets ** 2).sum(axis=1), owner, index)) + 2
        dxy = 2 * np.sqrt(ndimage.maximum((offsets[:, -2:] ** 2).sum(axis=1), owner, index)) + 2
    return _to_input_xyz(centres, scale), np.asarray(d3) * working_size, np.asarray(dxy) * working_size, score, peak


@dataclass
class BlobSeeds:
    """Seeds of :func:`blob_seeds`: ``labels`` int32 (0 background, 1..n seeds, usually one voxel each),
    ``centres`` (n, ndim) sub-voxel positions (indices of the volume's axes) and ``strength`` (n,) in
    robust σ of the band-passed volume."""
    labels: np.ndarray
    centres: np.ndarray
    strength: np.ndarray

    def __len__(self):
        return len(self.strength)


def blob_seeds(signal, diameter, min_seed, allowed=None, window=None):
    """Centres of bright particles of ``diameter`` (px): the local maxima of a difference of Gaussians
    tuned to that diameter that stand ``min_seed`` robust σ (of the band-passed volume) above its
    background; a :class:`BlobSeeds`.

    The Laplacian of Gaussian responds most at the centre of a ball of radius r for σ = r/√ndim
    (Lindeberg 1998); its difference-of-Gaussians approximation (σ and 1.6σ) is a band-pass that
    keeps touching particles apart, since the dip between two particles is darker than their centres
    at that scale. One maximum is kept per window of r/2 each side; touching particles lie a diameter
    apart and stay separate. Positions are refined to sub-voxel by a parabola through the maximum and
    its two neighbours along each axis. ``allowed`` (boolean, same shape) restricts the seeds;
    ``window`` (odd, voxels) replaces the r/2-each-side window (3 keeps every local maximum).

    References
    ----------
    T. Lindeberg, "Feature detection with automatic scale selection", Int. J. Comput. Vis. 30:79 (1998).

    Examples
    --------
    >>> ball = ((np.indices((24, 24, 24)) - 12.0) ** 2).sum(0) <= 16
    >>> seeds = blob_seeds(ball.astype(float), diameter=8, min_seed=1)
    >>> len(seeds), seeds.centres.round(2).tolist()
    (1, [[12.0, 12.0, 12.0]])
    """
    signal = np.asarray(signal, np.float32)
    radius = diameter / 2.0
    sigma = radius / np.sqrt(signal.ndim)
    band = (ndimage.gaussian_filter(signal, sigma, truncate=3.0)
            - ndimage.gaussian_filter(signal, DOG_RATIO * sigma, truncate=3.0))
    noise = mad_gau(band[(slice(None, None, 2),) * band.ndim]) or float(np.std(band)) or 1.0
    window = 2 * int(np.ceil(radius / 2)) + 1 if window is None else int(window)
    peaks = (band == ndimage.maximum_filter(band, size=window)) & (band >= min_seed * noise) & (band > 0)
    if allowed is not None:
        peaks &= allowed
    labels, count = ndimage.label(peaks, ndimage.generate_binary_structure(band.ndim, band.ndim))
    first = np.array([[s.start for s in box] for box in ndimage.find_objects(labels)], int).reshape(-1, band.ndim)
    centres = first.astype(float)
    for axis in range(band.ndim):
        inner = (first[:, axis] > 0) & (first[:, axis] < band.shape[axis] - 1)
        at = first[inner]
        below, above = at.copy(), at.copy()
        below[:, axis] -= 1
        above[:, axis] += 1
        low, mid, high = (band[tuple(a.T)].astype(float) for a in (below, at, above))
        curvature = low - 2 * mid + high
        with np.errstate(invalid='ignore', divide='ignore'):
            offset = np.where(curvature < 0, 0.5 * (low - high) / curvature, 0.0)
        centres[inner, axis] += np.clip(offset, -0.5, 0.5)
    return BlobSeeds(labels, centres, band[tuple(first.T)] / noise)


def _split_at_scale(signal, work, allowed, diameter_px, scale, working_size, min_seed):
    """Watershed of the low-passed volume inside the foreground, from blob seeds at the particle scale:
    touching particles become one region each. Positions are the seeds'; diameters (equal volume and
    largest equal-area xy section) are the regions'."""
    seeds = blob_seeds(signal, diameter_px, min_seed, allowed)
    labels = watershed(-work, seeds.labels, mask=allowed)
    # each region down to half its mean contrast (the background is at 0), as the unsplit picker's
    # half-maximum re-growth; the foreground threshold still bounds it (a blurred ball reads ~7 % large)
    count = len(seeds)
    owner = labels.ravel()
    level = REGION_LEVEL * np.bincount(owner, weights=work.ravel(), minlength=count + 1) / np.maximum(
        np.bincount(owner, minlength=count + 1), 1)
    labels = np.where(work >= level[labels], labels, 0)
    _, d3, dxy, score, peak = _measure(labels, len(seeds), work, scale, working_size, 'equal_volume')
    return _to_input_xyz(seeds.centres, scale), d3, dxy, score, peak


def _median_particle_diameter(diameters, working_size):
    """The median accepted diameter (px) of SIMPLE's statistics, or of all diameters if none is accepted."""
    if not len(diameters):
        return None
    estimate = estimate_particle_size(diameters, working_size)
    chosen = diameters[estimate.filter.accepted] if isinstance(estimate, SizeEstimate) else diameters
    return float(np.median(chosen)) / working_size


def pick_components(volume, voxel_size, settings=PickSettings(), mask=None, gate=True):
    """Segment ``volume`` (indexed [z, y, x] or [y, x]) and measure its blobs; a :class:`Components`.

    SIMPLE's picker (threshold, two erosions, connected components) gives first diameters; with
    ``settings.split`` (default) their statistics set the scale of a blob detector whose seeds split
    the foreground by a watershed of the low-passed volume (crowded particles touch, and erosions that
    separate them would swallow particles only a few voxels across), re-centred on the measured median
    diameter until it settles. The low-pass never goes finer than twice the Nyquist period.
    ``mask`` (same shape, non-zero = allowed) restricts the foreground, like SIMPLE's carbon mask.
    With ``gate`` only components whose diameter lies in ``settings.diameter_range`` are returned.

    References
    ----------
    C. F. Reboul et al., "SIMPLE 3.0", Protein Sci. 27:51 (2018); T. Lindeberg, Int. J. Comput. Vis.
    30:79 (1998) for the blob scale.

    Examples
    --------
    >>> ball = ((np.indices((40, 40, 40)) - 20.0) ** 2).sum(0) <= 36
    >>> found = pick_components(-ball.astype(np.float32), 10.0)
    >>> len(found), round(float(found.diameter[0]))  # a 120 Å ball, split regions read it a little large
    (1, 128)
    >>> round(float(pick_components(-ball.astype(np.float32), 10.0, PickSettings(split=False)).diameter[0]))
    118
    """
    settings.validate()
    volume = np.asarray(volume)
    if volume.ndim not in (2, 3) or min(volume.shape) < 3:
        raise CryoSegInputError(f'segdiam picking needs a 2-D image or a 3-D volume, not shape {volume.shape}')
    if mask is not None and np.shape(mask) != volume.shape:
        raise CryoSegInputError(f'the mask shape {np.shape(mask)} differs from the volume shape {volume.shape}')
    check_volume_values(volume)
    out_shape, scale = working_grid(volume.shape, voxel_size, settings.working_size)
    working_size = float(voxel_size * np.mean(scale))
    signal = _to_working(volume, scale, out_shape)
    if settings.contrast == 'dark':
        signal = -signal
    work = signal
    sigma = lowpass_sigma(max(settings.lowpass, NYQUIST_LOWPASS * working_size), working_size)
    if sigma > 0.3:
        work = ndimage.gaussian_filter(work, sigma)
    if settings.median:
        work = ndimage.median_filter(work, size=3)
    noise_sigma = mad_gau(work[(slice(None, None, 2),) * work.ndim])
    work = (work - np.median(work)) / (noise_sigma or 1.0)
    threshold = binarisation_threshold(work, settings.foreground_fraction, settings.threshold)

    structure = ndimage.generate_binary_structure(work.ndim, work.ndim)  # 3×3(×3), 26-connected
    foreground = work >= threshold
    eroded = ndimage.binary_erosion(foreground, structure, iterations=2, border_value=1)
    eroded = _fill_holes(eroded, structure)
    inside = None
    if mask is not None:
        inside = _to_working(np.asarray(mask) != 0, scale, out_shape, order=0)
        eroded &= inside
        foreground &= inside
    labels, count = ndimage.label(eroded, structure)
    if settings.estimator == 'equal_volume':
        labels = _grow_to_half_maximum(work, labels, count, structure, inside)
    measured = _measure(labels, count, work, scale, working_size, settings.estimator)
    # The threshold aims at a foreground fraction, so it always cuts into the noise and the texture of
    # the ice, whose blobs then outnumber the particles and win the diameter statistics; a particle's
    # brightest voxel stands min_peak robust σ above the background, theirs rarely does.
    # (Without noise, as on synthetic data, every blob is significant.)
    found = _components(measured, work.ndim, settings, working_size, threshold, noise_sigma)
    logger.info(f"segdiam: {count} components at {working_size:.2f} Å/px (threshold {threshold:.2f} σ), "
                f"{len(found)} with a peak of at least {settings.min_peak:g} σ")
    if settings.split:
        unsplit = found
        diameter = _median_particle_diameter(found.select(in_range(found.diameter, settings.diameter_range))
                                             .diameter, working_size)
        for _ in range(SCALE_ROUNDS if diameter else 0):
            measured = _split_at_scale(signal, work, foreground, diameter, scale, working_size,
                                       settings.min_seed if noise_sigma > 0 else 0.0)
            found = _components(measured, work.ndim, settings, working_size, threshold, noise_sigma)
            logger.info(f"segdiam: {len(found)} particles split at the scale of {diameter * working_size:.0f} Å")
            measured_diameter = _median_particle_diameter(
                found.select(in_range(found.diameter, settings.diameter_range)).diameter, working_size)
            if not measured_diameter or abs(measured_diameter - diameter) <= SCALE_TOLERANCE * diameter:
                break
            diameter = measured_diameter
        # Splitting can only add particles; fewer than the unsplit picker found means the seeds are too
        # weak for these data (sparse particles in plain noise), and the unsplit result stands.
        if _count_in_range(found, settings) < _count_in_range(unsplit, settings):
            logger.info(f"segdiam: the split found fewer particles than the unsplit picker; keeping its "
                        f"{_count_in_range(unsplit, settings)}")
            found = unsplit
    if gate:
        found = found.select(in_range(found.diameter, settings.diameter_range))
    return found


def _count_in_range(found, settings):
    return int(np.count_nonzero(in_range(found.diameter, settings.diameter_range)))


def _components(measured, ndim, settings, working_size, threshold, noise_sigma):
    xyz, d3, dxy, score, peak = measured
    if ndim == 2:
        d3 = dxy
    chosen = dxy if settings.in_plane else d3
    found = Components(xyz, chosen, d3, dxy, score, working_size, threshold)
    return found.select(peak >= settings.min_peak) if noise_sigma > 0 else found


def in_range(diameters, bounds):
    low, high = bounds
    return (diameters >= low) & (diameters <= high)


# ----------------------------------------------------------------------------- statistics
@dataclass
class DiameterFilter:
    """Clustering and acceptance of a diameter sample (policy stage 2–3)."""
    backend: str
    stats: object  # Stats of all diameters
    mad: float  # 1.4826 · MAD of all diameters
    clusters: object  # Clusters
    eligible: np.ndarray  # per cluster: non-empty and not an excluded edge cluster
    z_mean: np.ndarray  # per cluster |μ − median| / mad
    z_population: np.ndarray  # per cluster (median(pops) − pop) / (1.4826 MAD(pops)); 0 if suppressed
    population_test: bool  # False when MAD(pops) is exactly 0
    accepted_clusters: np.ndarray  # per cluster
    accepted: np.ndarray  # per diameter


@dataclass
class SizeEstimate:
    """The box size (px of ``pixel_size``), mask diameter (Å) and re-pick bounds (Å)."""
    box: int
    mask_diameter: float
    minv: float
    maxv: float
    pixel_size: float
    stats_after: object
    filter: DiameterFilter
    warnings: list = field(default_factory=list)

    @property
    def bounds(self):
        return (self.minv, self.maxv)


@dataclass
class NoEstimate:
    """No size could be estimated; ``reason`` says why, for the user."""
    reason: str
    filter: Optional[DiameterFilter] = None


def _robust_z(values, centre, scale):
    """|values − centre| / scale; with scale 0, 0 where values equal the centre and ∞ elsewhere."""
    deviation = np.abs(np.asarray(values, float) - centre)
    if scale > 0:
        return deviation / scale
    return np.where(deviation <= 1e-9, 0.0, np.inf)


def filter_diameters(diameters, backend='kmeans', sigma_crit=SIGMA_CRIT, clusters=NQ_DIAMS):
    """Cluster the diameters and accept the clusters that pass both z-score criteria."""
    diameters = np.asarray(diameters, float).ravel()
    stats = calc_stats(diameters)
    mad = mad_gau(diameters, stats.median)
    if backend == 'kmeans':
        partition = sortmeans(diameters, clusters)
        eligible = partition.nonempty.copy()
        eligible[[0, -1]] = False  # the two tail clusters are never accepted
    elif backend == 'hac':
        partition = hac_1d_fast(diameters, stats.sdev)
        eligible = partition.nonempty.copy()
    else:
        raise CryoSegInputError(f"clustering must be 'kmeans' or 'hac', not {backend!r}")
    with np.errstate(invalid='ignore'):
        z_mean = _robust_z(partition.means, stats.median, mad)
    populations = partition.populations[partition.nonempty]
    population_median = float(np.median(populations))
    population_mad = mad_gau(populations, population_median)
    population_test = population_mad != 0
    z_population = ((population_median - partition.populations) / population_mad if population_test
                    else np.zeros(len(partition.populations)))
    accepted_clusters = eligible & (z_mean < sigma_crit) & (z_population < sigma_crit)
    return DiameterFilter(backend, stats, mad, partition, eligible, z_mean, z_population, population_test,
                          accepted_clusters, accepted_clusters[partition.labels])


def box_and_mask(maxv, pixel_size, rounding='up'):
    """Policy stages 4–5: box = find_magic_box(nint(1.5·maxv/smpd)); mask = min((box − 6)·smpd, 1.2·maxv)."""
    box = find_magic_box(int(nint(BOX_FACTOR * maxv / pixel_size)), rounding)
    return box, float(min((box - COSMSKHALFWIDTH) * pixel_size, MASK_FACTOR * maxv))


def estimate_particle_size(diameters, pixel_size, backend='kmeans', sigma_crit=SIGMA_CRIT,
                           rounding='up', fallback=None):
    """Policy stages 2–5 on the diameters (Å) of all volumes; a :class:`SizeEstimate` or a
    :class:`NoEstimate`. ``fallback='all'`` uses all diameters when no cluster is accepted."""
    if not np.isfinite(pixel_size) or pixel_size <= 0:
        raise CryoSegInputError(f'the pixel size must be a positive number of Å, not {pixel_size}')
    if rounding not in ('up', 'closest'):
        raise CryoSegInputError(f"box rounding must be 'up' or 'closest', not {rounding!r}")
    diameters = np.asarray(diameters, float).ravel()
    diameters = diameters[np.isfinite(diameters)]
    if not len(diameters):
        return NoEstimate('no particle-like blob was found in any tomogram, so no diameter could be '
                          'measured; check the particle contrast, the diameter range and the mask')
    result = filter_diameters(diameters, backend, sigma_crit)
    selected = diameters[result.accepted]
    warnings = []
    if not len(selected):
        if fallback != 'all':
            return NoEstimate(f'the diameter statistics rejected every cluster of the {len(diameters)} '
                              f'diameters ({result.stats.describe(" Å")}); no population stands out as '
                              'the particles. Try the other clustering or widen the diameter range', result)
        selected = diameters
        warnings.append('no cluster was accepted; the box is derived from all diameters')
    stats_after = calc_stats(selected)
    box, mask = box_and_mask(stats_after.maxv, pixel_size, rounding)
    return SizeEstimate(box, mask, stats_after.minv, stats_after.maxv, pixel_size, stats_after, result, warnings)


def gate_diameters(components, estimate):
    """Policy stage 6: keep the components whose diameter lies in the ACCEPTED [minv, maxv]."""
    return components.select(in_range(components.diameter, estimate.bounds))


# ----------------------------------------------------------------------------- tables
def components_table(rows):
    """An emtable STAR table of picks. ``rows`` = [(tsId, Components, accepted or None)], positions as
    0-based voxel indices (x, y, z) of the input tomogram, diameters in Å."""
    from emtable import Table

    table = Table(columns=['rlnTomoName', 'rlnCoordinateX', 'rlnCoordinateY', 'rlnCoordinateZ',
                           'cryosegDiameter', 'cryosegDiameterXY', 'cryosegDiameter3D', 'cryosegScore',
                           'cryosegAccepted'])
    for ts_id, found, accepted in rows:
        xyz = np.zeros((len(found), 3))
        xyz[:, :found.xyz.shape[1]] = found.xyz
        flags = np.ones(len(found), bool) if accepted is None else np.asarray(accepted, bool)
        for position, d, dxy, d3, score, flag in zip(xyz, found.diameter, found.diameter_xy,
                                                     found.diameter_3d, found.score, flags):
            table.addRow(ts_id, *(float(v) for v in position), float(d), float(dxy), float(d3), float(score),
                         int(flag))
    return table


def save_components(path, found):
    np.savez(path, xyz=found.xyz, diameter=found.diameter, diameter_3d=found.diameter_3d,
             diameter_xy=found.diameter_xy, score=found.score, working_size=found.working_size,
             threshold=found.threshold)


def load_components(path):
    with np.load(path) as data:
        return Components(data['xyz'], data['diameter'], data['diameter_3d'], data['diameter_xy'],
                          data['score'], float(data['working_size']), float(data['threshold']))


def estimate_summary(estimate):
    """A JSON-able record of a SizeEstimate or NoEstimate (for protocol summaries and viewers)."""
    record = {'ok': isinstance(estimate, SizeEstimate)}
    result = estimate.filter
    if result is not None:
        clusters = result.clusters
        record.update(backend=result.backend, before=vars(result.stats), mad=result.mad,
                      cluster_means=[None if np.isnan(m) else float(m) for m in clusters.means],
                      cluster_populations=[int(p) for p in clusters.populations],
                      cluster_accepted=[bool(a) for a in result.accepted_clusters])
    if record['ok']:
        record.update(box=estimate.box, mask_diameter=estimate.mask_diameter, minv=estimate.minv,
                      maxv=estimate.maxv, pixel_size=estimate.pixel_size, after=vars(estimate.stats_after),
                      warnings=estimate.warnings)
    else:
        record['reason'] = estimate.reason
    return record
