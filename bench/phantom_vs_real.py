"""How the 'cell' phantom compares with the real tomogram (EMPIAR-11658 tomogram 9).

Both are measured by the same function, ``cryoseg.core.tomostats.measure_tomogram`` (its module text
says how each number is measured), with the real tomogram's 53 annotated ribosomes and the phantom's
ground-truth particles. Prints one table of the statistics, one of the radial power spectra, and the
phantom's own ground truth (true density, touching share, share lining a membrane). ``--figure PATH``
also draws central slices of the real tomogram, the cell phantom and the 'small' sample phantom
side by side, each shown from −3 to +3 noise standard deviations around its median (the same display
scaling), at the same physical scale, with the spectra below.

    python bench/phantom_vs_real.py [--seed N] [--figure docs/phantoms_vs_tomo9.png]
"""
import argparse
import time

import numpy as np

from cryoseg.core.phantom import make_phantom, phantom_config
from cryoseg.core.tomostats import measure_tomogram
from cryoseg.tests.realdata import RIBOSOME_DIAMETER_A, load_tomo9

FIELD_NM = 410  # every section is drawn on this physical field, so sizes compare at a glance


def _centres_zyx(truth, cls=None):
    return np.array([p['centre'][::-1] for p in truth.particles if cls is None or p['cls'] == cls])


def truth_rows(phantom):
    """The phantom's ground truth in the units of the measured table."""
    truth = phantom.truth
    slab_um3 = (truth.ice_z[1] - truth.ice_z[0]) * truth.shape_xyz[0] * truth.shape_xyz[1] * (
        truth.voxel_size * 1e-4) ** 3
    lining = sum(len(m['particles']) for m in truth.membranes)
    return [('particles per µm³ of slab (truth)', f'{len(truth.particles) / slab_um3:.0f}'),
            ('particles lining a membrane (truth)', f'{lining / len(truth.particles):.2f}')]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--figure', help='write the side-by-side figure (PNG) here')
    args = parser.parse_args()

    start = time.perf_counter()
    real = load_tomo9()
    real_stats = measure_tomogram(real.volume, real.angpix, real.particles_zyx, RIBOSOME_DIAMETER_A)
    real_seconds = time.perf_counter() - start
    start = time.perf_counter()
    cell = make_phantom(phantom_config('cell', seed=args.seed))
    build_seconds = time.perf_counter() - start
    cell_stats = measure_tomogram(cell.volume, cell.truth.voxel_size, _centres_zyx(cell.truth),
                                  RIBOSOME_DIAMETER_A, contrast=cell.truth.contrast)
    print(f'tomo9 {real.volume.shape[::-1]} voxels of {real.angpix} Å, measured in {real_seconds:.1f} s; '
          f'cell phantom {cell.volume.shape[::-1]} voxels of {cell.truth.voxel_size} Å, built in '
          f'{build_seconds:.1f} s\n')
    width = max(len(label) for label, _ in real_stats.rows() + truth_rows(cell))
    print(f"{'statistic':{width}}  {'tomo9':>8}  {'cell':>8}")
    for (label, real_value), (_, cell_value) in zip(real_stats.rows(), cell_stats.rows()):
        print(f'{label:{width}}  {real_value:>8}  {cell_value:>8}')
    for label, value in truth_rows(cell):
        print(f"{label:{width}}  {'':>8}  {value:>8}")
    print('\nradial power spectra in xy (noise: mean 1; specimen: over the noise level)')
    print(f"{'1/Å':>8}  {'noise tomo9':>11}  {'noise cell':>10}  {'specimen tomo9':>14}  {'specimen cell':>13}")
    for row in zip(real_stats.frequencies, real_stats.noise_psd, cell_stats.noise_psd,
                   real_stats.specimen_psd, cell_stats.specimen_psd):
        print(f'{row[0]:8.4f}  {row[1]:11.2f}  {row[2]:10.2f}  {row[3]:14.2f}  {row[4]:13.2f}')
    if args.figure:
        draw(args.figure, real, real_stats, cell, cell_stats)
        print(f'\nfigure written to {args.figure}')


def draw(path, real, real_stats, cell, cell_stats):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    small = make_phantom(phantom_config('small', seed=1, missing_wedge=60.0))
    small_stats = measure_tomogram(small.volume, small.truth.voxel_size, _centres_zyx(small.truth, 1),
                                   small.truth.particles[0]['diameter'])
    # the real lamella is tilted: show the ribosome layer's z, on the phantom's 128 × 128 field around it
    z, y, x = np.median(real.particles_zyx, axis=0).astype(int)
    y0, x0 = (min(max(c - 64, 0), n - 128) for c, n in ((y, real.volume.shape[1]), (x, real.volume.shape[2])))
    panels = [('EMPIAR-11658 tomogram 9 (31.36 Å/px)', real.volume[:, y0:y0 + 128, x0:x0 + 128], z, real_stats),
              ("cell phantom ('cell', 31.36 Å/px)", cell.volume, sum(cell.truth.ice_z) // 2, cell_stats),
              ("sample phantom ('small', 10 Å/px)", small.volume, sum(small.truth.ice_z) // 2, small_stats)]
    figure = plt.figure(figsize=(15, 9.5))
    grid = figure.add_gridspec(3, 3, height_ratios=[3.2, 1.4, 1.6])
    for column, (title, volume, z, stats) in enumerate(panels):
        middle = float(np.median(volume))
        scale = dict(cmap='gray', vmin=middle - 3 * stats.noise_std, vmax=middle + 3 * stats.noise_std)
        ny, nx = volume.shape[1:]
        size_nm = stats.voxel_size / 10
        axes = figure.add_subplot(grid[0, column])
        axes.imshow(volume[z], extent=(0, nx * size_nm, ny * size_nm, 0), **scale)
        axes.set_title(f'{title}\nxy section z = {z}', fontsize=10)
        axes.set_xlim(0, FIELD_NM)
        axes.set_ylim(FIELD_NM, 0)
        axes.set_xlabel('nm')
        side = figure.add_subplot(grid[1, column])
        side.imshow(volume[:, ny // 2], extent=(0, nx * size_nm, volume.shape[0] * size_nm, 0), **scale)
        side.set_xlim(0, FIELD_NM)
        side.set_title('xz section (missing wedge along z)', fontsize=9)
        side.set_xlabel('nm')
    spectra = figure.add_subplot(grid[2, :2])
    for stats, name, style in ((real_stats, 'tomo9', '-'), (cell_stats, 'cell phantom', '--')):
        spectra.semilogy(stats.frequencies, stats.noise_psd, 'k' + style, label=f'noise, {name}')
        spectra.semilogy(stats.frequencies, stats.specimen_psd, 'C3' + style, label=f'specimen, {name}')
    spectra.set_xlabel('spatial frequency (1/Å)')
    spectra.set_ylabel('radial power in xy')
    spectra.legend(fontsize=8, ncol=2)
    table = figure.add_subplot(grid[2, 2])
    table.axis('off')
    rows = [(label, r, c) for (label, r), (_, c) in zip(real_stats.rows(), cell_stats.rows())]
    drawn = table.table(cellText=rows, colLabels=['statistic', 'tomo9', 'cell'], colWidths=[0.7, 0.15, 0.15],
                        bbox=[0, 0, 1, 1])
    drawn.auto_set_font_size(False)
    drawn.set_fontsize(8)
    figure.tight_layout()
    figure.savefig(path, dpi=64)


if __name__ == '__main__':
    main()
