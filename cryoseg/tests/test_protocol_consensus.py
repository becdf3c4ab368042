"""Picking consensus and duplicate removal protocols in a real headless Scipion project.

Three pickings of the phantom particles are imported with scipion-em-tomo's coordinate import:
A (10 Å/px) finds every particle of TS_01, four of them twice, plus two false positives, and has no
picks in TS_02; B (10 Å/px) misses the first three particles of TS_01 and finds all of TS_02;
C is picked on bin-2 tomograms (20 Å/px, halved coordinates) and misses the first two of TS_02.
"""
import os

import numpy as np
from scipy.spatial import cKDTree
from tomo.constants import BOTTOM_LEFT_CORNER
from tomo.protocols import ProtImportCoordinates3D

from cryoseg.core.mrcio import read_volume, write_volume
from cryoseg.protocols import ProtCryoSegPickingConsensus, ProtCryoSegRemoveDuplicates
from cryoseg.tests.base import CryoSegProjectTest
from cryoseg.viewers.viewer_consensus import consensus_figure

BOX = 24


def centres(truth):
    return np.array([p['centre'] for p in truth.particles], float)


def far_points(truth, count, rng, distance=15):
    """Points inside the volume at least ``distance`` voxels from every particle."""
    tree, shape = cKDTree(centres(truth)), np.array(truth.shape_xyz)
    found = []
    while len(found) < count:
        point = rng.uniform(20, shape - 20)
        if tree.query(point)[0] > distance and all(np.linalg.norm(point - f) > distance for f in found):
            found.append(point)
    return np.array(found)


