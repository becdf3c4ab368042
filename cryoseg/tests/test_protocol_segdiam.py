"""Segdiam pick in a real headless Scipion project, on phantoms with 180 Å particles, gold beads and
contamination whose positions and sizes are known."""
import json
import os

import numpy as np
from emtable import Table
from tomo.protocols import ProtImportTomomasks

from cryoseg.convert import read_coordinates
from cryoseg.core.mrcio import write_volume
from cryoseg.core.segdiam import box_and_mask
from cryoseg.protocols import ProtCryoSegSegDiamPick
from cryoseg.protocols.protocol_segdiam_pick import DIAMETER_ATTRIBUTE
from cryoseg.tests.base import CryoSegProjectTest

MASK_X = 128  # masks keep x < MASK_X


class TestSegDiamPickProtocol(CryoSegProjectTest):
    PHANTOM = dict(noise_std=0.4, texture_amplitude=0.1, particle_diameters=(180.0,), particles_per_class=(20,),
                   sphere_vesicle_radii=(), ellipsoid_vesicle_radii=(), filament=False, gold_beads=3)

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        maskDir = os.path.join(cls.proj.getPath(), 'masks')
        for tsId, truth in cls.truths.items():
            mask = np.zeros(truth.shape_xyz[::-1], np.uint8)
            mask[:, :, :MASK_X] = 1
            write_volume(os.path.join(maskDir, f'{tsId}.mrc'), mask, cls.SAMPLING)
        importMasks = cls.newProtocol(ProtImportTomomasks, filesPath=maskDir, filesPattern='*.mrc',
                                      samplingRate=cls.SAMPLING, inputTomos=cls.tomograms)
        cls.launchProtocol(importMasks)
        cls.masks = importMasks.tomomasks
        cls.plain = cls.runProtocol(ProtCryoSegSegDiamPick, inputTomograms=cls.tomograms, numberOfThreads=2)
        cls.masked = cls.runProtocol(ProtCryoSegSegDiamPick, inputTomograms=cls.tomograms, inputMasks=cls.masks,
                                     clustering=1, numberOfThreads=2)
        cls.nothing = cls.runProtocol(ProtCryoSegSegDiamPick, inputTomograms=cls.tomograms, minDiameter=900.0,
                                      maxDiameter=1000.0)

    def particleTruth(self, tsId):
        return np.array([p['centre'] for p in self.truths[tsId].particles])

    def test_picks_particles_rejects_gold_and_derives_box(self):
        prot = self.plain
        coords = prot.coordinates
        self.assertEqual(coords.getSamplingRate(), self.SAMPLING)
        with open(prot._getExtraPath('size_estimate.json')) as handle:
            estimate = json.load(handle)
        self.assertTrue(estimate['ok'])
        self.assertAlmostEqual(estimate['after']['median'], 180.0, delta=self.SAMPLING)  # ± 1 voxel
        box, mask = box_and_mask(estimate['maxv'], self.SAMPLING)
        self.assertEqual(prot.boxSize.get(), box)
        self.assertAlmostEqual(prot.maskDiameter.get(), mask, places=6)
        self.assertEqual(coords.getBoxSize(), prot.boxSize.get())
        for tsId, table in read_coordinates(coords).items():
            truth = self.particleTruth(tsId)
            distance = np.linalg.norm(table.xyz[:, None] - truth[None], axis=2)
            # picks are blob-detector maxima refined to sub-voxel: within 2 voxels (20 Å) of a 180 Å particle's centre
            self.assertTrue(np.all(distance.min(axis=1) < 2.0), f'{tsId}: a pick is not on a particle')
            self.assertGreaterEqual(len(set(distance.argmin(axis=1))), 0.9 * len(truth))
            gold = np.array([g['centre'] for g in self.truths[tsId].gold])
            self.assertTrue(np.all(np.linalg.norm(table.xyz[:, None] - gold[None], axis=2) > 3))
        diameters = [getattr(c, DIAMETER_ATTRIBUTE).get() for c in coords.iterItems()]
        self.assertTrue(np.all((np.array(diameters) >= estimate['minv']) & (np.array(diameters) <= estimate['maxv'])))
        table = Table(fileName=prot._getExtraPath('diameters.star'), tableName='diameters')
        self.assertGreater(len(table), coords.getSize())  # the gold beads are listed but not accepted
        self.assertTrue(any('Box size' in line for line in prot.summary()))

    def test_mask_restricts_picks(self):
        coords = self.masked.coordinates
        tables = read_coordinates(coords)
        self.assertEqual(sorted(tables), ['TS_01', 'TS_02'])
        for tsId, table in tables.items():
            self.assertTrue(len(table) > 0 and np.all(table.xyz[:, 0] < MASK_X))
            truth = self.particleTruth(tsId)
            self.assertTrue(np.all(np.linalg.norm(table.xyz[:, None] - truth[None], axis=2).min(axis=1) < 2.0))

    def test_no_estimate_is_a_message_not_a_crash(self):
        prot = self.nothing
        self.assertFalse(hasattr(prot, 'coordinates') or hasattr(prot, 'boxSize'))
        self.assertTrue(any('No size estimate' in line for line in prot.summary()))

    def test_viewer_figure_headless(self):
        import matplotlib
        matplotlib.use('Agg')
        from matplotlib.patches import Circle

        from cryoseg.viewers.viewer_segdiam import CryoSegSegDiamViewer, protocol_figure
        figure = protocol_figure(self.plain)
        histogram, *slices = figure.axes[:3]
        self.assertIn('mask diameter', ' '.join(t.get_text() for t in histogram.get_legend().get_texts()))
        circles = [p for ax in slices for p in ax.patches if isinstance(p, Circle)]
        self.assertGreater(len(circles), 0)
        self.assertTrue(all(r <= 10.5 for r in (c.radius for c in circles)))  # ≤ half the largest ~200 Å diameter
        self.assertIn(ProtCryoSegSegDiamPick, CryoSegSegDiamViewer._targets)
        empty = protocol_figure(self.nothing)
        self.assertIn('No size estimate', empty.axes[0].get_title())
