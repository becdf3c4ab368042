"""The ``cryoseg`` command: cryoseg's algorithms on plain MRC and STAR files, without a Scipion project.

Each capability adds one subcommand: a ``_add_<name>(subparsers)`` function that defines its
arguments and sets ``func`` to the function that runs it.
"""
import argparse
import os
import sys

from .core.errors import CryoSegInputError
from .core.statmask import BINNINGS, METHODS, STD_ESTIMATES, STD_MODES, Z_CROP_MODES
from .core.texture import VOTES


def _add_phantom(subparsers):
    parser = subparsers.add_parser(
        'phantom', help='write synthetic tomograms with their ground truth (MRC + JSON + STAR)')
    parser.add_argument('outdir', help='folder that receives TS_01.mrc, TS_01_truth.json, ...')
    parser.add_argument('--size', choices=['small', 'bench', 'cell'], default='small',
                        help="'small' (256x256x128, for tests), 'bench' (512x512x256) or 'cell' (a crowded "
                             "cellular lamella like EMPIAR-11658 tomogram 9: 270 Å ribosomes, 31.36 Å/px, "
                             "128x128x96, 60° wedge, 8-bit values)")
    parser.add_argument('--seed', type=int, default=0, help='random seed of the first tomogram')
    parser.add_argument('--count', type=int, default=1, help='number of tomograms')
    parser.add_argument('--missing-wedge', type=float, default=None, metavar='DEG',
                        help="maximum tilt angle of the simulated tilt series; 0 = no wedge; default 0, "
                             "60 for 'cell'")
    parser.add_argument('--contrast', choices=['dark', 'light'], default='dark')
    parser.set_defaults(func=_run_phantom)


def _run_phantom(args):
    from .core.phantom import write_sample_data

    if args.count < 1:
        raise CryoSegInputError('--count must be at least 1')
    wedge = {} if args.missing_wedge is None else {'missing_wedge': args.missing_wedge}
    truths = write_sample_data(args.outdir, count=args.count, size=args.size, seed=args.seed,
                               contrast=args.contrast, **wedge)
    for ts_id, truth in truths.items():
        print(f"{ts_id}: {truth.shape_xyz[0]}x{truth.shape_xyz[1]}x{truth.shape_xyz[2]} voxels of "
              f"{truth.voxel_size} Å, {len(truth.particles)} particles, {len(truth.vesicles)} vesicles, "
              f"{len(truth.membrane_proteins)} membrane proteins, {len(truth.gold)} gold beads")
    print(f"written to {args.outdir}")


def _add_extract(subparsers):
    parser = subparsers.add_parser(
        'extract', help='cut subtomograms around the coordinates of a STAR file (MRC files + STAR list)')
    parser.add_argument('tomogram', help='tomogram (MRC) to cut from')
    parser.add_argument('coords', help="particle file: STAR with rlnCoordinateX/Y/Z (pixels from the first voxel) "
                                       "or RELION 5 centred Å, Dynamo .tbl, CSV; rows whose tomogram name "
                                       "differs from the tomogram's file name are ignored")
    parser.add_argument('--box', type=int, required=True, help='box size in pixels of the tomogram')
    parser.add_argument('--out', required=True, help='folder that receives the subtomograms and their STAR')
    parser.add_argument('--bin', type=float, default=1.0, metavar='F',
                        help='downsample the subtomograms by F >= 1 (Fourier cropping); the box becomes '
                             'box/F rounded to an even size')
    parser.add_argument('--coords-sampling', type=float, metavar='A',
                        help='pixel size (Å) the coordinates were picked at, if not the tomogram\'s '
                             '(e.g. picks at bin 2 cut from the bin-1 tomogram)')
    parser.add_argument('--invert', action='store_true', help='multiply by -1')
    parser.add_argument('--normalize', nargs='?', const='box', choices=['box', 'outside_sphere'],
                        help='mean 0, std 1 over the whole box (default) or outside the inscribed sphere')
    parser.add_argument('--border', choices=['skip', 'pad'], default='skip',
                        help='particles whose box leaves the tomogram: skip them (listed) or pad with '
                             'the mean of the inside part')
    parser.add_argument('--subvoxel', choices=['shift', 'interpolate'], default='shift',
                        help='fractional coordinates: crop at the nearest voxel and list the offset '
                             '(cryosegOffsetX/Y/Z), or interpolate so the particle is on the box centre')
    parser.set_defaults(func=_run_extract)


def _run_extract(args):
    import os

    import numpy as np
    from emtable import Table

    from .core.extract import ExtractionSettings, Extractor, rescale_positions
    from .core.formats import RELION_ANGLES, TomogramGeometry, read_points, relion_from_rotations
    from .core.mrcio import open_volume, read_info, require_tomogram, write_volume

    settings = ExtractionSettings(box=args.box, down_factor=args.bin, invert=args.invert,
                                  normalize=args.normalize or 'none', border=args.border,
                                  subvoxel=args.subvoxel)
    require_tomogram(args.tomogram)
    name = os.path.splitext(os.path.basename(args.tomogram))[0]
    info = read_info(args.tomogram)
    table = read_points(args.coords, tomograms={name: TomogramGeometry(info.shape_xyz, info.voxel_size[0])})
    print(f"{args.coords}: {table.convention}")
    if any(table.names):
        names = table.tomogram_names()
        table = table.of_tomogram(name)
        if not len(table):
            raise CryoSegInputError(f"no row of {args.coords} has rlnTomoName {name!r} (found: {', '.join(names)})")
    angles = list(RELION_ANGLES) if table.rotations is not None else []
    angle_values = relion_from_rotations(table.rotations) if angles else np.zeros((len(table), 0))
    xyz = table.xyz
    centred = table.convention.startswith('RELION 5')  # already voxels of this tomogram
    with open_volume(args.tomogram) as (data, info):
        sampling = info.voxel_size[0]
        positions = rescale_positions(xyz, sampling if centred else args.coords_sampling or sampling, sampling)
        out_sampling = settings.output_sampling(sampling)
        extractor = Extractor(data, positions, settings)
        listing = Table(columns=['rlnTomoName', 'rlnImageName', 'rlnCoordinateX', 'rlnCoordinateY',
                                 'rlnCoordinateZ', *angles, 'cryosegOffsetX', 'cryosegOffsetY', 'cryosegOffsetZ'])
        for index, box in extractor.boxes():
            path = write_volume(os.path.join(args.out, f'{name}_{index + 1:06d}.mrc'), box, out_sampling)
            listing.addRow(name, os.path.abspath(path), *xyz[index], *angle_values[index],
                           *extractor.residuals_out(index))
    os.makedirs(args.out, exist_ok=True)
    star_path = os.path.join(args.out, f'{name}_subtomograms.star')
    listing.write(star_path, tableName='particles')
    skipped = extractor.plan.skipped
    print(f"{name}: {len(extractor.plan.kept)} subtomograms of {settings.output_box} px at "
          f"{out_sampling:.3f} Å/px written to {args.out}; listed in {star_path}")
    if len(skipped):
        print(f"{len(skipped)} particle(s) skipped, their box leaves the tomogram (rows "
              f"{', '.join(str(i + 1) for i in skipped)})")


