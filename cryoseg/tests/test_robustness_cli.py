"""Robustness catalogue, command-line part: every subcommand answers a user mistake with one clear
line on stderr and exit code 2 (no traceback), writes no output and leaves its inputs unchanged.

``cryoseg.cli.main`` is called in-process, as the console script does: an exception other than the
input error would escape it and fail the test.
"""
import os

import pytest
from emtable import Table

from cryoseg.cli import main
from cryoseg.tests import badinputs


def star(path, rows, columns=('rlnTomoName', 'rlnCoordinateX', 'rlnCoordinateY', 'rlnCoordinateZ')):
    table = Table(columns=list(columns))
    for row in rows:
        table.addRow(*row)
    table.write(str(path), tableName='particles')
    return str(path)


@pytest.fixture(scope='module')
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp('bad_inputs')
    paths = {name: writer(str(folder / f'{name}.mrc')) for name, (writer, _) in badinputs.BAD_VOLUMES.items()}
    paths['good'] = badinputs.write_mrc(folder / 'good.mrc', badinputs.noise_volume())
    paths['good_5A'] = badinputs.write_mrc(folder / 'good_5A.mrc', badinputs.noise_volume(1), voxel_size=5.0)
    paths['zero_sampling'] = badinputs.zero_voxel_size(str(folder / 'zero_sampling.mrc'))
    paths['picks'] = star(folder / 'picks.star', [('good', 20.0, 20.0, 10.0), ('good', 30.0, 25.0, 12.0)])
    paths['other_picks'] = star(folder / 'other_picks.star', [('TS_09', 20.0, 20.0, 10.0)])
    paths['no_picks'] = star(folder / 'no_picks.star', [])
    paths['no_columns'] = star(folder / 'no_columns.star', [('good', 1.0)], columns=('rlnTomoName', 'rlnFoo'))
    paths['few_points'] = star(folder / 'few_points.star', [(1, 10.0, 10.0, 10.0), (1, 12.0, 10.0, 10.0)],
                               columns=('cryosegGroup', 'rlnCoordinateX', 'rlnCoordinateY', 'rlnCoordinateZ'))
    paths['text'] = badinputs.not_mrc(str(folder / 'text.star'))
    os.makedirs(folder / 'empty_folder')
    paths['empty_folder'] = str(folder / 'empty_folder')
    return paths


BAD_VOLUME_CASES = [(name, message) for name, (_, message) in badinputs.BAD_VOLUMES.items()]

