"""Learned particle detection on the real tomogram (EMPIAR-11658 tomogram 9, 31.36 Å/px, 53 annotated
80S ribosomes of about 270 Å): CPU training time of ``cryoseg train_detector`` with its defaults, and
detection quality on annotations it never saw.

The annotations are split spatially in two halves along x: the detector is trained with defaults on
the lower half (the command itself holds back a slab of those for validation and early stopping),
then ``cryoseg detect`` with defaults runs on the whole tomogram, and its picks in the upper half
are scored against the upper half's annotations within 135 Å (half a ribosome). The annotation is
not exhaustive, so recall is meaningful and precision a lower bound.

Baseline measured in the same run: the seed's training settings (no binning, 56³ patches, batch 8,
32/48/64 channels, 2000 iterations), timed over a few iterations of the same command and
extrapolated; the goal is the default command within 20 minutes on 2 CPU cores. The machine may be
shared: the load average is printed with the times. Prints a note and exits 0 when the ``ml`` extra
is not installed.
"""
import os
import re
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

from cryoseg.learn import missing_ml_message

GOAL_S = 20 * 60
SEED_ITERATIONS, SEED_TIMED = 2000, 3
SEED_SETTINGS = ['--particle-voxels', '0', '--patch', '56', '--batch', '8', '--channels', '32', '48', '64',
                 '--validation-fraction', '0']


def run(arguments):
    """(wall seconds, peak resident MiB of this child, stdout) of a ``cryoseg`` command."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    result = subprocess.run([sys.executable, '-m', 'cryoseg.cli'] + arguments, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if result.returncode:
        sys.exit(f"cryoseg {arguments[0]} failed:\n{result.stderr[-3000:]}")
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return wall, max(peak, before) / 1024, result.stdout + result.stderr


def write_star(path, name, xyz):
    from emtable import Table

    table = Table(columns=['rlnTomoName', 'rlnCoordinateX', 'rlnCoordinateY', 'rlnCoordinateZ'])
    for x, y, z in xyz:
        table.addRow(name, float(x), float(y), float(z))
    table.write(path, tableName='particles')


def load():
    return 'load average %.1f on %d cores' % (os.getloadavg()[0], os.cpu_count())


def main():
    message = missing_ml_message()
    if message:
        print(f'bench/learned.py skipped: {message}')
        return 0
    from cryoseg.core.consensus import read_star_picks
    from cryoseg.core.evaluation import score_points
    from cryoseg.tests.realdata import MATCH_RADIUS_A, RIBOSOME_DIAMETER_A, write_tomo9_mrc

    with tempfile.TemporaryDirectory() as folder:
        tomogram = write_tomo9_mrc(os.path.join(folder, 'tomo9.mrc'))
        xyz = tomogram.particles_zyx[:, ::-1]
        cut = np.median(xyz[:, 0])
        trained, held = xyz[xyz[:, 0] < cut], xyz[xyz[:, 0] >= cut]
        star = os.path.join(folder, 'train.star')
        write_star(star, 'tomo9', trained)
        common = ['train_detector', os.path.join(folder, 'tomo9.mrc'), '--coords', star, '--diameter',
                  str(RIBOSOME_DIAMETER_A), '--threads', '2']
        print(f'tomo9: {tomogram.volume.shape[::-1]} voxels, {len(xyz)} annotated ribosomes; training on the '
              f'{len(trained)} with x < {cut:.0f}, scoring on the {len(held)} others; {load()}')

        load_before = load()
        wall, peak, out = run(common + ['--out', os.path.join(folder, 'model.pt')])
        summary = [line for line in out.splitlines() if line.startswith('trained')][-1]
        print(f'default train_detector (2 threads): {wall:.0f} s wall ({wall / 60:.1f} min), peak {peak:.0f} MiB; '
              f'{load_before} before, {load()} after\n  {summary}')

        seed_wall, _, seed_out = run(common + ['--out', os.path.join(folder, 'seed.pt'), '--iterations',
                                               str(SEED_TIMED)] + SEED_SETTINGS)
        seconds = float(re.search(r'trained \d+ iterations in (\d+) s', seed_out).group(1))
        seed_total = seconds / SEED_TIMED * SEED_ITERATIONS
        print(f'baseline (seed settings, one network): {seconds / SEED_TIMED:.1f} s per iteration -> '
              f'{seed_total / 3600:.1f} h for {SEED_ITERATIONS} iterations; {load()}')
        print(f'default training time / baseline: {wall / seed_total:.3f}; goal {GOAL_S / 60:.0f} min: '
              f"{'met' if wall <= GOAL_S else 'NOT met'} on this machine")

        detect_wall, detect_peak, detect_out = run(['detect', os.path.join(folder, 'tomo9.mrc'), '--model',
                                                    os.path.join(folder, 'model.pt'), '--out',
                                                    os.path.join(folder, 'picks'), '--threads', '2'])
        picks = read_star_picks(os.path.join(folder, 'picks', 'tomo9_particles.star'))[0]['tomo9'].xyz
        radius = MATCH_RADIUS_A / tomogram.angpix
        unseen = score_points(picks[picks[:, 0] >= cut], held, radius)
        seen = score_points(picks[picks[:, 0] < cut], trained, radius)
        print(f'default detect: {detect_wall:.0f} s, peak {detect_peak:.0f} MiB, {len(picks)} picks')
        print(f'held-out half (never trained on): recall {unseen.recall:.2f}, precision {unseen.precision:.2f} '
              f'(lower bound: not every ribosome is annotated), F1 {unseen.f1:.2f} '
              f'(TP {unseen.tp}, FP {unseen.fp}, FN {unseen.fn}) within {MATCH_RADIUS_A:.0f} Å')
        print(f'training half: recall {seen.recall:.2f}, precision {seen.precision:.2f} (TP {seen.tp}, FP {seen.fp}, '
              f'FN {seen.fn})')
    return 0


if __name__ == '__main__':
    sys.exit(main())