def _add_make_mask(subparsers):
    parser = subparsers.add_parser(
        'make_mask', help="mask the specimen in tomograms (IsoNet's statistics mask, a texture mask or both)",
        description="Writes OUTPUT/NAME_mask.mrc (8-bit, 1 = keep) for every tomogram, with its voxel size and "
                    "origin. Lengths are in voxels of the input tomogram unless stated.")
    parser.add_argument('input', help='one tomogram (MRC) or a folder of them (*.mrc, *.rec)')
    parser.add_argument('output', help='folder that receives NAME_mask.mrc for every tomogram')
    parser.add_argument('--method', choices=METHODS, default='statistics',
                        help="'statistics' (IsoNet: dense material AND local contrast), 'texture' (vote of local "
                             "variance, orientation coherence and edges) or 'both' (intersection)")
    stats = parser.add_argument_group('statistics mask (IsoNet make_mask)')
    stats.add_argument('--isonet', action='store_true',
                       help="IsoNet's make_mask exactly: --side 4 --percentile 50 --std-mode percentile "
                            "--std-percentile 50 --binning gaussian --no-cleanup (options given explicitly "
                            "still apply)")
    stats.add_argument('--side', type=int,
                       help='filter scale in voxels of the tomogram binned by 2, close to the particle size '
                            '(Gaussian σ = side/2, boxes of 2·side+1; IsoNet: 4); default: 80 Å from the '
                            'voxel size in the header (4 at 10 Å/voxel)')
    stats.add_argument('--percentile', type=float,
                       help='approximate %% of the volume with content (max-value mask): for sparse samples '
                            '(IsoNet: 50, a virus 20); default 100 disables it, as IsoNet advises for cellular '
                            'tomograms, whose large-scale contrast (gradients across a lamella) it follows')
    stats.add_argument('--std-mode', choices=STD_MODES,
                       help="'otsu' (default) splits the voxels into featureless and textured at Otsu's threshold "
                            "of log(local std); 'global_factor' keeps local std > --threshold × overall std "
                            "(IsoNet docs; the default once --threshold is given); 'percentile' keeps the "
                            "--std-percentile %% most textured voxels (current IsoNet code; the default once "
                            "--std-percentile is given)")
    stats.add_argument('--threshold', type=float,
                       help="'global_factor' mode: keep local std > threshold × overall std; smaller enlarges "
                            "the mask; 0 disables it; default 1")
    stats.add_argument('--std-estimate', choices=STD_ESTIMATES, default='robust',
                       help="overall std of the smoothed tomogram: 'robust' (1.4826 × median absolute "
                            "deviation, unaffected by gold beads, carbon or contamination) or 'plain' (IsoNet)")
    stats.add_argument('--std-percentile', type=float, help="%% kept in 'percentile' mode; default 50")
    stats.add_argument('--z_crop', '--z-crop', dest='z_crop', type=float, default=0.0,
                       help='fraction of the slices removed at each end in z; default 0')
    stats.add_argument('--z-crop-mode', choices=Z_CROP_MODES, default='isonet1',
                       help="'isonet2' halves the fraction, as IsoNet 2 does")
    stats.add_argument('--binning', choices=BINNINGS,
                       help="binning by 2: 'mean' of 2x2x2 blocks (default) or 'gaussian' (IsoNet's anti-aliased "
                            "resize, three times slower; the same after the smoothing but for rounding)")
    texture = parser.add_argument_group('texture mask')
    texture.add_argument('--block-size', type=int,
                         help='local variance window in voxels; default: 640 Å from the voxel size (64 at 10 Å)')
    texture.add_argument('--texture-sigma', type=float, default=1.0, help='structure-tensor scale; default 1')
    texture.add_argument('--edge-sigma', type=float, default=0.5, help='gradient-magnitude scale; default 0.5')
    texture.add_argument('--dog', action='store_true', help='add the band-pass (DoG) energy vote')
    texture.add_argument('--texture-vote', choices=VOTES, default='variance',
                         help="'variance': the local variance decides alone (cryo-ET: the orientation and edge "
                              "features follow the noise); 'majority': all features vote (Catena, FIB-SEM)")
    cleanup = parser.add_argument_group('clean-up (applied to the final mask)')
    cleanup.add_argument('--no-cleanup', dest='cleanup', action='store_false', default=None,
                         help="write the raw mask (IsoNet's output for --method statistics)")
    cleanup.add_argument('--min-region-size', type=int,
                         help='remove connected regions with fewer voxels; default: a ball of 80 Å diameter '
                              'from the voxel size (268 voxels at 10 Å)')
    cleanup.add_argument('--no-fill-holes', dest='fill_holes', action='store_false',
                         help='do not fill background regions enclosed by the mask')
    cleanup.add_argument('--keep-largest', action='store_true', help='keep only the largest region')
    cleanup.add_argument('--open-radius', type=int, default=0, help='per-slice opening radius; default 0 (off)')
    cleanup.add_argument('--grow', type=float, default=0.0, help='grow (>0) or erode (<0) by this distance')
    parser.add_argument('--slab', type=int, default=32,
                        help='binned z-slices processed at a time (memory); the result does not depend on it')
    parser.set_defaults(func=_run_make_mask)


def _tomogram_files(path):
    """The tomogram files named by INPUT: the file itself, or the MRC files of a folder (not masks)."""
    if os.path.isfile(path):
        return [path]
    if not os.path.isdir(path):
        raise CryoSegInputError(f"{path}: no such file or folder")
    files = sorted(os.path.join(path, name) for name in os.listdir(path)
                   if name.lower().endswith(('.mrc', '.rec')) and not name.endswith('_mask.mrc'))
    if not files:
        raise CryoSegInputError(f"{path}: the folder holds no .mrc or .rec tomogram")
    return files


