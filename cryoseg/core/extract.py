"""Cutting subtomograms out of a tomogram (algorithms.md §4.2).

Positions are (x, y, z) voxel indices from the first voxel; a box of ``box`` voxels puts the position at
index ``box // 2`` on every axis, so an integer position ``(x, y, z)`` gives exactly
``vol[z - box//2 : z - box//2 + box, y - ..., x - ...]``. Boxes are read one by one through the memory
map, so only the boxes themselves are ever in memory.

Sub-voxel positions are handled in one of two ways: ``'shift'`` crops at the rounded position (the
voxels stay untouched) and returns the residual, which the caller stores in the transform's shifts;
``'interpolate'`` resamples the box with a cubic spline so the position falls on the box centre.

Processing order per box: border policy, sub-voxel handling, invert, Fourier-crop downsampling, then
normalisation (last, so that the file the user gets really has mean 0 and std 1).
"""
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from .checks import as_positions
from .errors import CryoSegInputError

BORDER_POLICIES = ('skip', 'pad')
SUBVOXEL_MODES = ('shift', 'interpolate')
NORMALIZATIONS = ('none', 'box', 'outside_sphere')
_SPLINE_MARGIN = 3  # voxels read around a box that is interpolated (reach of the cubic spline)


def rescale_positions(xyz, from_sampling, to_sampling):
    """Positions picked at ``from_sampling`` (Å/px) expressed in voxels of ``to_sampling``.

    Scipion's convention (pure scaling about the first voxel): a position 2·i picked at bin 1 is the
    position i at bin 2, so a box around it at bin 2 covers exactly the bin-1 box binned by 2.
    """
    if from_sampling <= 0 or to_sampling <= 0:
        raise CryoSegInputError(f"sampling rates must be positive (got {from_sampling} and {to_sampling} Å/px)")
    return np.asarray(xyz, float) * (float(from_sampling) / float(to_sampling))


def downsampled_box(box, factor):
    """Box after downsampling by ``factor``: ``box / factor`` rounded to the nearest even size."""
    return max(2, 2 * int(np.floor(box / factor / 2 + 0.5)))


@dataclass(frozen=True)
class ExtractionSettings:
    box: int  # voxels of the extraction tomogram
    down_factor: float = 1.0  # ≥ 1; the output box is ``downsampled_box(box, down_factor)``
    invert: bool = False
    normalize: str = 'none'  # 'none', 'box' (whole box) or 'outside_sphere'
    sphere_radius: float = None  # px of the output box, for 'outside_sphere'; default: half the box
    border: str = 'skip'  # 'skip' boxes leaving the volume, or 'pad' them with the inside mean
    subvoxel: str = 'shift'

    def __post_init__(self):
        if int(self.box) != self.box or self.box < 2:
            raise CryoSegInputError(f"the box size must be a whole number of at least 2 voxels, not {self.box}")
        if not self.down_factor >= 1:
            raise CryoSegInputError(f"the downsampling factor must be 1 or more, not {self.down_factor}")
        for name, value, allowed in (('border policy', self.border, BORDER_POLICIES),
                                     ('sub-voxel mode', self.subvoxel, SUBVOXEL_MODES),
                                     ('normalisation', self.normalize, NORMALIZATIONS)):
            if value not in allowed:
                raise CryoSegInputError(f"unknown {name} {value!r}; choose one of {', '.join(allowed)}")
        if self.sphere_radius is not None and not 0 < self.sphere_radius < self.output_box * np.sqrt(3) / 2:
            raise CryoSegInputError(f"the normalisation sphere radius ({self.sphere_radius} px) must be "
                                    f"positive and leave voxels outside it in a box of {self.output_box}")

    @property
    def output_box(self):
        return self.box if self.down_factor == 1 else downsampled_box(self.box, self.down_factor)

    @property
    def scale(self):
        """Input voxels per output voxel (exactly box / output box)."""
        return self.box / self.output_box

    def output_sampling(self, sampling):
        return float(sampling) * self.scale


@dataclass
class BoxPlan:
    """Where each box lies in a tomogram; ``kept``/``skipped`` index the input positions."""
    centres: np.ndarray  # (N, 3) rounded (x, y, z) voxel of each box's centre
    residuals: np.ndarray  # (N, 3) position − rounded centre, in input voxels
    inside: np.ndarray  # (N,) bool: the box lies fully inside the volume
    kept: np.ndarray
    skipped: np.ndarray


def plan_boxes(shape_zyx, positions_xyz, settings):
    """Round positions to box centres and apply the border policy (a box leaving the volume on any
    side, lower or upper, is skipped with ``'skip'``)."""
    positions = as_positions(positions_xyz, 'particle positions')
    if len(shape_zyx) != 3 or settings.box > min(shape_zyx):
        raise CryoSegInputError(f"the box ({settings.box} px) is larger than the tomogram "
                                f"({' x '.join(map(str, shape_zyx[::-1]))} px): choose a smaller box")
    centres = np.floor(positions + 0.5).astype(np.int64)
    lower = centres - settings.box // 2
    size_xyz = np.asarray(shape_zyx[::-1])
    inside = np.all((lower >= 0) & (lower + settings.box <= size_xyz), axis=1)
    overlaps = np.all((lower < size_xyz) & (lower + settings.box > 0), axis=1)
    keep = inside if settings.border == 'skip' else overlaps
    return BoxPlan(centres=centres, residuals=positions - centres, inside=inside,
                   kept=np.flatnonzero(keep), skipped=np.flatnonzero(~keep))


