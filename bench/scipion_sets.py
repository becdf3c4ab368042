"""Writing a big SetOfCoordinates3D: cryoseg's bulk path against the naive per-item path.

The naive path is what most pickers do: ``coord.setPosition(x, y, z, BOTTOM_LEFT_CORNER)`` for every
coordinate, which re-reads the tomogram's MRC header (dimensions, origin) several times per item.
``cryoseg.convert.append_coordinates`` converts all positions with one origin offset per tomogram and
stores them as they are. Both write the same 100,000 coordinates into a new sqlite set, in the same
run; the stored positions must agree. Target: the bulk path ≥ 3× faster. Needs the Scipion
environment of ``make bench``.
"""
import sys
import tempfile

import numpy as np
from tomo.constants import BOTTOM_LEFT_CORNER, SCIPION
from tomo.objects import Coordinate3D, SetOfCoordinates3D, Tomogram

from cryoseg.convert import append_coordinates
from cryoseg.core.mrcio import write_volume
from timing import best_time

COUNT = 100_000
SAMPLING = 10.0
TARGET = 3.0


def naive_append(coords, tomo, xyz):
    for x, y, z in xyz:
        coord = Coordinate3D()
        coord.setVolume(tomo)
        coord.setPosition(x, y, z, BOTTOM_LEFT_CORNER)
        coords.append(coord)


def write_set(folder, suffix, append, tomo, xyz):
    coords = SetOfCoordinates3D.create(folder, suffix=suffix)
    coords.setSamplingRate(SAMPLING)
    coords.setBoxSize(32)
    append(coords, tomo, xyz)
    coords.write()
    return coords


def stored_positions(coords):
    return np.array([c.getPosition(SCIPION) for c in coords.iterItems(orderBy='id')])


def main():
    with tempfile.TemporaryDirectory() as folder:
        tomo = Tomogram()
        tomo.setFileName(write_volume(f'{folder}/TS_01.mrc', np.zeros((256, 512, 512), np.int8), SAMPLING))
        tomo.setSamplingRate(SAMPLING)
        tomo.setTsId('TS_01')
        tomo.setObjId(1)
        xyz = np.random.default_rng(0).uniform([0, 0, 0], [511, 511, 255], (COUNT, 3))
        naive, naive_set = best_time(write_set, folder, 'naive', naive_append, tomo, xyz)
        bulk, bulk_set = best_time(write_set, folder, 'bulk', append_coordinates, tomo, xyz)
        np.testing.assert_allclose(stored_positions(bulk_set), stored_positions(naive_set), atol=1e-9)
    ratio = naive / bulk
    print(f"{COUNT:,} coordinates into a SetOfCoordinates3D: naive per-item setPosition {naive:.1f} s, "
          f"cryoseg bulk {bulk:.1f} s; {ratio:.1f}x faster (target >= {TARGET:.0f}x); stored positions equal")
    return 0 if ratio >= TARGET else 1


if __name__ == '__main__':
    sys.exit(main())