def _mask_settings(args, voxel_size):
    """``make_mask_file`` keyword arguments for a tomogram of ``voxel_size`` Å: lengths left unset come
    from the protocol's defaults in Å (IsoNet's with --isonet), and a --threshold or --std-percentile
    picks its std mode."""
    from .core.statmask import DEFAULT_BLOCK_ANGSTROM, DEFAULT_MIN_REGION_ANGSTROM, ball_voxels, default_side

    def given(value, default):
        """``value``, or ``default()`` when the option was not given (defaults may need the voxel size)."""
        return default() if value is None else value

    cleanup = given(args.cleanup, lambda: not args.isonet)
    needed = [option for option, value, used in (
        ('--side', args.side, args.method != 'texture' and not args.isonet),
        ('--block-size', args.block_size, args.method != 'statistics'),
        ('--min-region-size', args.min_region_size, cleanup)) if used and value is None]
    if needed and not voxel_size > 0:
        raise CryoSegInputError(f"the header gives no voxel size ({voxel_size}), from which the default lengths "
                                f"come: set it, or give {', '.join(needed)}")
    std_mode = args.std_mode or ('global_factor' if args.threshold is not None else
                                 'percentile' if args.std_percentile is not None or args.isonet else 'otsu')
    statistics = dict(side=given(args.side, lambda: 4 if args.isonet else default_side(voxel_size)),
                      percentile=given(args.percentile, lambda: 50.0 if args.isonet else 100.0),
                      binning=given(args.binning, lambda: 'gaussian' if args.isonet else 'mean'),
                      threshold=given(args.threshold, lambda: 1.0), std_mode=std_mode,
                      std_percentile=given(args.std_percentile, lambda: 50.0), z_crop=args.z_crop,
                      z_crop_mode=args.z_crop_mode,
                      std_estimate=args.std_estimate) if args.method != 'texture' else None
    texture = dict(block_size=given(args.block_size,
                                    lambda: max(2, int(round(DEFAULT_BLOCK_ANGSTROM / voxel_size)))),
                   texture_sigma=args.texture_sigma, edge_sigma=args.edge_sigma, use_dog=args.dog,
                   vote=args.texture_vote) if args.method != 'statistics' else None
    postprocess = dict(min_region_size=given(args.min_region_size,
                                             lambda: ball_voxels(DEFAULT_MIN_REGION_ANGSTROM, voxel_size)),
                       open_radius=args.open_radius, keep_largest=args.keep_largest,
                       fill_holes=args.fill_holes, grow=args.grow) if cleanup else None
    return dict(method=args.method, statistics=statistics, texture=texture, postprocess=postprocess)


def _run_make_mask(args):
    from .core.mrcio import read_info
    from .core.statmask import make_mask_file, mask_file_name, mask_warnings

    failures = []
    for path in _tomogram_files(args.input):
        target = os.path.join(args.output, mask_file_name(path))
        try:
            settings = _mask_settings(args, read_info(path).voxel_size[0])
            fraction = make_mask_file(path, target, slab=args.slab, **settings)
        except CryoSegInputError as err:
            failures.append(str(err))
            print(f"error: {err}", file=sys.stderr)
            continue
        print(f"{path} -> {target}: the mask keeps {100 * fraction:.2f} % of the voxels")
        for warning in mask_warnings(fraction):
            print(f"warning: {os.path.basename(path)}: {warning}", file=sys.stderr)
    if failures:
        raise CryoSegInputError(f"{len(failures)} tomogram(s) could not be masked (see above)")


def _add_consensus(subparsers):
    parser = subparsers.add_parser(
        'consensus', help='keep the picks that enough pickings agree on (STAR tables)',
        description='Matches the picks of two or more STAR tables per tomogram (rlnTomoName); a matched '
                    'particle has at most one pick per table and its votes count the tables that found it. '
                    'The result does not depend on the order of tables or rows.')
    parser.add_argument('inputs', nargs='+', help='STAR tables with rlnCoordinateX/Y/Z (and rlnTomoName, '
                                                  'rlnAngleRot/Tilt/Psi when present)')
    parser.add_argument('--radius', type=float, required=True,
                        help='matching radius in Å (in pixels when the pixel sizes are left at 1)')
    parser.add_argument('--consensus', type=int, default=-1, metavar='K',
                        help='votes needed: -1 = all tables (AND, default), 1 = any (OR), K = at least K')
    parser.add_argument('--mode', choices=['ge', 'eq'], default='ge',
                        help="'ge': at least K votes (default); 'eq': exactly K")
    parser.add_argument('--pixel-size', type=float, nargs='+', default=[1.0], metavar='A',
                        help='Å per pixel of each input (one value for all, or one per input); the '
                             'output is in pixels of the first')
    parser.add_argument('--axis-only', action='store_true',
                        help='average only the particle normals (third row of the rotation), keeping the '
                             'in-plane angle of the first table')
    parser.add_argument('--angular-gate', type=float, metavar='DEG',
                        help='do not match oriented picks whose orientations differ by more than DEG')
    parser.add_argument('--difference', type=int, metavar='I',
                        help='also write the picks of input I (1-based) that no other input confirms')
    parser.add_argument('--out', required=True, help='output STAR file')
    _add_geometry_option(parser)
    parser.set_defaults(func=_run_consensus)


def _pixel_sizes(values, count):
    if len(values) not in (1, count):
        raise CryoSegInputError(f'give one --pixel-size for all inputs or one per input ({count})')
    if min(values) <= 0:
        raise CryoSegInputError('pixel sizes must be positive')
    return values * count if len(values) == 1 else values


def _run_consensus(args):
    import os

    from .core.consensus import consensus, read_star_picks, write_star_clusters

    sizes = _pixel_sizes(args.pixel_size, len(args.inputs))
    geometries = _geometries(args)
    loaded = [_report_convention(path, read_star_picks(path, size, geometries))
              for path, size in zip(args.inputs, sizes)]
    result = consensus([one.picks for one in loaded], args.radius, args.consensus, args.mode,
                       angular_gate=args.angular_gate, axis_mode=args.axis_only)
    with_angles = any(one.has_angles for one in loaded)
    selected = result.selected()
    write_star_clusters(args.out, selected, sizes[0], with_angles)
    jaccard = result.jaccard()
    for ts_id, clusters in result.clusters.items():
        inputs = ' / '.join(str(len(one.picks.get(ts_id, ()))) for one in loaded)
        print(f"{ts_id}: inputs {inputs} -> {len(clusters)} particles, {len(selected[ts_id])} kept, "
              f"Jaccard {jaccard[ts_id]:.2f}")
    print(f"{sum(len(c) for c in selected.values())} consensus picks written to {args.out}")
    if args.difference is not None:
        index = args.difference - 1
        difference = result.difference(index)
        root, ext = os.path.splitext(args.out)
        path = f'{root}_only{args.difference}{ext or ".star"}'
        write_star_clusters(path, difference, sizes[index], loaded[index].has_angles)
        print(f"{sum(len(c) for c in difference.values())} picks found only in input {args.difference} "
              f"written to {path}")


