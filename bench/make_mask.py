"""``cryoseg make_mask`` against IsoNet's make_mask, each as a whole process, as a user's /usr/bin/time sees it.

On the benchmark-size phantom (512×512×256 voxels float32, one copy = 256 MiB) every command is run as its own
process and measured from outside: wall time from start to exit, and peak resident memory (the ``ru_maxrss``
that ``wait4`` reports for that process, what ``/usr/bin/time`` prints as "Maximum resident set size";
it counts the interpreter, the libraries and every page of the input the process touched). The
reference is IsoNet's make_mask with its defaults (side 4, density 50 %, std 50 %) as IsoNet's code does
it (cryoseg/tests/isonet_reference.py, run as a script). The commands:

- ``default``: ``cryoseg make_mask IN OUT`` with default settings;
- ``texture``: the same with ``--method texture`` (goal: within 2× the default's time and memory; it is
  made on the tomogram binned by 2);
- ``isonet settings``: ``cryoseg make_mask --isonet`` (IsoNet's settings, Gaussian binning, no clean-up),
  whose mask must equal the reference's.

The machine may be shared: each command runs ``--repeat`` times, interleaved, and the best wall time
(other load only adds time) and the lowest peak are reported; ratios come from the same run. The ratios
of the default command come first. Goals: ≥ 5× faster than the reference, ≤ 0.25 of its peak memory.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

REFERENCE_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, 'cryoseg', 'tests',
                                'isonet_reference.py')


def measure(command):
    """Runs in a small launcher process (so that the measured process inherits no large resident set):
    ``{'seconds', 'maxrss'}`` of ``command``, maxrss in bytes."""
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - start
    error = process.stderr.read().decode()
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode:
        raise SystemExit(f"{' '.join(command)} failed ({process.returncode}):\n{error}")
    return {'seconds': seconds, 'maxrss': usage.ru_maxrss * 1024}


def measured(command):
    launcher = [sys.executable, os.path.abspath(__file__), '--measure', json.dumps(command)]
    return json.loads(subprocess.run(launcher, capture_output=True, text=True, check=True).stdout)


def commands(tomogram, folder):
    cryoseg = shutil.which('cryoseg') or sys.exit('the cryoseg console script is not installed')
    out = {name: os.path.join(folder, name.replace(' ', '_')) for name in
           ('default', 'texture', 'isonet settings', 'reference')}
    return {
        'default': [cryoseg, 'make_mask', tomogram, out['default']],
        'texture': [cryoseg, 'make_mask', tomogram, out['texture'], '--method', 'texture'],
        'isonet settings': [cryoseg, 'make_mask', tomogram, out['isonet settings'], '--isonet'],
        'reference': [sys.executable, REFERENCE_SCRIPT, tomogram, os.path.join(out['reference'], 'TS_01_mask.mrc')],
    }, out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--repeat', type=int, default=3, help='runs of each command (best reported)')
    parser.add_argument('--measure', help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        return print(json.dumps(measure(json.loads(args.measure))))

    import mrcfile
    import numpy as np

    from cryoseg.core.phantom import write_sample_data

    with tempfile.TemporaryDirectory() as folder:
        print('writing the benchmark phantom (512x512x256 float32) ...', flush=True)
        write_sample_data(folder, count=1, size='bench', seed=3)
        tomogram = os.path.join(folder, 'TS_01.mrc')
        runs, out = commands(tomogram, folder)
        os.makedirs(out['reference'])
        results = {name: [] for name in runs}
        for _ in range(args.repeat):
            for name, command in runs.items():
                results[name].append(measured(command))
        best = {name: {'seconds': min(r['seconds'] for r in rs), 'maxrss': min(r['maxrss'] for r in rs)}
                for name, rs in results.items()}

        def mask(name):
            with mrcfile.open(os.path.join(out[name], 'TS_01_mask.mrc')) as mrc:
                return mrc.data.astype(bool)

        reference, default = best['reference'], best['default']
        print(f"default command: {reference['seconds'] / default['seconds']:.1f}x faster than IsoNet's make_mask "
              f"(goal >= 5), peak RSS {default['maxrss'] / reference['maxrss']:.2f} of it (goal <= 0.25)")
        texture = best['texture']
        print(f"texture mask: {texture['seconds'] / default['seconds']:.2f}x the default's time, "
              f"{texture['maxrss'] / default['maxrss']:.2f}x its peak RSS (goal <= 2); "
              f"{reference['seconds'] / texture['seconds']:.1f}x faster than IsoNet, "
              f"{texture['maxrss'] / reference['maxrss']:.2f} of its peak RSS")
        print(f"{'command':16s} {'best s':>7s} {'peak RSS MiB':>13s}  runs (s)   mask keeps")
        for name, rs in results.items():
            kept = mask(name).mean()
            seconds = ', '.join(f"{r['seconds']:.2f}" for r in rs)
            print(f"{name:16s} {best[name]['seconds']:7.2f} {best[name]['maxrss'] / 2 ** 20:13.0f}  "
                  f"{seconds}   {100 * kept:.1f} %")
        differing = np.count_nonzero(mask('isonet settings') != mask('reference'))
        print(f"IsoNet settings against the reference: {differing} voxels differ "
              f"({100 * differing / mask('reference').size:.4f} %)")


if __name__ == '__main__':
    main()
