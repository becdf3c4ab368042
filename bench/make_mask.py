"""Statistics-mask speed and memory: cryoseg against a straightforward whole-volume IsoNet implementation.

On the benchmark-size phantom (512×512×256 voxels, one float32 copy = 256 MiB) both compute the mask with
IsoNet's defaults (side 4, 50 % density, 50 % std in percentile mode); the reference follows IsoNet's
documented steps (whole tomogram read, skimage resize, FFT-convolution local std, maximum filter on the
binned volume, full-size float64 unbinning; cryoseg/tests/isonet_reference.py). Each run is a separate
process: ``--repeat`` timed runs (the best is reported, as timeit does: the machine may be shared, and
other load only ever adds time), one under tracemalloc (peak of the memory the code allocates; cryoseg's
memory-mapped input is not an allocation). The peak resident set (VmHWM) is printed too: it also counts the interpreter and the mapped
file pages the process touched. Targets: ≥ 5× faster, ≤ ¼ of the peak memory.

``--huge`` also masks a 1000×1000×500 noise tomogram (2 GB file) with cryoseg alone, to show the
memory bound on the size the issue names.
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc

import mrcfile
import numpy as np

from cryoseg.core.mrcio import open_volume
from cryoseg.core.statmask import statistics_mask
from cryoseg.tests.isonet_reference import isonet_mask  # imported before timing, like cryoseg

SETTINGS = dict(side=4, percentile=50.0, std_mode='percentile', std_percentile=50.0)


def run_cryoseg(path):
    with open_volume(path) as (data, _):
        return statistics_mask(data, **SETTINGS)


def run_reference(path):
    with mrcfile.open(path) as mrc:  # IsoNet reads the whole tomogram
        tomogram = mrc.data.astype(np.float32)
    return isonet_mask(tomogram, side=SETTINGS['side'], density_percentage=SETTINGS['percentile'],
                       std_percentage=SETTINGS['std_percentile'])


IMPLEMENTATIONS = {'cryoseg': run_cryoseg, 'isonet': run_reference}


def child(name, path, trace, save):
    """Runs in a subprocess: one implementation, one measurement, JSON on stdout."""
    if trace:
        tracemalloc.start()
    start = time.perf_counter()
    mask = IMPLEMENTATIONS[name](path)
    seconds = time.perf_counter() - start
    result = {'seconds': seconds, 'maxrss': peak_rss(),
              'fraction': float(mask.mean())}
    if trace:
        result['traced_peak'] = tracemalloc.get_traced_memory()[1]
    if save:
        np.save(save, mask)
    print(json.dumps(result))


def peak_rss():
    """High-water resident set of this process in bytes (VmHWM; ru_maxrss may carry the parent's peak
    across fork and exec)."""
    with open('/proc/self/status') as status:
        for line in status:
            if line.startswith('VmHWM:'):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def measure(name, path, trace, save=''):
    output = subprocess.run([sys.executable, __file__, '--child', name, path, '--trace', str(int(trace)),
                             '--save', save], capture_output=True, text=True, check=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def write_bench_phantom(folder):
    from cryoseg.core.phantom import write_sample_data

    write_sample_data(folder, count=1, size='bench', seed=3)
    return os.path.join(folder, 'TS_01.mrc')


def write_noise_tomogram(path, shape=(500, 1000, 1000)):
    rng = np.random.default_rng(0)
    with mrcfile.new_mmap(path, shape, mrc_mode=2, overwrite=True) as mrc:
        for z in range(0, shape[0], 50):
            mrc.data[z:z + 50] = rng.standard_normal((min(50, shape[0] - z),) + shape[1:], np.float32)
        mrc.voxel_size = 10.0
    return path


def mib(value):
    return value / 2 ** 20


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--huge', action='store_true', help='also mask a 1000x1000x500 tomogram with cryoseg')
    parser.add_argument('--repeat', type=int, default=3, help='timed runs of each implementation (best reported)')
    parser.add_argument('--child', nargs=2, metavar=('IMPLEMENTATION', 'PATH'), help=argparse.SUPPRESS)
    parser.add_argument('--trace', type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument('--save', default='', help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(*args.child, args.trace, args.save)

    with tempfile.TemporaryDirectory() as folder:
        print('writing the benchmark phantom ...', flush=True)
        path = write_bench_phantom(folder)
        copy = mrcfile.mmap(path, mode='r').data.nbytes  # one float32 copy of the tomogram
        results = {}
        for name in IMPLEMENTATIONS:
            timings = [measure(name, path, trace=False, save=os.path.join(folder, f'{name}.npy'))
                       for _ in range(args.repeat)]
            timing = min(timings, key=lambda result: result['seconds'])
            memory = measure(name, path, trace=True)
            results[name] = dict(timing, traced_peak=memory['traced_peak'])
            runs = ', '.join(f"{result['seconds']:.2f}" for result in timings)
            print(f"{name:8s} {timing['seconds']:7.2f} s (runs {runs})   traced peak {mib(memory['traced_peak']):7.0f} MiB "
                  f"({memory['traced_peak'] / copy:.2f} float32 copies)   peak RSS {mib(timing['maxrss']):7.0f} MiB"
                  f"   mask keeps {100 * timing['fraction']:.1f} %", flush=True)
        agreement = np.mean(np.load(os.path.join(folder, 'cryoseg.npy')) == np.load(os.path.join(folder, 'isonet.npy')))
        ours, theirs = results['cryoseg'], results['isonet']
        speed = theirs['seconds'] / ours['seconds']
        memory = ours['traced_peak'] / theirs['traced_peak']
        print(f"speed-up: {speed:.1f}x (target >= 5x)   peak memory: {memory:.3f} of the reference "
              f"(target <= 0.25)   peak RSS ratio: {ours['maxrss'] / theirs['maxrss']:.2f}   "
              f"voxels agreeing: {100 * agreement:.3f} %")

        if args.huge:
            huge = write_noise_tomogram(os.path.join(folder, 'huge.mrc'))
            os.remove(path)
            result = measure('cryoseg', huge, trace=True)
            size = 500 * 1000 * 1000 * 4
            print(f"1000x1000x500: cryoseg {result['seconds']:.1f} s (under tracemalloc), traced peak "
                  f"{mib(result['traced_peak']):.0f} MiB = {result['traced_peak'] / size:.2f} float32 copies "
                  f"(target <= 1.5), peak RSS {mib(result['maxrss']):.0f} MiB")


if __name__ == '__main__':
    main()