def _add_remove_duplicates(subparsers):
    parser = subparsers.add_parser(
        'remove_duplicates', help='merge picks of one STAR table closer than a radius',
        description='Groups picks of each tomogram so that every two picks of a group are within the '
                    'radius, and keeps one pick per group.')
    parser.add_argument('input', help='STAR table with rlnCoordinateX/Y/Z (and rlnTomoName)')
    parser.add_argument('--radius', type=float, required=True,
                        help='duplicate radius in Å (in pixels with the default pixel size of 1)')
    parser.add_argument('--pixel-size', type=float, default=1.0, metavar='A', help='Å per pixel')
    parser.add_argument('--keep', choices=['best', 'mean'], default='best',
                        help="'best': the pick with the highest rlnAutopickFigureOfMerit; 'mean': the "
                             "mean position and orientation")
    parser.add_argument('--out', required=True, help='output STAR file')
    _add_geometry_option(parser)
    parser.set_defaults(func=_run_remove_duplicates)


def _run_remove_duplicates(args):
    from .core.consensus import read_star_picks, remove_duplicates, write_star_clusters

    size = _pixel_sizes([args.pixel_size], 1)[0]
    loaded = _report_convention(args.input, read_star_picks(args.input, size, _geometries(args)))
    picks, with_angles = loaded.picks, loaded.has_angles
    kept = {}
    for ts_id, tomo_picks in picks.items():
        clusters = remove_duplicates(tomo_picks, args.radius, keep=args.keep)
        if args.keep == 'best':
            chosen = clusters.representative[:, 1]
            clusters.xyz = tomo_picks.xyz[chosen]
            if tomo_picks.matrices is not None:
                clusters.matrices = tomo_picks.matrices[chosen]
        kept[ts_id] = clusters
        print(f"{ts_id}: {len(tomo_picks)} -> {len(clusters)} picks")
    write_star_clusters(args.out, kept, size, with_angles)
    print(f"written to {args.out}")


# --------------------------------------------------------------------------- formats
def _add_geometry_option(parser):
    parser.add_argument('--tomograms', nargs='+', default=[], metavar='FILE',
                        help='the tomograms (MRC: size and pixel size from the headers, name = file stem) or a '
                             'RELION tomograms.star; needed to read RELION 5 centred coordinates (Å from the '
                             'tomogram centre) and to write them')


def _geometries(args):
    """``{name: TomogramGeometry}`` of the --tomograms option (empty when not given)."""
    from .core.formats import TomogramGeometry, read_relion_tomograms
    from .core.mrcio import read_info

    geometries = {}
    for path in args.tomograms:
        if path.lower().endswith('.star'):
            geometries.update(read_relion_tomograms(path))
        else:
            info = read_info(path)
            geometries[_tomogram_name(path)] = TomogramGeometry(info.shape_xyz, info.voxel_size[0])
    return geometries


def _report_convention(path, loaded):
    """Say which position convention a file was read in (voxels or RELION 5 centred Å)."""
    print(f"{path}: {loaded.convention}")
    return loaded


def _add_convert(subparsers):
    parser = subparsers.add_parser(
        'convert', help='convert picks between RELION 5 / voxel STAR, Dynamo tables, IMOD model2point text and CSV',
        description="Reads any supported point file (the position convention of a STAR file is detected and "
                    "printed) and writes a RELION 5 particle STAR (rlnTomoName, rlnCenteredCoordinateX/Y/ZAngst "
                    "= Å from the tomogram centre, rlnAngleRot/Tilt/Psi), a voxel STAR (rlnCoordinateX/Y/Z) or "
                    "a Dynamo table with its .vll.")
    parser.add_argument('input', help='point file: .star, .tbl (with its .vll), .csv, IMOD model2point text')
    parser.add_argument('--format', choices=['auto', 'star', 'dynamo', 'imod', 'csv', 'text'], default='auto',
                        help="input format; 'auto' goes by the extension (.star, .tbl, .csv, else text). "
                             "model2point output needs 'imod'")
    parser.add_argument('--to', choices=['relion5', 'voxels', 'dynamo'],
                        help="output form (default: 'dynamo' for .tbl, else 'relion5')")
    parser.add_argument('--name', help='tomogram name for files that name none (text, CSV, model2point)')
    parser.add_argument('--out', required=True, help='output file (.star or .tbl; a .tbl gets a .vll next to it)')
    _add_geometry_option(parser)
    parser.set_defaults(func=_run_convert)


def _run_convert(args):
    import numpy as np

    from .core import formats

    geometries = _geometries(args)
    table = formats.read_points(args.input, args.format, geometries)
    print(f"{args.input}: {len(table)} points, {table.convention}")
    if args.name or not any(table.names):
        if len(table.tomogram_names()) > 1:
            raise CryoSegInputError(f'{args.input} names several tomograms; --name is for files that name none')
        if not args.name and len(geometries) != 1:
            raise CryoSegInputError(f'{args.input} names no tomogram: give --name')
        table.names = np.full(len(table), args.name or next(iter(geometries)), dtype=object)
    target = args.to or ('dynamo' if args.out.lower().endswith('.tbl') else 'relion5')
    if target == 'relion5':
        formats.write_relion5_star(args.out, table, {**table.tomograms, **geometries})
    elif target == 'voxels':
        formats.write_voxel_star(args.out, table)
    else:
        order = table.tomogram_names()
        files = {_tomogram_name(p): os.path.abspath(p) for p in args.tomograms if not p.lower().endswith('.star')}
        formats.write_dynamo_table(args.out, table, {name: i for i, name in enumerate(order, start=1)})
        vll = os.path.splitext(args.out)[0] + '.vll'
        formats.write_volume_list(vll, [files.get(name, name) for name in order])
        print(f"tomogram indices listed in {vll}")
    print(f"{len(table)} points of {len(table.tomogram_names())} tomogram(s) written to {args.out} ({target})")


