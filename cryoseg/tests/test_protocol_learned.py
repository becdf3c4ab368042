"""Learned protocols and picking evaluation in a real headless Scipion project.

A detector is trained on TS_01's ground-truth particles (every particle annotated), applied to both
phantoms and scored by the evaluation protocol against the ground truth; on thicker phantoms, a mask network learns TS_01's ice
slab and predicts TS_02's. Without torch the plugin still loads and the learned protocols say what to install.
"""
import os
import subprocess
import sys

import numpy as np
import pytest
from tomo.protocols import ProtImportCoordinates3D, ProtImportTomomasks

from cryoseg import convert
from cryoseg.core.evaluation import score_points
from cryoseg.core.mrcio import read_volume, write_volume
from cryoseg.tests.base import CryoSegProjectTest
from cryoseg.tests.test_learn import DETECTOR_PHANTOM

pytest.importorskip('torch')

from cryoseg.protocols import (ProtCryoSegDetectParticles, ProtCryoSegEvaluatePicking,  # noqa: E402
                               ProtCryoSegPredictMask, ProtCryoSegTrainDetector, ProtCryoSegTrainMaskNet)
from cryoseg.viewers.viewer_learned import evaluation_figure, loss_figure, validation_figure  # noqa: E402
from cryoseg.learn import read_loss_log  # noqa: E402
from cryoseg.learn.detector import LOG_COLUMNS  # noqa: E402

SAMPLING = 20.0
DETECTOR_TRAINING = dict(iterations=40, validateEvery=10, batchSize=16, numberOfThreads=2)


def slab_mask(truth):
    mask = np.zeros(truth.shape_xyz[::-1], np.int8)
    mask[truth.ice_z[0]:truth.ice_z[1]] = 1
    return mask


class TestLearnedProtocols(CryoSegProjectTest):
    SAMPLING = SAMPLING
    PHANTOM = {k: v for k, v in DETECTOR_PHANTOM.items() if k != 'voxel_size'}

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.centres = {ts: np.array([p['centre'] for p in truth.particles]) for ts, truth in cls.truths.items()}
        cls.training = cls.importCoordinates('train', {'TS_01': cls.centres['TS_01']})
        cls.reference = cls.importCoordinates('reference', cls.centres)

    @classmethod
    def importCoordinates(cls, name, centres):
        folder = os.path.join(cls.proj.getPath(), f'coords_{name}')
        os.makedirs(folder, exist_ok=True)
        for ts, xyz in centres.items():
            np.savetxt(os.path.join(folder, f'{ts}.txt'), xyz)
        return cls.runProtocol(ProtImportCoordinates3D, filesPath=folder, filesPattern='*.txt',
                               importTomograms=cls.tomograms, boxSize=8).outputCoordinates

    def test_detector_chain(self):
        train = self.runProtocol(ProtCryoSegTrainDetector, inputCoordinates=self.training, diameter=160.0,
                                 completeAnnotation=True, **DETECTOR_TRAINING)
        model = train.model
        self.assertEqual((model.getKind(), model.getVoxelSize(), model.getDiameter()), ('detector', SAMPLING, 160.0))
        self.assertTrue(os.path.exists(model.getModelFile()))
        log = read_loss_log(model.getLossLog())
        self.assertEqual(list(log), LOG_COLUMNS)
        self.assertEqual(set(log['fold'].astype(int)), {0, 1, 2, 3})
        self.assertTrue(np.all(log['iteration'] % DETECTOR_TRAINING['validateEvery'] == 0))
        report = model.getReport()
        self.assertEqual(len(report['kept_iterations']), 4)
        self.assertTrue(0 < report['threshold'] < 1)
        self.assertGreaterEqual(report['validation']['recall'], 0.7)  # out of fold, on held-back particles
        summary = ' '.join(train.summary())
        self.assertIn('recall', summary)
        self.assertNotIn('lower bound', summary)  # the phantom's annotation is complete
        validation_figure(log)

        detect = self.runProtocol(ProtCryoSegDetectParticles, inputTomograms=self.tomograms, inputModel=model)
        coords, labels = detect.coordinates, detect.instanceMasks
        self.assertEqual(coords.getBoxSize(), 8)
        self.assertEqual(coords.getSamplingRate(), SAMPLING)
        found = {ts: table for ts, table in convert.read_coordinates(coords).items()}
        self.assertEqual(set(found), {'TS_01', 'TS_02'})
        for mask in labels.iterItems():
            volume, _ = read_volume(convert.tomogram_path(mask))
            table = found[mask.getTsId()]
            self.assertEqual(int(volume.max()), len(table))  # one label per detected particle
            self.assertTrue(np.all((table.scores >= report['threshold'] - 1e-4) & (table.scores <= 1)))
            # each particle's ball is numbered in the table's order and holds its centre
            x, y, z = np.round(table.xyz).astype(int).T
            self.assertEqual(volume[z, y, x].tolist(), list(range(1, len(table) + 1)))

        evaluate = self.runProtocol(ProtCryoSegEvaluatePicking, inputCoordinates=coords,
                                    referenceCoordinates=self.reference, radius=80.0)
        evaluation = evaluate.getEvaluation()
        for ts in ('TS_01', 'TS_02'):
            expected = score_points(found[ts].xyz, self.centres[ts], radius=4.0)
            self.assertEqual(evaluation['tomograms'][ts]['tp'], expected.tp)
            self.assertAlmostEqual(evaluation['tomograms'][ts]['f1'], expected.f1)
        unseen = evaluation['tomograms']['TS_02']  # a phantom the detector never saw
        self.assertGreaterEqual(unseen['recall'], 0.8)
        self.assertGreaterEqual(unseen['precision'], 0.8)
        self.assertIn('F1', ' '.join(evaluate.summary()))
        self.assertTrue(os.path.exists(evaluate._getExtraPath('evaluation.csv')))
        evaluation_figure(evaluation)

        # the evaluation needs no network: the reference scores itself perfectly, radius from the box
        selfScore = self.runProtocol(ProtCryoSegEvaluatePicking, inputCoordinates=self.reference,
                                     referenceCoordinates=self.reference).getEvaluation()
        self.assertEqual(selfScore['radius'], 8 * SAMPLING / 2)
        self.assertEqual(selfScore['total']['f1'], 1.0)

        wrongKind = self.newProtocol(ProtCryoSegPredictMask, inputTomograms=self.tomograms, inputModel=model)
        self.assertIn('needs a mask model', ' '.join(wrongKind.validate()))
        badThreshold = self.newProtocol(ProtCryoSegDetectParticles, inputTomograms=self.tomograms, inputModel=model,
                                        scoreThreshold=1.5)
        self.assertIn('threshold chosen in training', ' '.join(badThreshold.validate()))
        tooFew = self.newProtocol(ProtCryoSegTrainDetector, inputCoordinates=self.training, folds=11)
        self.assertIn('annotate at least 22', ' '.join(tooFew.validate()))