class TestPickingConsensus(CryoSegProjectTest):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        rng = np.random.default_rng(11)
        t1, t2 = centres(cls.truths['TS_01']), centres(cls.truths['TS_02'])
        cls.n1, cls.n2 = len(t1), len(t2)
        jitter = lambda xyz: xyz + rng.normal(0, 0.4, xyz.shape)  # noqa: E731  voxels
        cls.false_positives = far_points(cls.truths['TS_01'], 2, rng)
        cls.duplicates = t1[:4] + [1.5, 0, 0]
        picks = {
            'A': {'TS_01': np.concatenate([jitter(t1), cls.false_positives, cls.duplicates])},
            'B': {'TS_01': jitter(t1[3:]), 'TS_02': jitter(t2)},
            'C': {'TS_01': jitter(t1) / 2, 'TS_02': jitter(t2[2:]) / 2},
        }
        a, b, c = picks['A']['TS_01'][:cls.n1], picks['B']['TS_01'], picks['C']['TS_01'] * 2
        cls.expected_means = {  # per particle, the mean of the picks that found it (bin-1 voxels)
            'TS_01': np.concatenate([(a[:3] + c[:3]) / 2, (a[3:] + b + c[3:]) / 3]),
            'TS_02': (picks['B']['TS_02'][2:] + picks['C']['TS_02'] * 2) / 2}
        bin2_dir = os.path.join(cls.proj.getPath(), 'bin2')
        os.makedirs(bin2_dir, exist_ok=True)
        for ts_id in cls.truths:
            volume, _ = read_volume(os.path.join(cls.dataDir, f'{ts_id}.mrc'))
            z, y, x = (s // 2 for s in volume.shape)
            binned = volume[:2 * z, :2 * y, :2 * x].reshape(z, 2, y, 2, x, 2).mean((1, 3, 5))
            write_volume(os.path.join(bin2_dir, f'{ts_id}.mrc'), binned, 2 * cls.SAMPLING)
        bin2_tomograms = cls.importTomograms(bin2_dir, 2 * cls.SAMPLING)
        cls.sets = {}
        for name, tomograms, box in (('A', cls.tomograms, BOX), ('B', cls.tomograms, BOX),
                                     ('C', bin2_tomograms, BOX // 2)):
            folder = os.path.join(cls.proj.getPath(), f'picks_{name}')
            os.makedirs(folder, exist_ok=True)
            for ts_id, xyz in picks[name].items():
                np.savetxt(os.path.join(folder, f'{ts_id}.txt'), xyz)
            prot = cls.runProtocol(ProtImportCoordinates3D, filesPath=folder, filesPattern='*.txt',
                                   importTomograms=tomograms, boxSize=box)
            cls.sets[name] = prot.outputCoordinates

    def positions(self, coord_set):
        """{tsId: (N, 3) bottom-left-corner positions} and scores of an output set."""
        result = {}
        for coord in coord_set.iterCoordinates():
            result.setdefault(coord.getTomoId(), []).append((*coord.getPosition(BOTTOM_LEFT_CORNER),
                                                             coord.getScore()))
        return {ts_id: np.array(rows) for ts_id, rows in result.items()}

    def assertNear(self, found, expected, tolerance):
        distance, _ = cKDTree(expected).query(found)
        self.assertLess(distance.max(), tolerance)

    def test_consensus_of_three_pickings_at_two_samplings(self):
        prot = self.runProtocol(ProtCryoSegPickingConsensus,
                                inputCoordinates=[self.sets['A'], self.sets['B'], self.sets['C']],
                                consensusRadius=40.0, consensus=2, outputDifference=True,
                                differenceInput=1)
        output = prot.consensusCoordinates
        self.assertEqual(output.getSamplingRate(), self.SAMPLING)
        self.assertEqual(output.getBoxSize(), BOX)
        rows = self.positions(output)
        # TS_01: every particle has >= 2 votes (the bin-2 set C matches A); duplicates and false
        # positives have 1. TS_02 (no picks in A): all but the two C missed.
        self.assertEqual(len(rows['TS_01']), self.n1)
        self.assertEqual(len(rows['TS_02']), self.n2 - 2)
        for ts_id in ('TS_01', 'TS_02'):  # float mean positions of the matched picks
            self.assertNear(rows[ts_id][:, :3], self.expected_means[ts_id], 1e-3)
            self.assertNear(rows[ts_id][:, :3], centres(self.truths[ts_id]), 1.5)
        self.assertEqual(sorted(rows['TS_01'][:, 3]), [2] * 3 + [3] * (self.n1 - 3))
        self.assertTrue(np.all(rows['TS_02'][:, 3] == 2))
        # positions are float means, not truncated
        self.assertTrue(np.any(np.abs(rows['TS_01'][:, :3] - np.round(rows['TS_01'][:, :3])) > 0.01))

        only_a = self.positions(prot.differenceCoordinates)
        self.assertEqual(list(only_a), ['TS_01'])
        self.assertNear(only_a['TS_01'][:, :3], np.concatenate([self.false_positives, self.duplicates]), 1e-3)
        self.assertEqual(len(only_a['TS_01']), 6)

        report = prot.getReport()['tomograms']
        self.assertEqual(report['TS_01']['inputs'], [self.n1 + 6, self.n1 - 3, self.n1])
        self.assertEqual(report['TS_02']['inputs'], [0, self.n2, self.n2 - 2])
        self.assertAlmostEqual(report['TS_01']['jaccard'], (self.n1 - 3) / (self.n1 + 6))
        self.assertEqual(report['TS_01']['votes'], [0, 6, 3, self.n1 - 3])
        summary = '\n'.join(prot.summary())
        self.assertIn('Jaccard', summary)

        figure = consensus_figure(prot)  # headless (Agg): histogram + one panel per tomogram
        histogram = figure.axes[0]
        self.assertEqual([p.get_height() for p in histogram.patches], [6 + 2, 3 + self.n2 - 2, self.n1 - 3])
        self.assertEqual(len(figure.axes), 3)
        figure.savefig(os.path.join(self.proj.getPath(), 'consensus.png'))
        self.assertIn(f'Consensus: {self.n1 + self.n2 - 2} coordinates', summary)

    def test_or_includes_a_tomogram_only_later_pickings_have_and_an_empty_result_is_valid(self):
        union = self.runProtocol(ProtCryoSegPickingConsensus,
                                 inputCoordinates=[self.sets['A'], self.sets['B']],
                                 consensusRadius=40.0, consensus=1)
        rows = self.positions(union.consensusCoordinates)
        self.assertEqual(len(rows['TS_02']), self.n2)
        self.assertEqual(len(rows['TS_01']), self.n1 + 2 + 4)
        empty = self.runProtocol(ProtCryoSegPickingConsensus,
                                 inputCoordinates=[self.sets['A'], self.sets['B']],
                                 consensusRadius=0.001, consensus=-1)
        self.assertEqual(empty.consensusCoordinates.getSize(), 0)
        self.assertIn('Consensus: 0 coordinates', '\n'.join(empty.summary()))

    def test_remove_duplicates_keeps_one_pick_per_particle(self):
        prot = self.runProtocol(ProtCryoSegRemoveDuplicates, inputCoordinates=self.sets['A'],
                                radius=40.0, keep=1)
        rows = self.positions(prot.coordinates)
        self.assertEqual(len(rows['TS_01']), self.n1 + 2)
        expected = np.concatenate([centres(self.truths['TS_01']), self.false_positives])
        self.assertNear(rows['TS_01'][:, :3], expected, 2.0)
        self.assertEqual(prot.coordinates.getBoxSize(), BOX)

    def test_validation_messages(self):
        single = self.newProtocol(ProtCryoSegPickingConsensus, inputCoordinates=[self.sets['A']])
        self.assertTrue(any('at least two' in e for e in single.validate()))
        too_many = self.newProtocol(ProtCryoSegPickingConsensus,
                                    inputCoordinates=[self.sets['A'], self.sets['B']], consensus=3)
        self.assertTrue(any('between 1 and the number' in e for e in too_many.validate()))