def _add_segdiam_pick(subparsers):
    parser = subparsers.add_parser(
        'segdiam_pick', help='pick blobs, estimate the particle diameter, box size and mask diameter',
        description="Segmentation picking with diameter statistics over all given tomograms (SIMPLE's "
                    "segdiam policy): size populations that stand out (gold, contamination, debris) are "
                    "rejected, the box size (px) and mask diameter (Å) are printed, and the picks whose "
                    "diameter lies in the accepted range are written to a STAR table.")
    parser.add_argument('tomograms', nargs='+', help='tomogram MRC files; the tomogram name is the file stem')
    parser.add_argument('--out', required=True, help='STAR table to write (rlnTomoName, rlnCoordinateX/Y/Z as '
                                                     '0-based voxel indices, cryosegDiameter in Å, ...)')
    parser.add_argument('--mask', nargs='+', default=[], help='one mask MRC per tomogram (same order): pick '
                                                             'only where it is non-zero')
    parser.add_argument('--angpix', type=float, help='pixel size in Å (default: from the MRC header)')
    parser.add_argument('--diameter-range', type=float, nargs=2, default=(20.0, 500.0), metavar=('MIN', 'MAX'),
                        help='diameters (Å) considered in the first pass (default 20 500)')
    parser.add_argument('--hac', action='store_true', help='cluster diameters by HAC instead of 10-cluster k-means')
    parser.add_argument('--contrast', choices=['dark', 'light'], default='dark', help='particle contrast')
    parser.add_argument('--lowpass', type=float, default=60.0,
                        help='low-pass resolution in Å, about a third to half of the particle diameter (default 60; '
                             'never finer than 4 working pixels, twice the Nyquist period)')
    parser.add_argument('--working-size', type=float, default=4.0, help='working pixel size in Å (default 4)')
    parser.add_argument('--min-peak', type=float, default=5.0,
                        help='keep blobs whose brightest voxel stands this many robust σ above the low-passed '
                             'tomogram; fainter blobs are noise or ice texture (default 5; 0 keeps all)')
    parser.add_argument('--no-split', action='store_true',
                        help="SIMPLE's picker alone: do not split touching particles by blob seeds and a watershed")
    parser.add_argument('--min-seed', type=float, default=9.0,
                        help='a particle centre stands this many robust σ above the band-passed tomogram '
                             '(default 9, for cellular tomograms; lower it for sparse, faint particles)')
    parser.set_defaults(func=_run_segdiam_pick)


def _run_segdiam_pick(args):
    import numpy as np

    from .core.mrcio import open_volume, read_volume, require_tomogram
    from .core.segdiam import (PickSettings, SizeEstimate, components_table, estimate_particle_size,
                               gate_diameters, pick_components)

    if args.mask and len(args.mask) != len(args.tomograms):
        raise CryoSegInputError(f'give one --mask per tomogram ({len(args.tomograms)}), not {len(args.mask)}')
    settings = PickSettings(working_size=args.working_size, contrast=args.contrast, lowpass=args.lowpass,
                            diameter_range=tuple(args.diameter_range), min_peak=args.min_peak,
                            split=not args.no_split, min_seed=args.min_seed)
    picked, pixel_sizes = {}, set()
    for index, path in enumerate(args.tomograms):
        mask = read_volume(args.mask[index], dtype='uint8')[0] if args.mask else None
        require_tomogram(path)
        with open_volume(path) as (data, info):
            pixel_size = args.angpix or info.voxel_size[0]
            if not pixel_size or pixel_size <= 0:
                raise CryoSegInputError(f'{path}: the header holds no pixel size; give --angpix')
            name = os.path.splitext(os.path.basename(path))[0]
            try:
                picked[name] = pick_components(data, pixel_size, settings, mask=mask)
            except CryoSegInputError as err:
                raise CryoSegInputError(f'{path}: {err}') from None
        pixel_sizes.add(round(pixel_size, 4))
        print(f"{name}: {len(picked[name])} blobs in {args.diameter_range[0]:g}-{args.diameter_range[1]:g} Å")
    if len(pixel_sizes) > 1:
        raise CryoSegInputError(f'the tomograms have different pixel sizes {sorted(pixel_sizes)}; '
                                'the box size needs one pixel size')
    estimate = estimate_particle_size(np.concatenate([f.diameter for f in picked.values()]), pixel_sizes.pop(),
                                      'hac' if args.hac else 'kmeans')
    if not isinstance(estimate, SizeEstimate):
        raise CryoSegInputError(f'no size estimate: {estimate.reason}')
    for warning in estimate.warnings:
        print(f'warning: {warning}', file=sys.stderr)
    kept = {name: gate_diameters(found, estimate) for name, found in picked.items()}
    components_table([(name, found, None) for name, found in kept.items()]).write(args.out, tableName='particles')
    print(f"accepted diameters: {estimate.stats_after.describe(' Å')}")
    print(f"box size: {estimate.box} px")
    print(f"mask diameter: {estimate.mask_diameter:.1f} Å")
    print(f"{sum(len(f) for f in kept.values())} picks written to {args.out}")


CLI_MODELS = {'vesicle': 'sphere', 'ellipsoid': 'ellipsoid', 'surface': 'membraneByLevels', 'general': 'general',
              'filament': 'filamentHelix', 'rings': 'filamentRings', 'auto': 'auto'}


def _add_model_workflow(subparsers):
    parser = subparsers.add_parser(
        'model_workflow', help='clicked points on membranes/filaments -> evenly spaced, oriented cropping points')
    parser.add_argument('points', help='STAR (rlnCoordinateX/Y/Z in 0-based voxels, a group column such as '
                                       'cryosegGroup or rlnGroupNumber, optional cryosegRole=marker, '
                                       'optional rlnTomoName), CSV or "x y z [group] [role]" text')
    parser.add_argument('--model', choices=sorted(CLI_MODELS), default='auto',
                        help='vesicle (sphere), ellipsoid (rotated), surface (membrane clicked on several z '
                             'slices), general (any surface), filament (helical subunits), rings, or auto')
    parser.add_argument('--spacing', type=float, required=True, metavar='A',
                        help='distance between cropping points (Å); filament: rise; rings: ring distance')
    parser.add_argument('--angpix', type=float, required=True, metavar='A', help='pixel size of the points (Å)')
    parser.add_argument('--out', required=True, help='output STAR file of cropping points')
    parser.add_argument('--offset', type=float, default=0.0, metavar='A',
                        help='move the points along the outward normal (Å)')
    parser.add_argument('--in-plane', choices=['zero', 'random', 'tangent'], default='zero',
                        help='in-plane angle (Dynamo narot) policy')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--mesh-edge', type=float, default=50.0, metavar='A', help='support-mesh edge (Å)')
    parser.add_argument('--max-triangles', type=int, default=100000)
    parser.add_argument('--subdivision', type=int, default=0, help='mesh refinement rounds')
    parser.add_argument('--click-scatter', type=float, default=10.0, metavar='A',
                        help='how far clicks stray from the membrane (Å); 0 = curves through the points')
    parser.add_argument('--exclusion', type=float, default=0.0, metavar='A',
                        help='no cropping point closer than this to the marker (vesicles)')
    parser.add_argument('--twist', type=float, default=0.0, help='filament twist per subunit (degrees)')
    parser.add_argument('--helix-radius', type=float, default=0.0, metavar='A')
    parser.add_argument('--ring-radius', type=float, default=100.0, metavar='A')
    parser.add_argument('--subunits-per-ring', type=int, default=8)
    parser.add_argument('--tomogram', metavar='T.mrc',
                        help='the tomogram of the points: the fitted models are then refined against its '
                             'density (the membrane along each normal, the tube axis of filaments)')
    parser.add_argument('--refine', action=argparse.BooleanOptionalAction, default=None,
                        help='refine against the density of --tomogram (default: on when --tomogram is given)')
    parser.add_argument('--membrane', type=float, default=40.0, metavar='A',
                        help='membrane (or filament wall) thickness looked for when refining (Å)')
    parser.add_argument('--search', type=float, default=0.0, metavar='A',
                        help='how far along the normals the membrane is searched when refining (Å); '
                             '0 = from the fit and the click scatter')
    parser.add_argument('--filament-diameter', type=float, default=0.0, metavar='A',
                        help='tube diameter for refining filaments (Å); 0 = the helix or ring diameter')
    parser.set_defaults(func=_run_model_workflow)


