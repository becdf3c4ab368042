"""Pick points without its window (the workflow-template form): starting points registered through the
same output code as the window's, in a real Scipion project. The window itself: test_gui_picking."""
import os

import numpy as np

from cryoseg import convert
from cryoseg.core.model_workflow import simulate_clicks
from cryoseg.core.picks import load_session
from cryoseg.protocols import ProtCryoSegImportMeshes, ProtCryoSegPickPoints
from cryoseg.tests.base import CryoSegProjectTest


class TestPickPointsWithoutWindow(CryoSegProjectTest):
    TOMOGRAM_COUNT = 1
    PHANTOM = dict(shape_zyx=(96, 160, 160), ice_fraction=0.8, particles_per_class=(2, 1, 1), filament=False)

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        truth = cls.truths['TS_01']
        pointsDir = os.path.join(cls.proj.getPath(), 'points')
        os.makedirs(pointsDir, exist_ok=True)
        with open(os.path.join(pointsDir, 'TS_01.txt'), 'w') as handle:
            for vesicle in truth.vesicles:
                for x, y, z in simulate_clicks(vesicle, truth.voxel_size, count=12, seed=vesicle['id']):
                    handle.write(f"{x:.2f} {y:.2f} {z:.2f} {vesicle['id']}\n")
                handle.write('{:.2f} {:.2f} {:.2f} {} marker\n'.format(*vesicle['centre'], vesicle['id']))
        cls.imported = cls.runProtocol(ProtCryoSegImportMeshes, inputTomograms=cls.tomograms, filesPath=pointsDir,
                                       filesPattern='{TS}.txt').meshes

    def test_starting_points_are_registered_as_meshes(self):
        pick = self.runProtocol(ProtCryoSegPickPoints, inputTomograms=self.tomograms, inputPoints=self.imported,
                                openWindow=False, particleDiameter=200.0)
        tomo = self.imported.getPrecedentsInvolved()['TS_01']
        before = convert.read_tomogram_coordinates(self.imported, tomo)
        after = convert.read_tomogram_coordinates(pick.meshes, pick.meshes.getPrecedentsInvolved()['TS_01'])
        np.testing.assert_allclose(after.xyz, before.xyz, atol=0.006)  # saved to 0.01 voxel
        np.testing.assert_array_equal(after.group_ids, before.group_ids)
        rolesBefore, _ = convert.read_point_annotations(self.imported, tomo)
        rolesAfter, models = convert.read_point_annotations(pick.meshes, pick.meshes.getPrecedentsInvolved()['TS_01'])
        self.assertEqual(rolesAfter, rolesBefore)
        self.assertEqual(set(models), {''})  # no model given: the workflow infers it (auto)
        self.assertEqual(pick.meshes.getNumberOfMeshes(), len(self.truths['TS_01'].vesicles))
        self.assertEqual(pick.meshes.getBoxSize(), 20)
        self.assertFalse(pick.hasAttribute(ProtCryoSegPickPoints.PARTICLES))  # no particles: no empty output
        session = load_session(pick.sessionPath('TS_01'))  # what a window opened later would continue from
        self.assertEqual(session.counts(), (2, 24, 0))
        self.assertIn("  TS_01 'group 1' (auto (from the points)) -> mesh 1: 12 points, marker", pick.summary())

    def test_without_window_starting_points_are_required(self):
        prot = self.newProtocol(ProtCryoSegPickPoints, inputTomograms=self.tomograms, openWindow=False)
        self.assertIn('Without the picking window, give starting points.', prot.validate())

    def test_without_a_display_the_window_fails_cleanly(self):
        prot = self.newProtocol(ProtCryoSegPickPoints, inputTomograms=self.tomograms)
        display = os.environ.pop('DISPLAY', None)  # the run inherits this environment
        try:
            self.proj.launchProtocol(prot, wait=True)
        finally:
            if display is not None:
                os.environ['DISPLAY'] = display
        prot = self.proj.getProtocol(prot.getObjId())
        self.assertTrue(prot.isFailed())
        self.assertIn('the picking window cannot open', prot.getErrorMessage())
        self.assertFalse(prot.hasAttribute(ProtCryoSegPickPoints.MESHES))
        for path in filter(os.path.exists, prot.getLogPaths()):  # a clear message, not a traceback
            with open(path) as handle:
                self.assertNotIn('Traceback', handle.read(), path)
