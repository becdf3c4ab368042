"""The ``cryoseg`` command: cryoseg's algorithms on plain MRC and STAR files, without a Scipion project.

Each capability adds one subcommand: a ``_add_<name>(subparsers)`` function that defines its
arguments and sets ``func`` to the function that runs it.
"""
import argparse
import sys

from .core.errors import CryoSegInputError


def _add_phantom(subparsers):
    parser = subparsers.add_parser(
        'phantom', help='write synthetic tomograms with their ground truth (MRC + JSON + STAR)')
    parser.add_argument('outdir', help='folder that receives TS_01.mrc, TS_01_truth.json, ...')
    parser.add_argument('--size', choices=['small', 'bench'], default='small',
                        help="'small' (256x256x128, for tests) or 'bench' (512x512x256)")
    parser.add_argument('--seed', type=int, default=0, help='random seed of the first tomogram')
    parser.add_argument('--count', type=int, default=1, help='number of tomograms')
    parser.add_argument('--missing-wedge', type=float, default=0.0, metavar='DEG',
                        help='maximum tilt angle of the simulated tilt series; 0 = no wedge')
    parser.add_argument('--contrast', choices=['dark', 'light'], default='dark')
    parser.set_defaults(func=_run_phantom)


def _run_phantom(args):
    from .core.phantom import write_sample_data

    if args.count < 1:
        raise CryoSegInputError('--count must be at least 1')
    truths = write_sample_data(args.outdir, count=args.count, size=args.size, seed=args.seed,
                               missing_wedge=args.missing_wedge, contrast=args.contrast)
    for ts_id, truth in truths.items():
        print(f"{ts_id}: {truth.shape_xyz[0]}x{truth.shape_xyz[1]}x{truth.shape_xyz[2]} voxels of "
              f"{truth.voxel_size} Å, {len(truth.particles)} particles, {len(truth.vesicles)} vesicles, "
              f"{len(truth.membrane_proteins)} membrane proteins, {len(truth.gold)} gold beads")
    print(f"written to {args.outdir}")


def build_parser():
    parser = argparse.ArgumentParser(prog='cryoseg', description=__doc__.splitlines()[0])
    subparsers = parser.add_subparsers(dest='command', required=True)
    _add_phantom(subparsers)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except CryoSegInputError as err:
        print(f"cryoseg {args.command}: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == '__main__':
    sys.exit(main())