def _run_model_workflow(args):
    from contextlib import ExitStack

    from .core.model_workflow import ModelParameters, read_user_points
    from .core.mrcio import open_volume, require_tomogram

    if args.angpix <= 0:
        raise CryoSegInputError('--angpix must be positive')
    px = args.angpix
    params = ModelParameters(
        model_type=CLI_MODELS[args.model], spacing=args.spacing / px, offset=args.offset / px,
        in_plane=args.in_plane, seed=args.seed, mesh_edge=args.mesh_edge / px, max_triangles=args.max_triangles,
        subdivision=args.subdivision, exclusion_radius=args.exclusion / px, smoothing=args.click_scatter / px,
        twist=args.twist, helix_radius=args.helix_radius / px, ring_radius=args.ring_radius / px,
        subunits_per_ring=args.subunits_per_ring, refine=bool(args.tomogram) if args.refine is None else args.refine,
        membrane=args.membrane / px, refine_band=args.search / px, filament_radius=args.filament_diameter / 2 / px)
    if params.refine and not args.tomogram:
        raise CryoSegInputError('--refine needs the tomogram of the points: give --tomogram T.mrc')
    points = read_user_points(args.points)
    with ExitStack() as stack:
        volume = None
        if params.refine:
            if len(set(points.tomo_names or [None])) > 1:
                raise CryoSegInputError('--tomogram refines the points of one tomogram, but the point file '
                                        'names several (rlnTomoName): split it per tomogram')
            require_tomogram(args.tomogram)
            volume, info = stack.enter_context(open_volume(args.tomogram))
            params.shape_xyz = info.shape_zyx[::-1]
        _model_workflow_groups(args, points, params, volume, px)


def _model_workflow_groups(args, points, params, volume, px):
    import numpy as np

    from .core.model_workflow import run_model_workflow, split_groups, write_crop_star

    labels = sorted(set(points.groups), key=lambda g: (not g.isdigit(), int(g) if g.isdigit() else 0, g))
    numbering = {g: int(g) for g in labels} if all(g.isdigit() for g in labels) else \
        {g: k for k, g in enumerate(labels, start=1)}
    names = points.tomo_names or [None] * len(points.xyz)
    workflows, fitted = {}, 0
    for name in dict.fromkeys(names):
        mine = np.array([n == name for n in names])
        groups = split_groups(points.xyz[mine], [numbering[g] for g, m in zip(points.groups, mine) if m],
                              np.asarray(points.roles)[mine])
        workflow = workflows[name] = run_model_workflow(groups, params, volume)
        for row in workflow.report_rows():
            where = f'{name} ' if name else ''
            if row['status'] == 'ok':
                fitted += 1
                refined = (f", refined: {row['profiles']} profiles, {row['outliers']} outliers, median shift "
                           f"{row['median_shift'] * px:.1f} Å") if row['refined'] else ''
                print(f"{where}group {row['group']}: {row['model']}, rms {row['rms'] * px:.1f} Å, "
                      f"{row['crop_points']} cropping points{refined}")
            else:
                print(f"{where}group {row['group']}: FAILED: {row['reason']}", file=sys.stderr)
    if not fitted:
        raise CryoSegInputError('no geometry could be fitted (see the reasons above)')
    write_crop_star(args.out, workflows)
    print(f"written to {args.out}")


# --------------------------------------------------------------------------- learned models and evaluation
def _add_output_options(parser):
    parser.add_argument('--out', required=True, help='model file to write (e.g. model.pt)')
    parser.add_argument('--loss-log', help='CSV training log (default: the model file with _loss.csv)')
    parser.add_argument('--threads', type=int, default=0, help='CPU threads for torch; 0 = torch default')
    parser.add_argument('--seed', type=int, default=0, help='random seed')


def _add_training_options(parser, iterations, batch, patch, learning_rate, channels):
    _add_output_options(parser)
    parser.add_argument('--iterations', type=int, default=iterations, help=f'training batches; default {iterations}')
    parser.add_argument('--batch', type=int, default=batch, help=f'patches per batch; default {batch}')
    parser.add_argument('--patch', type=int, default=patch, help=f'training patch side in voxels (multiple of 4); '
                                                                 f'default {patch}')
    parser.add_argument('--lr', type=float, default=learning_rate, help=f'Adam learning rate; default {learning_rate}')
    parser.add_argument('--channels', type=int, nargs=3, default=channels, metavar='C',
                        help=f"network channels per level; default {' '.join(map(str, channels))}")
    parser.add_argument('--quarter-turns', action='store_true',
                        help='also augment with quarter turns about z (exchanges the x and y tilt axes)')


def _training_settings(args):
    from .learn.training import TrainingSettings

    return TrainingSettings(iterations=args.iterations, batch=args.batch, patch=args.patch, learning_rate=args.lr,
                            channels=tuple(args.channels), quarter_turns=args.quarter_turns, seed=args.seed,
                            threads=args.threads)


def _loss_log(args):
    return args.loss_log or os.path.splitext(args.out)[0] + '_loss.csv'


def _tomogram_name(path):
    return os.path.splitext(os.path.basename(path))[0]


def _read_tomogram(path):
    from .core.mrcio import read_volume, require_tomogram

    require_tomogram(path)
    return read_volume(path)


