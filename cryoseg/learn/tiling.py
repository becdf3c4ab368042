"""Tiled inference of a volume with any patch model (numpy; algorithms.md §6.2).

The volume is padded by a margin (mirrored), cut into cubic patches on a regular grid whose last patch
is flush with the end, and each patch is passed to the model. Only the central part of each output
patch (without the margin, where the model lacks context) is kept; overlapping kept parts are
averaged with float32 sums. Because the patches form a grid, the number of patches covering a voxel
is the product of per-axis counts, so no count volume is stored. The float32 sums accumulate
deviations from the first estimate of each voxel (mean = first + mean deviation): where the patches
agree, as for any model whose reach is within the margin, the result is exactly the whole-volume
result, which a plain sum of three or more equal values would not give in float32.
"""
import logging

import numpy as np

from ..core.errors import CryoSegInputError

logger = logging.getLogger(__name__)


def zscore(volume, slab=32):
    """float32 copy of ``volume`` with mean 0 and standard deviation 1 (statistics in float64, by
    slabs, so a memory-mapped tomogram is read once for them)."""
    total = total2 = 0.0
    for start in range(0, len(volume), slab):
        block = np.asarray(volume[start:start + slab], np.float64)
        total += block.sum()
        total2 += np.square(block).sum()
    count = np.prod(volume.shape)
    mean = total / count
    std = np.sqrt(max(total2 / count - mean ** 2, 0.0))
    if not np.isfinite(std) or std == 0:
        raise CryoSegInputError('the tomogram is constant or holds values that are not finite numbers')
    out = np.empty(volume.shape, np.float32)
    for start in range(0, len(volume), slab):
        out[start:start + slab] = (np.asarray(volume[start:start + slab], np.float32) - mean) / std
    return out


def tile_starts(length, patch, step):
    """Patch starts along a padded axis of ``length`` ≥ ``patch``: every ``step``, the last flush."""
    starts = list(range(0, length - patch + 1, step))
    if starts[-1] != length - patch:
        starts.append(length - patch)
    return starts


def check_tiling(patch, margin, overlap=0):
    if patch < 1 or margin < 0 or 2 * margin >= patch:
        raise CryoSegInputError(f'the patch ({patch} voxels) must be larger than twice the margin ({margin})')
    if overlap < 0 or overlap >= patch - 2 * margin:
        raise CryoSegInputError(f'the overlap must be between 0 and the kept part of a patch '
                                f'({patch - 2 * margin} voxels); got {overlap}')


def predict_tiled(volume, model, patch=160, margin=25, overlap=4, channels=None):
    """Apply ``model`` (a callable taking a float32 [P, P, P] patch and returning [P, P, P] or
    [C, P, P, P]) to ``volume`` [z, y, x] by tiles; returns float32 [z, y, x] or [C, z, y, x].

    ``margin``: voxels cut from each side of every output patch (the volume is mirror-padded by it);
    ``overlap``: extra overlap of the kept parts (the step is ``patch - 2 margin - overlap``).
    ``channels`` is only used to size the output before the first call (default: from that call).
    """
    volume = np.asarray(volume, np.float32)
    if volume.ndim != 3 or min(volume.shape) < 1:
        raise CryoSegInputError(f'tiled inference needs a 3-D volume; got shape {volume.shape}')
    check_tiling(patch, margin, overlap)
    kept = patch - 2 * margin
    step = kept - overlap
    pads = [(margin, max(n + 2 * margin, patch) - n - margin) for n in volume.shape]
    padded = np.pad(volume, pads, mode='symmetric')
    starts = [tile_starts(length, patch, step) for length in padded.shape]
    coverage = []  # per axis: how many kept parts cover each voxel of the original volume
    for n, axis_starts in zip(volume.shape, starts):
        counts = np.zeros(n, np.float32)
        for start in axis_starts:
            counts[max(start, 0):max(start + kept, 0)] += 1  # kept part in original coordinates
        coverage.append(counts)
    total = len(starts[0]) * len(starts[1]) * len(starts[2])
    first = deviations = None
    done = 0
    for z in starts[0]:
        for y in starts[1]:
            for x in starts[2]:
                out = np.asarray(model(padded[z:z + patch, y:y + patch, x:x + patch]), np.float32)
                single = out.ndim == 3
                out = out[None] if single else out
                if out.shape[1:] != (patch,) * 3:
                    raise CryoSegInputError(f'the model returned shape {out.shape} for a {patch}^3 patch')
                if first is None:
                    first = np.full((channels or len(out),) + volume.shape, np.nan, np.float32)
                    deviations = np.zeros_like(first)
                # kept part of this patch, in original-volume coordinates, clipped to the volume
                target = (slice(None),) + tuple(slice(s, min(s + kept, n)) for s, n in zip((z, y, x), volume.shape))
                kept_out = out[(slice(None),) + tuple(slice(margin, margin + t.stop - t.start) for t in target[1:])]
                seen = first[target]
                new = np.isnan(seen)
                seen[new] = kept_out[new]
                deviations[target] += np.where(new, 0, kept_out - seen)
                done += 1
                if done % 50 == 0 or done == total:
                    logger.info('tiled inference: %d of %d patches', done, total)
    deviations /= coverage[0][:, None, None] * coverage[1][None, :, None] * coverage[2][None, None, :]
    first += deviations
    return first[0] if single else first
