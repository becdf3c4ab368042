"""Bad input files of the robustness catalogue, written as a careless user or a broken tool would.

Each writer takes a target path and returns it; the volumes are small so every case stays fast.
"""
import hashlib
import os

import mrcfile
import numpy as np

SHAPE_ZYX = (24, 48, 48)


def noise_volume(seed=0, shape=SHAPE_ZYX):
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def write_mrc(path, data, voxel_size=10.0):
    os.makedirs(os.path.dirname(os.path.abspath(str(path))), exist_ok=True)
    with mrcfile.new(str(path), overwrite=True) as mrc:
        mrc.set_data(np.asarray(data, np.float32))
        mrc.voxel_size = voxel_size
    return str(path)


def not_mrc(path):
    with open(path, 'w') as handle:
        handle.write('this is a text file, not a tomogram\n')
    return str(path)


def truncated_mrc(path):
    write_mrc(path, noise_volume())
    size = os.path.getsize(path)
    with open(path, 'r+b') as handle:
        handle.truncate(1024 + (size - 1024) // 2)
    return str(path)


def corrupt_header(path):
    """A valid file whose header's mode (data type) word is garbage."""
    write_mrc(path, noise_volume())
    with open(path, 'r+b') as handle:
        handle.seek(12)  # MODE, 4th 32-bit word
        handle.write(np.int32(77).tobytes())
    return str(path)


def nan_volume(path):
    data = noise_volume()
    data[5, 10, 20] = np.nan
    return write_mrc(path, data)


def inf_volume(path):
    data = noise_volume()
    data[3, 4, 5] = np.inf
    return write_mrc(path, data)


def constant_volume(path):
    return write_mrc(path, np.full(SHAPE_ZYX, 3.0, np.float32))


def image_2d(path):
    return write_mrc(path, noise_volume()[0])


def zero_voxel_size(path):
    return write_mrc(path, noise_volume(), voxel_size=0.0)


BAD_VOLUMES = {
    'not_mrc': (not_mrc, 'not a readable MRC file'),
    'truncated': (truncated_mrc, 'not a readable MRC file'),
    'corrupt_header': (corrupt_header, 'not a readable MRC file'),
    'nan': (nan_volume, 'NaN or infinite'),
    'inf': (inf_volume, 'NaN or infinite'),
    'constant': (constant_volume, 'constant'),
    'image_2d': (image_2d, '3-D volume'),
}


def checksums(paths):
    """{path: sha256} of files, to prove that inputs were not modified."""
    result = {}
    for path in paths:
        with open(path, 'rb') as handle:
            result[str(path)] = hashlib.sha256(handle.read()).hexdigest()
    return result