def _add_train_detector(subparsers):
    from .learn.settings import DetectorSettings

    defaults = DetectorSettings()
    parser = subparsers.add_parser(
        'train_detector', help='train a particle detector on annotated tomograms; the annotation may be partial '
                               '(needs [ml])',
        description="Particles are annotated by a STAR file with rlnTomoName (the tomogram file name without "
                    "extension) and rlnCoordinateX/Y/Z in voxels of the tomograms. Not every particle needs an "
                    "annotation. Blobs of the particle's size are candidates; small networks learn to score "
                    "them, one per spatial fold of the annotations, each validated on its held-back fold; the "
                    "score threshold keeps --target-recall of the held-back particles.")
    parser.add_argument('tomograms', nargs='+', help='training tomograms (MRC)')
    parser.add_argument('--coords', required=True, help='STAR file of the annotated particle centres')
    parser.add_argument('--diameter', type=float, required=True, help='particle diameter in Å')
    _add_output_options(parser)
    parser.add_argument('--complete', action='store_true',
                        help='every particle of the training tomograms is annotated (unannotated blobs are then '
                             'background)')
    parser.add_argument('--iterations', type=int, default=defaults.iterations,
                        help=f'most training batches per fold (training stops earlier when the held-back score '
                             f'stops improving); default {defaults.iterations}')
    parser.add_argument('--folds', type=int, default=defaults.folds,
                        help=f'spatial cross-validation folds; default {defaults.folds}')
    parser.add_argument('--target-recall', type=float, default=defaults.target_recall,
                        help=f'fraction of held-back particles the score threshold keeps; default '
                             f'{defaults.target_recall}')
    parser.add_argument('--min-strength', type=float, default=defaults.min_strength,
                        help=f'candidate blobs stand this many robust sigma above the background; default '
                             f'{defaults.min_strength}')
    parser.add_argument('--batch', type=int, default=defaults.batch, help=f'patches per batch; default {defaults.batch}')
    parser.add_argument('--lr', type=float, default=defaults.learning_rate,
                        help=f'Adam learning rate; default {defaults.learning_rate}')
    parser.add_argument('--channels', type=int, nargs=3, default=list(defaults.channels), metavar='C',
                        help=f"network channels per level; default {' '.join(map(str, defaults.channels))}")
    parser.set_defaults(func=_run_train_detector)


def _run_train_detector(args):
    from .core.consensus import read_star_picks
    from .learn import require_ml
    from .learn.settings import DetectorSettings

    require_ml()
    from .learn.detector import train_detector

    settings = DetectorSettings(iterations=args.iterations, batch=args.batch, learning_rate=args.lr,
                                channels=tuple(args.channels), folds=args.folds, target_recall=args.target_recall,
                                min_strength=args.min_strength, complete_annotation=args.complete, seed=args.seed,
                                threads=args.threads)
    settings.check()
    picks = read_star_picks(args.coords).picks
    volumes, centres, sizes = [], [], set()
    for path in args.tomograms:
        name = _tomogram_name(path)
        if name not in picks:
            raise CryoSegInputError(f"{args.coords} has no row with rlnTomoName {name!r} (found: {', '.join(picks)})")
        volume, info = _read_tomogram(path)
        volumes.append(volume)
        centres.append(picks[name].xyz)
        sizes.add(round(info.voxel_size[0], 3))
    if len(sizes) != 1:
        raise CryoSegInputError(f'the training tomograms must share one voxel size; got {sorted(sizes)} Å')
    history = train_detector(volumes, centres, args.diameter, sizes.pop(), args.out, _loss_log(args), settings)
    scores = history['validation']
    print(f"trained {len(history['folds'])} fold networks in {history['seconds']:.0f} s on {history['device']}; "
          f"score threshold {history['threshold']:.3f}; held-back particles: recall {scores['recall']:.2f}, "
          f"precision {scores['precision']:.2f} (a lower bound unless every particle is annotated), "
          f"F1 {scores['f1']:.2f}; model {args.out}, validation log {_loss_log(args)}")


def _add_detect(subparsers):
    parser = subparsers.add_parser(
        'detect', help='detect particles with a trained detector (needs [ml])',
        description='Writes OUT/NAME_instances.mrc (a ball of the trained diameter per particle, numbered 1..n) '
                    'and OUT/NAME_particles.star (centres in voxels, rlnAutopickFigureOfMerit = score) for every '
                    'tomogram.')
    parser.add_argument('tomograms', nargs='+', help='tomograms (MRC) of the voxel size the model was trained on')
    parser.add_argument('--model', required=True, help='model file written by train_detector')
    parser.add_argument('--out', required=True, help='output folder')
    parser.add_argument('--threshold', type=float,
                        help='smallest score of a pick, 0-1 (default: the threshold chosen in training)')
    parser.add_argument('--filter-outliers', action='store_true',
                        help='drop detections whose k-th nearest neighbour is farther than --outlier-distance')
    parser.add_argument('--neighbours', type=int, default=3, help='k of the outlier filter; default 3')
    parser.add_argument('--outlier-distance', type=float, default=30.0, help='in voxels; default 30')
    parser.add_argument('--threads', type=int, default=0, help='CPU threads for torch; 0 = torch default')
    parser.set_defaults(func=_run_detect)


def _check_model_sampling(model, info, path):
    if abs(info.voxel_size[0] - model.voxel_size) > 0.05 * model.voxel_size:
        raise CryoSegInputError(f'{path}: {info.voxel_size[0]:.2f} Å/px, but the model was trained at '
                                f'{model.voxel_size:.2f} Å/px')


def _load(path, kind):
    from .learn import require_ml

    require_ml()
    from .learn.training import load_model

    model = load_model(path)
    if model.kind != kind:
        raise CryoSegInputError(f'{path} is a {model.kind} model; this command needs a {kind} model')
    return model


def _run_detect(args):
    import numpy as np
    from emtable import Table

    from .core.detection import isolated
    from .core.mrcio import write_volume
    from .learn.detector import detect_particles
    from .learn.labels import particle_instances

    model = _load(args.model, 'detector')
    if args.threshold is not None and not 0 <= args.threshold <= 1:
        raise CryoSegInputError(f'the score threshold must be between 0 and 1; got {args.threshold}')
    if args.threads:
        import torch
        torch.set_num_threads(args.threads)
    os.makedirs(args.out, exist_ok=True)
    for path in args.tomograms:
        name = _tomogram_name(path)
        volume, info = _read_tomogram(path)
        _check_model_sampling(model, info, path)
        found = detect_particles(model, volume, args.threshold)
        keep = np.ones(len(found), bool)
        if args.filter_outliers:
            keep = ~isolated(found.centres, args.neighbours, args.outlier_distance)
        centres, scores = found.centres[keep], found.scores[keep]
        labels = particle_instances(volume.shape, centres, model.diameter / model.voxel_size)
        dtype = np.uint16 if len(centres) < 2 ** 16 else np.float32
        write_volume(os.path.join(args.out, f'{name}_instances.mrc'), labels.astype(dtype), info.voxel_size,
                     info.origin)
        table = Table(columns=['rlnTomoName', 'rlnCoordinateX', 'rlnCoordinateY', 'rlnCoordinateZ',
                               'rlnAutopickFigureOfMerit'])
        for centre, score in zip(centres, scores):
            table.addRow(name, *map(float, centre), float(score))
        star = os.path.join(args.out, f'{name}_particles.star')
        table.write(star, tableName='particles')
        print(f"{name}: {len(centres)} particles -> {star}")