# (case id, argv with {file} placeholders and OUT for the output, expected message)
CASES = [
    *[(f'make_mask-{name}', ['make_mask', f'{{{name}}}', 'OUT'], message) for name, message in BAD_VOLUME_CASES],
    *[(f'segdiam_pick-{name}', ['segdiam_pick', f'{{{name}}}', '--out', 'OUT/picks.star'], message)
      for name, message in BAD_VOLUME_CASES],
    *[(f'extract-{name}', ['extract', f'{{{name}}}', '{picks}', '--box', '8', '--out', 'OUT'], message)
      for name, message in BAD_VOLUME_CASES if name in ('not_mrc', 'truncated', 'corrupt_header', 'image_2d')],
    ('make_mask-missing_file', ['make_mask', '/no/such/tomogram.mrc', 'OUT'], 'no such file'),
    ('make_mask-empty_folder', ['make_mask', '{empty_folder}', 'OUT'], 'holds no .mrc'),
    ('make_mask-percentile_0', ['make_mask', '{good}', 'OUT', '--percentile', '0'], 'percentile'),
    ('make_mask-negative_side', ['make_mask', '{good}', 'OUT', '--side', '-3'], 'side'),
    ('segdiam_pick-zero_sampling', ['segdiam_pick', '{zero_sampling}', '--out', 'OUT/p.star'], 'pixel size'),
    ('segdiam_pick-mismatched_samplings', ['segdiam_pick', '{good}', '{good_5A}', '--out', 'OUT/p.star'],
     'different pixel sizes'),
    ('segdiam_pick-inverted_range', ['segdiam_pick', '{good}', '--diameter-range', '300', '100', '--out',
                                     'OUT/p.star'], 'MIN < MAX'),
    ('segdiam_pick-zero_particles', ['segdiam_pick', '{good}', '--diameter-range', '2000', '3000', '--out',
                                     'OUT/p.star'], 'no size estimate'),
    ('segdiam_pick-mask_count', ['segdiam_pick', '{good}', '--mask', '{good}', '{good}', '--out', 'OUT/p.star'],
     'one --mask per tomogram'),
    ('extract-box_larger_than_tomogram', ['extract', '{good}', '{picks}', '--box', '200', '--out', 'OUT'],
     'larger than the tomogram'),
    ('extract-negative_box', ['extract', '{good}', '{picks}', '--box', '-4', '--out', 'OUT'], 'box'),
    ('extract-bin_below_1', ['extract', '{good}', '{picks}', '--box', '8', '--bin', '0.5', '--out', 'OUT'],
     'factor'),
    ('extract-not_a_star_file', ['extract', '{good}', '{text}', '--box', '8', '--out', 'OUT'], 'STAR'),
    ('extract-no_coordinate_columns', ['extract', '{good}', '{no_columns}', '--box', '8', '--out', 'OUT'],
     'rlnCoordinateX'),
    ('extract-empty_star_file', ['extract', '{good}', '{no_picks}', '--box', '8', '--out', 'OUT'], 'STAR file'),
    ('extract-tomogram_without_coordinates', ['extract', '{good}', '{other_picks}', '--box', '8', '--out', 'OUT'],
     "no row of"),
    ('consensus-negative_radius', ['consensus', '{picks}', '{picks}', '--radius', '-5', '--out', 'OUT/c.star'],
     'radius'),
    ('consensus-zero_pixel_size', ['consensus', '{picks}', '{picks}', '--radius', '5', '--pixel-size', '0',
                                   '--out', 'OUT/c.star'], 'pixel sizes must be positive'),
    ('consensus-votes_above_inputs', ['consensus', '{picks}', '{picks}', '--radius', '5', '--consensus', '5',
                                      '--out', 'OUT/c.star'], 'consensus'),
    ('consensus-missing_file', ['consensus', '{picks}', '/no/such.star', '--radius', '5', '--out', 'OUT/c.star'],
     'no such file'),
    ('remove_duplicates-zero_radius', ['remove_duplicates', '{picks}', '--radius', '0', '--out', 'OUT/d.star'],
     'radius'),
    ('remove_duplicates-not_a_star_file', ['remove_duplicates', '{text}', '--radius', '5', '--out', 'OUT/d.star'],
     'rlnCoordinateX'),
    ('model_workflow-too_few_points', ['model_workflow', '{few_points}', '--model', 'vesicle', '--spacing', '50',
                                       '--angpix', '10', '--out', 'OUT/crop.star'], 'no geometry could be fitted'),
    ('model_workflow-zero_pixel_size', ['model_workflow', '{few_points}', '--spacing', '50', '--angpix', '0',
                                        '--out', 'OUT/crop.star'], 'angpix must be positive'),
    ('model_workflow-negative_spacing', ['model_workflow', '{few_points}', '--spacing', '-50', '--angpix', '10',
                                         '--out', 'OUT/crop.star'], 'spacing'),
    ('phantom-zero_count', ['phantom', 'OUT', '--count', '0'], 'count must be at least 1'),
]


@pytest.mark.parametrize('argv, message', [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_user_mistake_gets_one_clear_line(files, tmp_path, capsys, argv, message):
    out = tmp_path / 'out'
    argv = [arg.format(**files).replace('OUT', str(out)) for arg in argv]
    inputs = [arg for arg in argv[1:] if os.path.isfile(arg)]
    before = badinputs.checksums(inputs)

    assert main(argv) == 2
    stderr = capsys.readouterr().err
    assert 'Traceback' not in stderr
    last = stderr.strip().splitlines()[-1]
    assert last.startswith(f'cryoseg {argv[0]}: error: ')
    assert message.lower() in stderr.lower(), stderr
    written = [name for name in os.listdir(out)] if out.exists() else []
    assert not written, f'files written despite the error: {written}'
    assert badinputs.checksums(inputs) == before


def test_catalogue_size():
    assert len(CASES) >= 30
