"""Extraction speed: cryoseg's Extractor against a bare numpy slicing loop over the same memory map.

On the benchmark-size phantom (512×512×256 voxels, 10 Å) both cut the same 10,000 boxes of 32³ at
random positions inside the volume; the baseline is the minimal loop a user would write
(``np.array(data[z0:z0+32, y0:y0+32, x0:x0+32], np.float32)``), cryoseg adds rounding, the border plan
and per-box bookkeeping. The file is read once beforehand so both run on a warm page cache, and the
two are timed alternately (best of 3). Target: cryoseg ≤ 2× the baseline's time.
"""
import os
import sys
import tempfile

import numpy as np

from cryoseg.core.extract import ExtractionSettings, Extractor
from cryoseg.core.mrcio import open_volume
from cryoseg.core.phantom import make_phantom, phantom_config, write_phantom
from timing import best_time

BOX = 32
COUNT = 10_000
REPEATS = 3


def bare_loop(data, corners_xyz):
    checksum = 0.0
    for x0, y0, z0 in corners_xyz:
        checksum += np.array(data[z0:z0 + BOX, y0:y0 + BOX, x0:x0 + BOX], np.float32)[0, 0, 0]
    return checksum


def cryoseg_extract(data, positions_xyz):
    checksum = 0.0
    for _, box in Extractor(data, positions_xyz, ExtractionSettings(box=BOX)).boxes():
        checksum += box[0, 0, 0]
    return checksum


def main():
    with tempfile.TemporaryDirectory() as folder:
        print('writing the benchmark-size phantom ...', flush=True)
        path, _, _ = write_phantom(make_phantom(phantom_config('bench', seed=0)), folder, 'TS_bench')
        rng = np.random.default_rng(0)
        with open_volume(path) as (data, info):
            size = np.array(info.shape_xyz)
            corners = rng.integers(0, size - BOX + 1, size=(COUNT, 3))
            positions = corners + BOX // 2  # the box centre sits at index BOX // 2
            np.asarray(data).sum()  # warm the page cache for both
            bare, bare_sum = best_time(bare_loop, data, corners, repeats=REPEATS)
            ours, our_sum = best_time(cryoseg_extract, data, positions, repeats=REPEATS)
            if not np.isclose(bare_sum, our_sum):
                sys.exit('cryoseg and the bare loop cut different boxes')
        print(f'{COUNT} boxes of {BOX}^3 from {os.path.basename(path)} ({"x".join(map(str, size))} voxels)')
        print(f'  bare numpy slicing loop : {bare:.3f} s ({COUNT / bare:,.0f} boxes/s)')
        print(f'  cryoseg Extractor       : {ours:.3f} s ({COUNT / ours:,.0f} boxes/s)')
        print(f'  ratio cryoseg / bare    : {ours / bare:.2f}x (target <= 2x)')


if __name__ == '__main__':
    main()
