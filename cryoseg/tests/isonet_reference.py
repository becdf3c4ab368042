"""A straightforward whole-volume implementation of IsoNet's mask steps (algorithms.md §1.2).

It is the yardstick of cryoseg's statistics mask: the compatibility test compares against it and
``bench/make_mask.py`` runs :func:`isonet_make_mask_file` as a whole process against the ``cryoseg
make_mask`` command. It follows IsoNet's ``bin/make_mask.py`` and ``util/filter.py`` (IsoNet-cryoET/IsoNet)
step by step, including what cryoseg deliberately does differently: the whole tomogram read into memory
and copied as float32, ``skimage`` resize, box sums by FFT convolution (with IsoNet's ``eps`` in the
count and under the square root), and a full-size float64 buffer for unbinning.
"""
import mrcfile
import numpy as np
from scipy import ndimage, signal
from skimage.transform import resize

EPS = 0.001  # IsoNet's stdmask adds it to the counts and under the square root


def isonet_max_mask(smoothed, side, density_percentage):
    filtered = ndimage.maximum_filter(-smoothed, 2 * side + 1, mode='reflect')
    return (filtered > np.percentile(filtered, 100 - density_percentage)).astype(np.uint8)


def isonet_std_mask(smoothed, side, std_percentage):
    kernel = np.ones((2 * side + 1,) * 3)
    sums = signal.convolve(smoothed, kernel, mode='same')
    square_sums = signal.convolve(smoothed ** 2, kernel, mode='same')
    counts = signal.convolve(np.ones(smoothed.shape), kernel, mode='same') + EPS
    std = np.sqrt((square_sums - sums ** 2 / counts) / counts + EPS)
    return (std > np.percentile(std, 100 - std_percentage)).astype(np.uint8)


def isonet_mask(tomogram, side=4, density_percentage=50.0, std_percentage=50.0, z_crop=0.0):
    """uint8 mask of ``tomogram`` [z, y, x] as IsoNet 1 computes it (std in percentile mode)."""
    tomogram = np.asarray(tomogram, np.float32)
    full_shape = np.array(tomogram.shape)
    half_shape = full_shape // 2
    smoothed = ndimage.gaussian_filter(resize(tomogram, half_shape, anti_aliasing=True), side / 2)
    mask = np.ones(half_shape, np.uint8)
    if density_percentage <= 99.8:
        mask *= isonet_max_mask(smoothed, side, density_percentage)
    if std_percentage <= 99.8:
        mask *= isonet_std_mask(smoothed, side, std_percentage)
    if z_crop > 0:
        mask[:int(z_crop * half_shape[0])] = 0
        mask[int((1 - z_crop) * half_shape[0]):] = 0
    full = np.zeros(full_shape)
    for dz in (0, 1):
        for dy in (0, 1):
            for dx in (0, 1):
                full[dz:2 * half_shape[0]:2, dy:2 * half_shape[1]:2, dx:2 * half_shape[2]:2] = mask
    return (full > 0.5).astype(np.uint8)


def isonet_make_mask_file(in_path, out_path, side=4, density_percentage=50.0, std_percentage=50.0):
    """IsoNet's ``make_mask`` on files: the tomogram read whole and copied as float32, the mask written
    as uint8 with the input's origin and voxel size."""
    with mrcfile.open(in_path) as mrc:
        header = mrc.header
        voxel_size = mrc.voxel_size
        tomogram = mrc.data.astype(np.float32)
    mask = isonet_mask(tomogram, side, density_percentage, std_percentage)
    with mrcfile.new(out_path, overwrite=True) as mrc:
        mrc.set_data(mask)
        mrc.header.origin = header.origin
        mrc.voxel_size = voxel_size


if __name__ == '__main__':  # run as a script: the whole IsoNet command as a process, for bench/make_mask.py
    import sys

    isonet_make_mask_file(*sys.argv[1:3])