def crop(data, lower_xyz, size, pad=False):
    """``size``³ voxels of ``data[z, y, x]`` starting at ``lower_xyz``, as float32.

    With ``pad`` the part outside the volume is filled with the mean of the part inside; without
    it the box must lie inside the volume.
    """
    lower = np.asarray(lower_xyz[::-1], np.int64)
    upper = lower + size
    if np.all(lower >= 0) and np.all(upper <= data.shape):
        return np.array(data[lower[0]:upper[0], lower[1]:upper[1], lower[2]:upper[2]], np.float32)
    if not pad:
        raise CryoSegInputError(f"a box of {size} voxels at {tuple(lower_xyz)} leaves the volume")
    lo = np.maximum(lower, 0)
    hi = np.minimum(upper, data.shape)
    if np.any(hi <= lo):
        raise CryoSegInputError(f"a box of {size} voxels at {tuple(lower_xyz)} lies outside the volume")
    inside = np.asarray(data[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]], np.float32)
    result = np.full((size,) * 3, inside.mean(dtype=np.float64), np.float32)
    dest = tuple(slice(a - b, c - b) for a, b, c in zip(lo, lower, hi))
    result[dest] = inside
    return result


def fourier_crop(volume, size):
    """Downsample a cubic box to ``size``³ by keeping its lowest ``size`` frequencies per axis.

    The mean is preserved and the box centre (index n//2) maps to the new centre (size//2).
    """
    n = volume.shape[0]
    if size == n:
        return volume
    spectrum = np.fft.fftshift(np.fft.fftn(volume))
    start = n // 2 - size // 2
    window = slice(start, start + size)
    cropped = np.fft.ifftn(np.fft.ifftshift(spectrum[window, window, window])).real
    return (cropped * (size / n) ** 3).astype(np.float32)


def sphere_mask(size, radius):
    """True inside a sphere of ``radius`` voxels around the box centre (index size//2)."""
    axis = np.arange(size) - size // 2
    z, y, x = np.meshgrid(axis, axis, axis, indexing='ij', sparse=True)
    return x ** 2 + y ** 2 + z ** 2 <= radius ** 2


def normalize(volume, outside=None):
    """Subtract the mean and divide by the std of the whole box, or of the voxels where ``outside``
    is True (the background around the particle)."""
    region = volume if outside is None else volume[outside]
    std = float(region.std(dtype=np.float64))
    return ((volume - region.mean(dtype=np.float64)) / (std if std > 0 else 1.0)).astype(np.float32)


class Extractor:
    """Cuts and preprocesses the boxes of one tomogram; ``data`` is its [z, y, x] (memory-mapped)
    array. ``plan`` tells which positions give a box; :meth:`boxes` yields them one by one."""

    def __init__(self, data, positions_xyz, settings):
        self.data = data
        self.settings = settings
        self.plan = plan_boxes(data.shape, positions_xyz, settings)
        self._outside = None
        if settings.normalize == 'outside_sphere':
            radius = settings.sphere_radius or settings.output_box / 2
            self._outside = ~sphere_mask(settings.output_box, radius)

    def residuals_out(self, index):
        """Sub-voxel offset (x, y, z) of the particle from the output box centre, in output voxels
        (zero when interpolating, which moves the particle onto the centre)."""
        if self.settings.subvoxel == 'interpolate':
            return np.zeros(3)
        return self.plan.residuals[index] / self.settings.scale

    def box(self, index):
        """The processed box of position ``index`` (one of ``plan.kept``)."""
        settings = self.settings
        lower = self.plan.centres[index] - settings.box // 2
        pad = settings.border == 'pad'
        residual = self.plan.residuals[index]
        if settings.subvoxel == 'interpolate' and np.any(residual != 0):
            margin = _SPLINE_MARGIN
            block = crop(self.data, lower - margin, settings.box + 2 * margin, pad=True)
            # block[i] = vol[lower - margin + i]; the box needs vol[lower + j + residual]
            block = ndimage.shift(block, -residual[::-1], order=3, mode='nearest')
            volume = block[margin:-margin, margin:-margin, margin:-margin]
        else:
            volume = crop(self.data, lower, settings.box, pad=pad)
        if settings.invert:
            volume = np.negative(volume, out=volume)
        volume = fourier_crop(volume, settings.output_box)
        if settings.normalize != 'none':
            volume = normalize(volume, self._outside)
        return volume

    def boxes(self):
        """``(index, box)`` for every kept position, in input order."""
        for index in self.plan.kept:
            yield int(index), self.box(index)


def extract(data, positions_xyz, settings):
    """All boxes at once (small sets): ``(stack[N, b, b, b], kept indices, skipped indices)``."""
    extractor = Extractor(data, positions_xyz, settings)
    size = settings.output_box
    stack = np.empty((len(extractor.plan.kept), size, size, size), np.float32)
    for slot, (_, volume) in enumerate(extractor.boxes()):
        stack[slot] = volume
    return stack, extractor.plan.kept, extractor.plan.skipped
