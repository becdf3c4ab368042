"""Image statistics that say whether a tomogram looks like a crowded cell: measured the same way on a
real tomogram and on a phantom, so the two can be compared number by number.

How each number is measured (``d`` = particle diameter in voxels, ``σ = d / 4`` the particle low-pass,
a Gaussian whose half width matches a particle's radius):

- *specimen region*: local standard deviation of the low-passed tomogram in a Gaussian window of
  σ = d, thresholded by Otsu's method on its logarithm (the lamella or ice slab is textured, the
  vacuum and empty ice above and below are not). The *empty region* lies farther than d from it.
- *noise power spectrum*: the power of xy patches (32 × 32 voxels, Hann window) lying wholly in the
  empty region, averaged and binned by radial frequency (16 bins up to Nyquist), normalised to mean
  1 over the bins above zero frequency: its shape, the reconstruction's noise colour. The same for
  patches wholly in the specimen region gives the specimen spectrum, normalised by the noise level
  (how much structure stands above the noise, per frequency). xy patches, because the missing wedge
  leaves that plane intact.
- *CNR* (contrast-to-noise ratio per particle): at each given particle centre the low-passed value
  is compared with the median of the low-passed specimen region; the mean of that central contrast
  (positive when particles have the tomogram's contrast) over the particles, divided by the standard
  deviation of the low-passed empty region (the noise at the same low-pass).
- *particle density*: given particles per µm³ of specimen region. For a tomogram with an incomplete
  annotation it is a lower bound; the *blob density* needs no annotation: local extrema of the
  difference of Gaussians (σ and 1.6 σ) with the particles' contrast, in windows of 0.8 d, inside the
  specimen, stronger than 5 × the noise of that filter in the empty region, per µm³ of specimen.
- *touching fraction*: share of the given particles whose nearest other given particle is closer
  than 1.15 d (a lower bound for an incomplete annotation); the *blob touching fraction* is the same
  among the blobs above.
- *quantisation*: the smallest step between the tomogram's distinct values over the noise standard
  deviation of the empty region (0 for continuous values).
"""
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree
from skimage.filters import threshold_otsu

from .errors import CryoSegInputError

PATCH = 32  # xy patch side of the power spectra; 16 radial bins up to Nyquist
TOUCHING = 1.15  # centres closer than this many diameters touch
BLOB_SIGNIFICANCE = 5.0  # blobs count when their filter response exceeds this many noise std


@dataclass(frozen=True)
class TomogramStatistics:
    """The numbers of :func:`measure_tomogram`; spectra are indexed by ``frequencies`` (1/Å)."""
    voxel_size: float
    specimen_fraction: float
    frequencies: np.ndarray
    noise_psd: np.ndarray
    specimen_psd: np.ndarray
    noise_std: float
    specimen_std_ratio: float  # std of the specimen region over that of the empty region
    central_contrast: float
    cnr: float
    particle_density: float  # per µm³ of specimen
    blob_density: float
    touching_fraction: float
    blob_touching_fraction: float
    quantisation_step: float  # in noise standard deviations; 0 for continuous values

    def rows(self):
        """(label, value text) pairs for a table."""
        return [('specimen region (fraction of the volume)', f'{self.specimen_fraction:.2f}'),
                ('specimen / empty-region std', f'{self.specimen_std_ratio:.2f}'),
                ('CNR per particle (low-pass d/4)', f'{self.cnr:.1f}'),
                ('given particles per µm³ of specimen', f'{self.particle_density:.0f}'),
                ('dark blobs per µm³ of specimen', f'{self.blob_density:.0f}'),
                ('given particles touching another', f'{self.touching_fraction:.2f}'),
                ('blobs touching another', f'{self.blob_touching_fraction:.2f}'),
                ('quantisation step (noise std)', f'{self.quantisation_step:.2f}')]


