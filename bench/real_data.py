"""Make mask and segdiam pick on a real tomogram, run as a new user runs them (the ``cryoseg`` CLI).

EMPIAR-11658 tomogram 9 (31.36 Å/px, 53 annotated 80S ribosomes; the committed test fixture, see
cryoseg/tests/data/empiar11658_tomo9/README.md). Prints one table:

* make mask, default settings; IsoNet-compatible (``--isonet``, which reproduces IsoNet's own
  make_mask); the texture mask: the share of the annotated ribosomes inside, the masked volume
  fraction, seconds (the whole CLI process).
* segdiam pick with default settings (pixel size from the header) and SIMPLE's picker alone
  (``--no-split``): picks, recall and precision within 135 Å (one-to-one matching,
  cryoseg.core.evaluation), median diameter, box size, seconds.
* the difference-of-Gaussians blob baseline of the data README (σ 2 and 3.2 voxels, dark blobs, local
  maxima in 7³, top 0.2 % of voxels), and its precision at segdiam pick's recall (its strongest local
  maxima, as many as it needs to reach that recall, past the top 0.2 % if need be).

The annotation is not exhaustive: recall is meaningful, precision is a lower bound.
"""
import os
import re
import subprocess
import sys
import tempfile
import time

import numpy as np
from emtable import Table
from scipy import ndimage

from cryoseg.core.evaluation import match_points, score_points
from cryoseg.core.mrcio import read_volume
from cryoseg.tests.realdata import MATCH_RADIUS_A, write_tomo9_mrc

MASKS = [('make mask, defaults', []),
         ('make mask, IsoNet-compatible (--isonet)', ['--isonet']),
         ('make mask, texture (--method texture)', ['--method', 'texture'])]
PICKS = [('segdiam pick, defaults', []),
         ("segdiam pick, SIMPLE's picker alone (--no-split)", ['--no-split'])]


def run_cli(*args):
    start = time.perf_counter()
    result = subprocess.run(['cryoseg', *map(str, args)], capture_output=True, text=True)
    return result, time.perf_counter() - start


def mask_row(tomo_path, tomogram, folder, options):
    result, seconds = run_cli('make_mask', tomo_path, folder, *options)
    if result.returncode:
        return f'failed: {result.stderr.strip()[-80:]}', '', f'{seconds:.1f}'
    mask, _ = read_volume(os.path.join(folder, os.listdir(folder)[0]))
    centres = np.rint(tomogram.particles_zyx).astype(int)
    inside = np.mean(mask[tuple(centres.T)] > 0)
    return f'{100 * inside:.1f} %', f'{100 * np.mean(mask > 0):.1f} %', f'{seconds:.1f}'


def pick_row(tomo_path, tomogram, out, options):
    result, seconds = run_cli('segdiam_pick', tomo_path, '--out', out, *options)
    if result.returncode:
        reason = result.stderr.strip().splitlines()[-1] if result.stderr.strip() else 'failed'
        return None, ['0', '-', '-', '-', '-', f'{seconds:.1f}', reason[:70]]
    table = Table(fileName=out, tableName='particles')
    xyz = np.array([(r.rlnCoordinateX, r.rlnCoordinateY, r.rlnCoordinateZ) for r in table], float).reshape(-1, 3)
    diameters = np.array([r.cryosegDiameter for r in table], float)
    score = score_points(xyz, tomogram.particles_zyx[:, ::-1], MATCH_RADIUS_A / tomogram.angpix)
    box = re.search(r'box size: (\d+) px', result.stdout).group(1)
    mask = re.search(r'mask diameter: ([\d.]+) Å', result.stdout).group(1)
    return score, [str(len(xyz)), f'{score.recall:.2f}', f'{score.precision:.2f}', f'{np.median(diameters):.0f} Å',
                   f'{box} px', f'{seconds:.1f}', f'mask diameter {float(mask):.0f} Å']


def dog_baseline(volume):
    """The README's blob detector: (its picks, all its local maxima strongest first), (x, y, z) voxels.
    The ranking goes past the top 0.2 % so that its precision can be read at any recall."""
    dark = -np.asarray(volume, np.float32)
    band = ndimage.gaussian_filter(dark, 2.0) - ndimage.gaussian_filter(dark, 3.2)
    maxima = (band == ndimage.maximum_filter(band, size=7)) & (band > 0)
    ranked = np.argwhere(maxima)[np.argsort(-band[maxima])][:, ::-1]
    return ranked[:np.count_nonzero(maxima & (band >= np.percentile(band, 99.8)))], ranked


def precision_at_recall(ranked, reference, radius, recall):
    """Precision of the shortest head of ``ranked`` whose recall reaches ``recall`` (None if none does)."""
    for count in range(1, len(ranked) + 1):
        found = len(match_points(ranked[:count], reference, radius))
        if found / len(reference) >= recall - 1e-9:
            return found / count
    return None


def main():
    with tempfile.TemporaryDirectory() as folder:
        tomo_path = os.path.join(folder, 'tomo9.mrc')
        tomogram = write_tomo9_mrc(tomo_path)
        print(f'EMPIAR-11658 tomogram 9: {tomogram.volume.shape[::-1]} voxels at {tomogram.angpix} Å, '
              f'{len(tomogram.particles_zyx)} annotated ribosomes; matching within {MATCH_RADIUS_A:.0f} Å', flush=True)
        rows = []
        for index, (label, options) in enumerate(MASKS):
            out = os.path.join(folder, f'mask{index}')
            os.makedirs(out)
            inside, fraction, seconds = mask_row(tomo_path, tomogram, out, options)
            rows.append((label, f'{inside} of the ribosomes inside, {fraction} of the volume', seconds))
        scores = {}
        for index, (label, options) in enumerate(PICKS):
            score, cells = pick_row(tomo_path, tomogram, os.path.join(folder, f'picks{index}.star'), options)
            scores[label] = score
            rows.append((label, f'{cells[0]} picks, recall {cells[1]}, precision {cells[2]}, median diameter '
                                f'{cells[3]}, box {cells[4]}; {cells[6]}', cells[5]))
        start = time.perf_counter()
        picks, ranked = dog_baseline(tomogram.volume)
        seconds = time.perf_counter() - start
        reference, radius = tomogram.particles_zyx[:, ::-1], MATCH_RADIUS_A / tomogram.angpix
        baseline = score_points(picks, reference, radius)
        text = f'{len(picks)} picks, recall {baseline.recall:.2f}, precision {baseline.precision:.2f}'
        ours = scores[PICKS[0][0]]
        if ours is not None:
            at = precision_at_recall(ranked, reference, radius, ours.recall)
            text += (f'; at recall {ours.recall:.2f} (its strongest maxima): precision '
                     + (f'{at:.3f} vs {ours.precision:.3f}' if at is not None else f'- (never reaches it)'))
        rows.append(('difference-of-Gaussians baseline (in process)', text, f'{seconds:.1f}'))
    width = max(len(r[0]) for r in rows)
    print(f"{'step':<{width}}  {'seconds':>7}  result")
    for label, text, seconds in rows:
        print(f'{label:<{width}}  {seconds:>7}  {text}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
