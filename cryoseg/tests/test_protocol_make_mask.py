"""The make-mask protocol in a real headless Scipion project, on phantoms with known particles and ice."""
import os

import numpy as np
from pyworkflow.protocol import STATUS_FAILED
from tomo.protocols import ProtImportCoordinates3D

from cryoseg.core.errors import CryoSegInputError
from cryoseg.core.mrcio import read_volume, write_volume
from cryoseg.protocols import ProtCryoSegMakeMask
from cryoseg.protocols.protocol_make_mask import BOTH
from cryoseg.tests.base import CryoSegProjectTest
from cryoseg.tests.realdata import TOMO9_ANGPIX, write_tomo9_mrc
from cryoseg.viewers.viewer_make_mask import fraction_table, mask_figure
from cryoseg.wizards import makeMaskPreviewFigure


class TestMakeMask(CryoSegProjectTest):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        folder = os.path.join(cls.proj.getPath(), 'particle_picks')
        os.makedirs(folder, exist_ok=True)
        for ts_id, truth in cls.truths.items():
            np.savetxt(os.path.join(folder, f'{ts_id}.txt'), [p['centre'] for p in truth.particles])
        cls.coordinates = cls.runProtocol(ProtImportCoordinates3D, filesPath=folder, filesPattern='*.txt',
                                          importTomograms=cls.tomograms, boxSize=20).outputCoordinates
        # every setting at its default: the phantoms carry gold beads, contamination and vesicles
        cls.statistics = cls.runProtocol(ProtCryoSegMakeMask, objLabel='statistics',
                                         inputTomograms=cls.tomograms, inputCoordinates=cls.coordinates)

    def test_statistics_masks_keep_the_particles_and_drop_the_empty_margins(self):
        masks = self.statistics.tomoMasks
        tomograms = {tomo.getTsId(): tomo.clone() for tomo in self.tomograms}
        self.assertSetSize(masks, 2)
        self.assertEqual(masks.getSamplingRate(), self.SAMPLING)
        stats = self.statistics.getMaskStats()
        for mask in masks:
            ts_id, tomo, truth = mask.getTsId(), tomograms[mask.getTsId()], self.truths[mask.getTsId()]
            self.assertEqual(mask.getSamplingRate(), self.SAMPLING)
            self.assertEqual(mask.getVolName(), tomo.getFileName())
            self.assertEqual(mask.getDim(), tomo.getDim())
            self.assertEqual(mask.getShiftsFromOrigin(), tomo.getShiftsFromOrigin())
            data, info = read_volume(mask.getFileName(), dtype=None)
            self.assertEqual(data.dtype.itemsize, 1)
            self.assertEqual(set(np.unique(data)), {0, 1})
            self.assertEqual(info.voxel_size, (self.SAMPLING,) * 3)
            self.assertAlmostEqual(stats[ts_id]['fraction'], data.mean())
            # every particle inside: counted by the protocol and checked here against the truth
            self.assertEqual(stats[ts_id]['total'], len(truth.particles))
            self.assertGreaterEqual(stats[ts_id]['inside'], 0.95 * len(truth.particles))
            for particle in truth.particles:
                x, y, z = np.round(particle['centre']).astype(int)
                self.assertEqual(data[z, y, x], 1, f"{ts_id} particle {particle['id']}")
            low, high = truth.ice_z
            margins = np.concatenate([data[:low].ravel(), data[high:].ravel()])
            self.assertLess(margins.mean(), 0.05)
            self.assertGreater(data[low:high].mean(), 0.3)
        summary = '\n'.join(self.statistics.summary())
        self.assertIn('TS_01: mask keeps', summary)
        self.assertIn(f"{len(self.truths['TS_01'].particles)} of {len(self.truths['TS_01'].particles)} "
                      'coordinates inside', summary)
        self.assertIn("IsoNet's statistics mask", self.statistics.methods()[0])

    def test_defaults_on_the_real_tomogram(self):
        """EMPIAR-11658 tomogram 9 (53 annotated ribosomes, specimen in about half of z) with every
        setting at its default: all 53 inside at 21 % of the volume (before: 81 % at 16 % with the CLI)."""
        folder = os.path.join(self.proj.getPath(), 'real')
        tomogram = write_tomo9_mrc(os.path.join(folder, 'tomo9.mrc'))
        np.savetxt(os.path.join(folder, 'tomo9.txt'), tomogram.particles_zyx[:, ::-1])
        tomograms = self.importTomograms(folder, TOMO9_ANGPIX)
        coordinates = self.runProtocol(ProtImportCoordinates3D, filesPath=folder, filesPattern='*.txt',
                                       importTomograms=tomograms, boxSize=10).outputCoordinates
        masked = self.runProtocol(ProtCryoSegMakeMask, objLabel='real tomogram', inputTomograms=tomograms,
                                  inputCoordinates=coordinates)
        stats = masked.getMaskStats()['tomo9']
        self.assertEqual(stats['total'], len(tomogram.particles_zyx))
        self.assertGreaterEqual(stats['inside'], 0.98 * stats['total'])
        self.assertLessEqual(stats['fraction'], 0.55)

    def test_intersection_with_the_texture_mask_and_clean_up(self):
        both = self.runProtocol(ProtCryoSegMakeMask, objLabel='both, cleaned', inputTomograms=self.tomograms,
                                method=BOTH, grow=20.0)
        statistics = {mask.getTsId(): read_volume(mask.getFileName(), dtype=None)[0]
                      for mask in self.statistics.tomoMasks}
        self.assertSetSize(both.tomoMasks, 2)
        for mask in both.tomoMasks:
            data = read_volume(mask.getFileName(), dtype=None)[0]
            self.assertEqual(data.shape, statistics[mask.getTsId()].shape)
            self.assertTrue(0 < data.mean() < 1)
        self.assertFalse(both.getFailures())

    def test_form_checks_and_bad_tomograms(self):
        tiny_side = self.newProtocol(ProtCryoSegMakeMask, inputTomograms=self.tomograms, side=5.0)
        self.assertTrue(any('less than one binned voxel' in error for error in tiny_side.validate()))
        for robust, estimate in ((True, 'robust'), (False, 'plain')):
            form = self.newProtocol(ProtCryoSegMakeMask, inputTomograms=self.tomograms, robustStd=robust)
            self.assertEqual(form.maskSettings(self.SAMPLING)['statistics']['std_estimate'], estimate)
        for choice, vote in enumerate(('variance', 'majority')):
            form = self.newProtocol(ProtCryoSegMakeMask, inputTomograms=self.tomograms, method=BOTH,
                                    textureVote=choice)
            self.assertEqual(form.maskSettings(self.SAMPLING)['texture']['vote'], vote)

        folder = os.path.join(self.proj.getPath(), 'bad_tomograms')
        volume = np.random.default_rng(0).standard_normal((32, 40, 40)).astype(np.float32)
        volume[5, 6, 7] = np.nan
        write_volume(os.path.join(folder, 'BAD_NAN.mrc'), volume, self.SAMPLING)
        write_volume(os.path.join(folder, 'BAD_FLAT.mrc'), np.ones((32, 40, 40), np.float32), self.SAMPLING)
        bad = self.newProtocol(ProtCryoSegMakeMask, objLabel='bad input',
                               inputTomograms=self.importTomograms(folder, self.SAMPLING))
        self.proj.launchProtocol(bad, wait=True)
        self.assertEqual(bad.getStatus(), STATUS_FAILED)
        failures = bad.getFailures()
        self.assertIn('NaN or infinite', failures['BAD_NAN'])
        self.assertIn('constant', failures['BAD_FLAT'])
        self.assertIsNone(getattr(bad, ProtCryoSegMakeMask.OUTPUT_NAME, None))
        self.assertIn('Failed BAD_FLAT', '\n'.join(bad.summary()))

    def test_viewer_and_wizard_figures(self):
        stats = self.statistics.getMaskStats()
        particles = len(self.truths['TS_01'].particles)
        rows = fraction_table(self.statistics)
        self.assertEqual(rows[0], ('TS_01', f"{100 * stats['TS_01']['fraction']:.2f}", f'{particles} / {particles}', ''))
        figure = mask_figure(self.statistics)
        slices = [ax for ax in figure.axes if ax.images]
        self.assertEqual(len(slices), 6)  # xy, xz, yz of two tomograms
        self.assertTrue(all(ax.collections for ax in slices))  # each with the mask outline
        table = next(ax for ax in figure.axes if ax.tables).tables[0]
        self.assertEqual(table[1, 0].get_text().get_text(), 'TS_01')

        # the wizard previews the form's current values on the first tomogram: the protocol's result
        form = self.newProtocol(ProtCryoSegMakeMask, inputTomograms=self.tomograms, inputCoordinates=None)
        preview = makeMaskPreviewFigure(form)
        self.assertIn(f"TS_01: {100 * stats['TS_01']['fraction']:.1f} % kept", preview.axes[0].get_title())
        with self.assertRaisesRegex(CryoSegInputError, 'input tomograms'):
            makeMaskPreviewFigure(self.newProtocol(ProtCryoSegMakeMask))
