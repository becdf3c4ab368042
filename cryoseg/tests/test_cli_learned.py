"""The learned-model and evaluation subcommands of the ``cryoseg`` command on MRC/STAR files."""
import os

import numpy as np
import pytest
from emtable import Table

from cryoseg.cli import main
from cryoseg.core.mrcio import read_volume, write_volume
from cryoseg.core.phantom import write_sample_data
from cryoseg.tests.test_learn import DETECTOR_PHANTOM


def write_star(path, rows):
    table = Table(columns=['rlnTomoName', 'rlnCoordinateX', 'rlnCoordinateY', 'rlnCoordinateZ'])
    for name, xyz in rows:
        table.addRow(name, *map(float, xyz))
    table.write(str(path), tableName='particles')
    return str(path)


def test_evaluate_prints_known_scores(tmp_path, capsys):
    truth = np.arange(60, dtype=float).reshape(20, 3) * 10
    reference = write_star(tmp_path / 'truth.star', [('TS_01', p) for p in truth])
    picks = [('TS_01', p + [0.5, 0, 0]) for p in truth] + [('TS_01', [900.0 + 20 * i, 0, 0]) for i in range(5)]
    predicted = write_star(tmp_path / 'picks.star', picks)
    assert main(['evaluate', predicted, reference, '--radius', '30', '--pixel-size', '10']) == 0
    lines = capsys.readouterr().out.splitlines()
    all_row = [line.split() for line in lines if line.startswith('all')][0]
    assert all_row[1:] == ['20', '5', '0', '0.800', '1.000', '0.889']
    assert main(['evaluate', predicted, reference, '--radius', '0.4']) == 0  # pixels: below the jitter
    assert [line.split() for line in capsys.readouterr().out.splitlines() if line.startswith('all')][0][1] == '0'


def test_evaluate_bad_input_is_explained(tmp_path, capsys):
    reference = write_star(tmp_path / 'truth.star', [('TS_01', (1, 2, 3))])
    assert main(['evaluate', str(tmp_path / 'missing.star'), reference, '--radius', '3']) == 2
    assert 'no such file' in capsys.readouterr().err


torch = pytest.importorskip('torch')


@pytest.fixture(scope='module')
def phantoms(tmp_path_factory):
    folder = tmp_path_factory.mktemp('phantoms')
    truths = write_sample_data(str(folder), count=1, seed=1, **DETECTOR_PHANTOM)
    centres = [p['centre'] for p in truths['TS_01'].particles]
    star = write_star(folder / 'particles.star', [('TS_01', c) for c in centres])
    return folder, truths['TS_01'], star


def test_train_and_detect_round_trip(phantoms, tmp_path, capsys):
    folder, truth, star = phantoms
    tomogram = str(folder / 'TS_01.mrc')
    model = str(tmp_path / 'detector.pt')
    assert main(['train_detector', tomogram, '--coords', star, '--diameter', '160', '--out', model, '--complete',
                 '--iterations', '40', '--channels', '4', '6', '8', '--threads', '2']) == 0
    printed = capsys.readouterr().out
    assert 'trained 4 fold networks' in printed and 'score threshold' in printed
    assert os.path.exists(model) and os.path.exists(str(tmp_path / 'detector_loss.csv'))
    out = tmp_path / 'detected'
    assert main(['detect', tomogram, '--model', model, '--out', str(out), '--threads', '2']) == 0
    count = int(capsys.readouterr().out.split('TS_01: ')[1].split()[0])
    labels, _ = read_volume(str(out / 'TS_01_instances.mrc'))
    assert labels.shape == truth.shape_xyz[::-1] and int(labels.max()) == count
    table = Table(fileName=str(out / 'TS_01_particles.star'), tableName='particles')
    picks = np.array([(row.rlnCoordinateX, row.rlnCoordinateY, row.rlnCoordinateZ) for row in table])
    from cryoseg.core.evaluation import score_points
    score = score_points(picks, [p['centre'] for p in truth.particles], radius=4)
    assert table.size() == count and score.recall >= 0.8 and score.precision >= 0.8, score
    # a threshold of 1 keeps nothing; a detector is not a mask model; the STAR must name the tomogram
    assert main(['detect', tomogram, '--model', model, '--out', str(out), '--threshold', '1']) == 0
    assert 'TS_01: 0 particles' in capsys.readouterr().out
    assert main(['detect', tomogram, '--model', model, '--out', str(out), '--threshold', '2']) == 2
    assert 'between 0 and 1' in capsys.readouterr().err
    assert main(['predict_mask', tomogram, '--model', model, '--out', str(tmp_path / 'm')]) == 2
    assert 'needs a mask model' in capsys.readouterr().err
    other = write_star(tmp_path / 'other.star', [('TS_09', (1, 2, 3))])
    assert main(['train_detector', tomogram, '--coords', other, '--diameter', '160', '--out', model]) == 2
    assert "no row with rlnTomoName 'TS_01'" in capsys.readouterr().err


def test_train_and_predict_mask_round_trip(phantoms, tmp_path, capsys):
    folder, truth, _ = phantoms
    tomogram = str(folder / 'TS_01.mrc')
    slab = np.zeros(truth.shape_xyz[::-1], np.int8)
    slab[truth.ice_z[0]:truth.ice_z[1]] = 1
    mask_path = write_volume(str(tmp_path / 'slab.mrc'), slab, truth.voxel_size)
    model = str(tmp_path / 'mask.pt')
    assert main(['train_mask', tomogram, '--masks', mask_path, '--out', model, '--iterations', '2', '--batch', '1',
                 '--patch', '24', '--channels', '4', '8', '16', '--threads', '2']) == 0
    assert main(['predict_mask', tomogram, '--model', model, '--out', str(tmp_path / 'masks'), '--patch', '48',
                 '--min-region-size', '0']) == 0
    assert 'TS_01: mask keeps' in capsys.readouterr().out
    predicted, _ = read_volume(str(tmp_path / 'masks' / 'TS_01_mask.mrc'))
    assert predicted.shape == slab.shape and set(np.unique(predicted)) <= {0, 1}
    assert main(['train_mask', tomogram, '--masks', mask_path, mask_path, '--out', model]) == 2
    assert 'one mask per tomogram' in capsys.readouterr().err