def _add_train_mask(subparsers):
    parser = subparsers.add_parser(
        'train_mask', help='train a 3-D U-Net (MONAI) to reproduce tomogram masks (needs [ml])')
    parser.add_argument('tomograms', nargs='+', help='training tomograms (MRC)')
    parser.add_argument('--masks', nargs='+', required=True, help='their masks (MRC, non-zero = keep), same order')
    _add_training_options(parser, 1000, 4, 48, 1e-3, [16, 32, 64])
    parser.set_defaults(func=_run_train_mask)


def _run_train_mask(args):
    from .learn import require_ml

    require_ml()
    from .learn.training import train_mask

    if len(args.masks) != len(args.tomograms):
        raise CryoSegInputError(f'give one mask per tomogram ({len(args.tomograms)} tomograms, {len(args.masks)} masks)')
    volumes, masks = [], []
    for path, mask_path in zip(args.tomograms, args.masks):
        volume, info = _read_tomogram(path)
        volumes.append(volume)
        masks.append(_read_tomogram(mask_path)[0])
    history = train_mask(volumes, masks, info.voxel_size[0], args.out, _loss_log(args), _training_settings(args),
                         tuple(args.channels))
    print(f"trained {history['iterations']} iterations in {history['seconds']:.0f} s: loss {history['mask'][-1]:.4f}; "
          f"model {args.out}, loss log {_loss_log(args)}")


def _add_predict_mask(subparsers):
    parser = subparsers.add_parser('predict_mask', help='predict tomogram masks with a trained mask network (needs [ml])',
                                   description='Writes OUT/NAME_mask.mrc (8-bit, 1 = keep) for every tomogram.')
    parser.add_argument('tomograms', nargs='+', help='tomograms (MRC)')
    parser.add_argument('--model', required=True, help='model file written by train_mask')
    parser.add_argument('--out', required=True, help='output folder')
    parser.add_argument('--threshold', type=float, default=0.5, help='probability threshold; default 0.5')
    parser.add_argument('--min-region-size', type=int, default=250, help='remove smaller regions (voxels); default 250')
    parser.add_argument('--no-fill-holes', dest='fill_holes', action='store_false', help='keep enclosed holes')
    parser.add_argument('--keep-largest', action='store_true', help='keep only the largest region')
    parser.add_argument('--grow', type=float, default=0.0, help='grow (>0) or erode (<0) by this many voxels')
    parser.add_argument('--patch', type=int, default=96, help='inference cube side (multiple of 4); default 96')
    parser.add_argument('--threads', type=int, default=0, help='CPU threads for torch; 0 = torch default')
    parser.set_defaults(func=_run_predict_mask)


def _run_predict_mask(args):
    import numpy as np

    from .core.morphology import postprocess_mask
    from .core.mrcio import write_volume
    from .core.statmask import mask_file_name

    model = _load(args.model, 'mask')
    os.makedirs(args.out, exist_ok=True)
    for path in args.tomograms:
        volume, info = _read_tomogram(path)
        _check_model_sampling(model, info, path)
        probability = model.predict(volume, patch=args.patch, threads=args.threads)['mask']
        mask = postprocess_mask(probability > args.threshold, args.min_region_size, keep_largest=args.keep_largest,
                                fill_holes=args.fill_holes, grow=args.grow)
        target = os.path.join(args.out, mask_file_name(path))
        write_volume(target, mask.view(np.int8), info.voxel_size, info.origin)
        print(f"{_tomogram_name(path)}: mask keeps {100 * mask.mean():.1f} % of the voxels -> {target}")


def _add_evaluate(subparsers):
    parser = subparsers.add_parser(
        'evaluate', help='precision, recall and F1 of picks against reference picks (STAR tables)',
        description='Picks and references of each tomogram (rlnTomoName) are matched one-to-one within the radius '
                    '(Hungarian assignment); unmatched picks are false positives, unmatched references false negatives.')
    parser.add_argument('predicted', help='STAR table of the picks to score')
    parser.add_argument('reference', help='STAR table of the reference (true) positions')
    parser.add_argument('--radius', type=float, required=True,
                        help='matching radius in Å (in pixels when the pixel sizes are left at 1)')
    parser.add_argument('--pixel-size', type=float, nargs='+', default=[1.0], metavar='A',
                        help='Å per pixel of both tables (one value) or of each (two values)')
    _add_geometry_option(parser)
    parser.set_defaults(func=_run_evaluate)


def _run_evaluate(args):
    from .core.consensus import read_star_picks
    from .core.evaluation import score_tomograms

    sizes = _pixel_sizes(args.pixel_size, 2)
    geometries = _geometries(args)
    predicted, reference = ({ts: picks.xyz for ts, picks in
                             _report_convention(path, read_star_picks(path, size, geometries)).picks.items()}
                            for path, size in zip((args.predicted, args.reference), sizes))
    scores, total = score_tomograms(predicted, reference, args.radius)
    print(f"{'tomogram':<20} {'TP':>6} {'FP':>6} {'FN':>6} {'P':>6} {'R':>6} {'F1':>6}")
    for name, score in list(scores.items()) + [('all', total)]:
        print(f"{name:<20} {score.tp:>6} {score.fp:>6} {score.fn:>6} {score.precision:>6.3f} {score.recall:>6.3f} "
              f"{score.f1:>6.3f}")


def _add_learned(subparsers):
    for add in (_add_train_detector, _add_detect, _add_train_mask, _add_predict_mask, _add_evaluate):
        add(subparsers)


def build_parser():
    parser = argparse.ArgumentParser(prog='cryoseg', description=__doc__.splitlines()[0])
    subparsers = parser.add_subparsers(dest='command', required=True)
    _add_phantom(subparsers)
    _add_make_mask(subparsers)
    _add_extract(subparsers)
    _add_consensus(subparsers)
    _add_remove_duplicates(subparsers)
    _add_segdiam_pick(subparsers)
    _add_model_workflow(subparsers)
    _add_learned(subparsers)
    _add_convert(subparsers)
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
