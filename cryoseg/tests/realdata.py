"""The real-data fixture: EMPIAR-11658 tomogram 9 (31.36 Å/px) and its 53 annotated ribosomes.

See ``data/empiar11658_tomo9/README.md`` for provenance and licence. The tomogram is stored
losslessly as 8-bit codes into its table of distinct values (it was quantised to 8 bits upstream).
"""
import os
from dataclasses import dataclass

import numpy as np

from ..core.mrcio import write_volume

FIXTURE_DIR = os.path.join(os.path.dirname(__file__), 'data', 'empiar11658_tomo9')
TOMO9_ANGPIX = 31.36
RIBOSOME_DIAMETER_A = 270.0
MATCH_RADIUS_A = 135.0  # half a ribosome: the matching radius of the figures in the issue and README


@dataclass(frozen=True)
class RealTomogram:
    volume: np.ndarray  # float32, (z, y, x); dense matter is dark
    angpix: float
    particles_zyx: np.ndarray  # (n, 3) float voxel centres, 0-based
    star_path: str  # the annotation as a STAR file (rlnCoordinateX/Y/Z in voxels)


def load_tomo9():
    """Return the fixture as a :class:`RealTomogram`."""
    with np.load(os.path.join(FIXTURE_DIR, 'tomo9.npz')) as stored:
        volume = stored['levels'][stored['index']]
    star_path = os.path.join(FIXTURE_DIR, 'tomo9_ribosomes.star')
    return RealTomogram(volume, TOMO9_ANGPIX, _read_star_zyx(star_path), star_path)


def write_tomo9_mrc(path):
    """Write the tomogram to ``path`` as an MRC file with its pixel size; return the RealTomogram."""
    tomogram = load_tomo9()
    write_volume(path, tomogram.volume, tomogram.angpix)
    return tomogram


def _read_star_zyx(path):
    from emtable import Table
    table = Table(fileName=path, tableName='particles')
    return np.array([(row.rlnCoordinateZ, row.rlnCoordinateY, row.rlnCoordinateX) for row in table],
                    dtype=float)
