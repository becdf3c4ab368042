"""Segdiam pick speed: cryoseg's full picker and size statistics against a plain scikit-image pipeline.

On the benchmark-size phantom (512×512×256 voxels, 10 Å) the baseline is what a user would write:
Gaussian low-pass (the same σ), Otsu threshold, 26-connected labelling and ``regionprops`` centroids
and equivalent diameters; then, to split touching particles as cryoseg does, a difference of
Gaussians at the scale of the median equivalent diameter, ``peak_local_max`` seeds and a
``watershed`` of the low-passed volume inside the foreground, measured again by ``regionprops``. cryoseg does the whole policy: denoise, k-means threshold choice, two
erosions, hole filling, labelling, half-maximum re-growth, in-plane and 3-D diameters, then the split
of touching particles (blob detector at the scale of the diameter statistics, watershed, re-centred
on the measured median: two to four more band-pass filterings and watersheds of the volume),
clustering, z-score acceptance, box and mask, re-pick. Both are timed alternately (best of 2) in this run.
Target: cryoseg ≤ 1.5× the baseline's time.
"""
import sys

import numpy as np
from scipy import ndimage
from skimage.filters import threshold_otsu
from skimage.feature import peak_local_max
from skimage.measure import label, regionprops
from skimage.segmentation import watershed

from cryoseg.core.phantom import make_phantom, phantom_config
from cryoseg.core.segdiam import (PickSettings, SizeEstimate, estimate_particle_size, gate_diameters,
                                  lowpass_sigma, pick_components)
from timing import best_time

VOXEL = 10.0
REPEATS = 2
TARGET = 1.5


def baseline(volume, sigma):
    smooth = ndimage.gaussian_filter(-volume, sigma)
    foreground = smooth >= threshold_otsu(smooth)
    labels = label(foreground, connectivity=3)
    radius = np.median([region.equivalent_diameter for region in regionprops(labels)]) / 2
    scale = radius / np.sqrt(3)
    band = ndimage.gaussian_filter(-volume, scale) - ndimage.gaussian_filter(-volume, 1.6 * scale)
    seeds = peak_local_max(band, min_distance=int(np.ceil(radius / 2)), labels=foreground, exclude_border=False)
    markers = np.zeros(volume.shape, np.int32)
    markers[tuple(seeds.T)] = np.arange(1, len(seeds) + 1)
    regions = watershed(-smooth, markers, mask=foreground)
    return [(region.centroid, region.equivalent_diameter * VOXEL) for region in regionprops(regions)]


def cryoseg_pick(volume):
    found = pick_components(volume, VOXEL, PickSettings())
    estimate = estimate_particle_size(found.diameter, VOXEL)
    return gate_diameters(found, estimate) if isinstance(estimate, SizeEstimate) else found


def main():
    volume = make_phantom(phantom_config('bench', seed=0)).volume
    sigma = lowpass_sigma(PickSettings().lowpass, VOXEL)
    base_time, base = best_time(baseline, volume, sigma, repeats=REPEATS)
    ours_time, ours = best_time(cryoseg_pick, volume, repeats=REPEATS)
    ratio = ours_time / base_time
    print(f"segdiam pick on {volume.shape[::-1]} voxels: scikit-image baseline {base_time:.2f} s "
          f"({len(base)} regions), cryoseg {ours_time:.2f} s ({len(ours)} picks); ratio {ratio:.2f} "
          f"(target <= {TARGET})")
    return 0 if ratio <= TARGET else 1


if __name__ == '__main__':
    sys.exit(main())