def _radial_psd(volume, region):
    """Mean Hann-windowed power of the xy patches wholly inside ``region``, in radial bins."""
    nz, ny, nx = volume.shape
    cy, cx = ny // PATCH, nx // PATCH
    if not cy or not cx:
        raise CryoSegInputError(f'the tomogram must be at least {PATCH} voxels wide in x and y')
    shape = (nz, cy, PATCH, cx, PATCH)
    patches = volume[:, :cy * PATCH, :cx * PATCH].reshape(shape).transpose(0, 1, 3, 2, 4)
    inside = region[:, :cy * PATCH, :cx * PATCH].reshape(shape).all(axis=(2, 4))
    patches = patches[inside].astype(np.float64)
    if not len(patches):
        return np.full(PATCH // 2, np.nan)
    patches -= patches.mean(axis=(1, 2), keepdims=True)
    window = np.outer(np.hanning(PATCH), np.hanning(PATCH))
    power = (np.abs(np.fft.fft2(patches * window)) ** 2).mean(axis=0) / np.sum(window ** 2)
    frequency = np.hypot(*np.meshgrid(np.fft.fftfreq(PATCH), np.fft.fftfreq(PATCH), indexing='ij'))
    bins = np.minimum((frequency * PATCH).astype(int), PATCH // 2 - 1)
    return (np.bincount(bins.ravel(), power.ravel(), PATCH // 2)
            / np.bincount(bins.ravel(), minlength=PATCH // 2))


def _touching(centres_zyx, diameter_px):
    if len(centres_zyx) < 2:
        return 0.0
    distance, _ = cKDTree(centres_zyx).query(centres_zyx, 2)
    return float(np.mean(distance[:, 1] < TOUCHING * diameter_px))


def _farther_than(mask, distance):
    """Voxels farther than ``distance`` from ``mask``, on a 2× coarser grid (a margin needs no
    voxel precision, and the distance transform is the slowest step otherwise)."""
    coarse = ndimage.distance_transform_edt(~mask[::2, ::2, ::2], sampling=2.0) > distance
    for axis, size in enumerate(mask.shape):
        coarse = np.repeat(coarse, 2, axis=axis).take(np.arange(size), axis=axis)
    return coarse


def specimen_region(volume, particle_diameter_px):
    """Boolean (z, y, x) mask of the textured specimen (see the module text)."""
    low = ndimage.gaussian_filter(volume.astype(np.float32), particle_diameter_px / 4)
    window = dict(sigma=particle_diameter_px, truncate=2.0)  # a window needs no far Gaussian tails
    mean = ndimage.gaussian_filter(low, **window)
    local_std = np.sqrt(np.maximum(ndimage.gaussian_filter(low * low, **window) - mean ** 2, 1e-12))
    log_std = np.log(local_std)
    return log_std > threshold_otsu(log_std)


def measure_tomogram(volume, voxel_size, particles_zyx, particle_diameter, contrast='dark'):
    """Statistics of ``volume`` (z, y, x) with voxel size ``voxel_size`` (Å), given particle centres
    (an (n, 3) array of z, y, x voxels) of diameter ``particle_diameter`` (Å); ``contrast`` says
    whether dense matter is 'dark' or 'light'. Returns :class:`TomogramStatistics`.

    References: the power spectrum is Welch's averaged-periodogram estimate (Welch, IEEE Trans.
    Audio Electroacoust. 15:70, 1967); the blob filter is a difference of Gaussians (Lindeberg,
    Int. J. Comput. Vis. 30:79, 1998); the specimen threshold is Otsu's (IEEE Trans. SMC 9:62, 1979).

    A dark textured slab (z 24–40) in white noise: the noise spectrum is flat and its std is 1.

    >>> rng = np.random.default_rng(0)
    >>> volume = rng.normal(size=(64, 64, 64)).astype(np.float32)
    >>> volume[24:40] -= 3 * (ndimage.gaussian_filter(rng.normal(size=(16, 64, 64)), 1.5) > 0.1)
    >>> stats = measure_tomogram(volume, 30.0, np.array([[32, 32, 32]]), 180.0)
    >>> round(stats.noise_std, 2), bool(np.all(np.abs(stats.noise_psd[1:] - 1) < 0.1))
    (1.0, True)
    """
    if contrast not in ('dark', 'light'):
        raise CryoSegInputError(f"contrast must be 'dark' or 'light', not {contrast!r}")
    if not voxel_size > 0 or not particle_diameter > 0:
        raise CryoSegInputError('the voxel size and the particle diameter must be positive')
    volume = np.asarray(volume, np.float32)
    dense = volume if contrast == 'light' else -volume  # dense matter positive from here on
    diameter_px = particle_diameter / voxel_size
    sigma = diameter_px / 4
    specimen = specimen_region(dense, diameter_px)
    empty = _farther_than(specimen, diameter_px)
    if not specimen.any() or not empty.any():
        raise CryoSegInputError('the tomogram has no empty region beside its specimen to measure '
                                'the noise in (it needs vacuum or empty ice above or below)')
    noise_psd = _radial_psd(dense, empty)
    noise_level = np.nanmean(noise_psd[1:])
    specimen_psd = _radial_psd(dense, specimen) / noise_level
    noise_psd = noise_psd / noise_level
    noise_std = float(dense[empty].std())

    low = ndimage.gaussian_filter(dense, sigma)
    centres = np.asarray(particles_zyx, float).reshape(-1, 3)
    index = tuple(np.clip(np.round(centres).astype(int), 0, np.array(volume.shape) - 1).T)
    central_contrast = float(np.mean(low[index] - np.median(low[specimen]))) if len(centres) else 0.0
    voxel_um3 = (voxel_size * 1e-4) ** 3
    specimen_um3 = specimen.sum() * voxel_um3

    blob_filter = low - ndimage.gaussian_filter(dense, 1.6 * sigma)
    window = max(3, int(round(0.8 * diameter_px)) | 1)
    blobs = ((blob_filter == ndimage.maximum_filter(blob_filter, size=window)) & specimen
             & (blob_filter > BLOB_SIGNIFICANCE * blob_filter[empty].std()))
    blob_centres = np.argwhere(blobs)

    values = np.unique(volume)
    step = float(np.diff(values).min()) / noise_std if 1 < len(values) <= 65536 else 0.0
    return TomogramStatistics(
        voxel_size=float(voxel_size), specimen_fraction=float(specimen.mean()),
        frequencies=(np.arange(PATCH // 2) + 0.5) / (PATCH * voxel_size),
        noise_psd=noise_psd, specimen_psd=specimen_psd, noise_std=noise_std,
        specimen_std_ratio=float(dense[specimen].std()) / noise_std,
        central_contrast=central_contrast, cnr=central_contrast / float(low[empty].std()),
        particle_density=len(centres) / specimen_um3, blob_density=len(blob_centres) / specimen_um3,
        touching_fraction=_touching(centres, diameter_px),
        blob_touching_fraction=_touching(blob_centres, diameter_px), quantisation_step=step)