class TestMaskNetworkProtocols(CryoSegProjectTest):
    """A thicker phantom whose ice slab (half the volume) lies between 16-voxel layers of empty noise."""
    SAMPLING = SAMPLING
    PHANTOM = dict(shape_zyx=(64, 80, 80), ice_fraction=0.5, particle_diameters=(160.0,), particles_per_class=(20,),
                   sphere_vesicle_radii=(), ellipsoid_vesicle_radii=(), filament=False, gold_beads=0,
                   contamination=False, noise_std=0.3)

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        folder = os.path.join(cls.proj.getPath(), 'slabs')
        os.makedirs(folder, exist_ok=True)
        write_volume(os.path.join(folder, 'TS_01.mrc'), slab_mask(cls.truths['TS_01']), SAMPLING)
        cls.slabMasks = cls.runProtocol(ProtImportTomomasks, filesPath=folder, filesPattern='*.mrc',
                                        inputTomos=cls.tomograms).tomomasks

    def test_mask_network_learns_the_slab(self):
        train = self.runProtocol(ProtCryoSegTrainMaskNet, inputTomograms=self.tomograms, inputMasks=self.slabMasks,
                                 iterations=600, channels='8 16 32', batchSize=4, patchSize=32, learningRate=2e-3,
                                 numberOfThreads=2)
        self.assertEqual(train.model.getKind(), 'mask')
        log = read_loss_log(train.model.getLossLog())
        self.assertEqual(len(log['mask_loss']), 600)
        loss_figure(log)
        predict = self.runProtocol(ProtCryoSegPredictMask, inputTomograms=self.tomograms, inputModel=train.model,
                                   inferencePatch=64, minRegion=0.0, keepLargest=True)
        masks = convert.tomograms_by_tsid(predict.tomoMasks)
        self.assertEqual(set(masks), {'TS_01', 'TS_02'})
        predicted = read_volume(convert.tomogram_path(masks['TS_02']))[0] > 0  # not seen in training
        truth = slab_mask(self.truths['TS_02']) > 0
        iou = np.count_nonzero(predicted & truth) / np.count_nonzero(predicted | truth)
        self.assertGreaterEqual(iou, 0.9)


def test_without_torch_plugin_loads_and_learned_protocols_explain():
    code = ("import sys\n"
            "class Block:\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name.split('.')[0] in ('torch', 'monai'): raise ImportError('blocked ' + name)\n"
            "sys.meta_path.insert(0, Block())\n"
            "from pyworkflow.plugin import Domain\n"
            "assert 'cryoseg' in Domain.getPlugins(), 'plugin not registered'\n"
            "protocols = Domain.getProtocols()\n"
            "for name in ('ProtCryoSegTrainDetector', 'ProtCryoSegDetectParticles', 'ProtCryoSegTrainMaskNet',\n"
            "             'ProtCryoSegPredictMask'):\n"
            "    print(name, protocols[name]()._validate())\n"
            "print('evaluate', protocols['ProtCryoSegEvaluatePicking']()._validate())\n"
            "assert 'torch' not in sys.modules\n")
    result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 5
    for line in lines[:4]:
        assert "pip install 'scipion-em-cryoseg[ml]'" in line, line
    assert lines[4] == 'evaluate []'
