"""Import user points and the directional model workflow in a real headless Scipion project: clicks on
the phantom vesicles (known centres, radii, axes) → oriented cropping points."""
import os

import numpy as np

from cryoseg import convert
from cryoseg.core.model_workflow import simulate_clicks, vesicle_normals
from cryoseg.protocols import ProtCryoSegImportMeshes, ProtCryoSegModelWorkflow
from cryoseg.tests.base import CryoSegProjectTest

SPACING = 60.0  # Å


class TestModelWorkflowProtocol(CryoSegProjectTest):
    PHANTOM = dict(particles_per_class=(2, 2, 1), filament=False, gold_beads=0, contamination=False)

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.pointsDir = os.path.join(cls.proj.getPath(), 'clicks')
        os.makedirs(cls.pointsDir, exist_ok=True)
        cls.clicks = {}
        for tsId, truth in cls.truths.items():
            lines = []
            for vesicle in truth.vesicles:
                points = simulate_clicks(vesicle, truth.voxel_size, count=40, seed=vesicle['id'])
                cls.clicks[(tsId, vesicle['id'])] = points
                lines += [f'{x:.3f} {y:.3f} {z:.3f} {vesicle["id"]}' for x, y, z in points]
            centre = truth.vesicles[0]['centre']
            lines.append(f'{centre[0]} {centre[1]} {centre[2]} {truth.vesicles[0]["id"]} marker')
            if tsId == 'TS_01':  # a single stray click defines nothing: this group must fail alone
                lines += ['10 10 20 9']
            # 1-based coordinates, as IMOD or MATLAB would write them
            with open(os.path.join(cls.pointsDir, f'{tsId}_points.txt'), 'w') as handle:
                handle.write('# x y z group [role], first voxel is 1\n')
                for line in lines:
                    x, y, z, *rest = line.split()
                    handle.write(' '.join([f'{float(v) + 1:.3f}' for v in (x, y, z)] + rest) + '\n')
        cls.importProt = cls.runProtocol(ProtCryoSegImportMeshes, inputTomograms=cls.tomograms,
                                         filesPath=cls.pointsDir, filesPattern='{TS}_points.txt', origin=1,
                                         boxSize=24)
        cls.workflow = cls.runProtocol(ProtCryoSegModelWorkflow, inputMeshes=cls.importProt.meshes,
                                       modelType=0, cropping=SPACING, inPlane=1, seed=3, numberOfThreads=2)

    def test_import_gives_unique_stable_groups_and_exact_positions(self):
        meshes = self.importProt.meshes
        self.assertEqual(meshes.getBoxSize(), 24)
        self.assertEqual(meshes.getSamplingRate(), self.SAMPLING)
        expected, groupId = {}, 0
        for tsId in sorted(self.truths):  # ids: by tsId, then by numeric label
            labels = [v['id'] for v in self.truths[tsId].vesicles] + ([9] if tsId == 'TS_01' else [])
            for label in sorted(labels):
                groupId += 1
                expected[(tsId, label)] = groupId
        self.assertEqual(meshes.getNumberOfMeshes(), groupId)
        for tsId, tomo in meshes.getPrecedentsInvolved().items():
            table = convert.read_tomogram_coordinates(meshes, tomo)
            roles, _ = convert.read_point_annotations(meshes, tomo)
            self.assertEqual(roles.count('marker'), 1)
            for vesicle in self.truths[tsId].vesicles:
                inGroup = (table.group_ids == expected[(tsId, vesicle['id'])]) & (np.array(roles) == 'point')
                np.testing.assert_allclose(table.xyz[inGroup], self.clicks[(tsId, vesicle['id'])], atol=1e-3)
        ids = [gid for (ts, _), gid in expected.items()]
        self.assertEqual(len(set(ids)), len(ids))

    def test_cropping_points_on_the_vesicles_oriented_outward(self):
        coords = self.workflow.coordinates
        self.assertEqual(coords.getBoxSize(), 24)
        report = {(row['tsId'], row['group']): row for row in self.workflow.getReport()}
        tables = convert.read_coordinates(coords)
        self.assertEqual(sorted(tables), sorted(self.truths))
        meshes = self.importProt.meshes
        for tsId, table in tables.items():
            truth = self.truths[tsId]
            inputIds = convert.read_tomogram_coordinates(meshes, meshes.getPrecedentsInvolved()[tsId]).group_ids
            self.assertTrue(set(table.group_ids) <= set(inputIds))
            for groupId in np.unique(table.group_ids):
                inGroup = table.group_ids == groupId
                positions = table.xyz[inGroup]
                centres = [np.linalg.norm(np.asarray(v['centre']) - positions.mean(axis=0)) for v in truth.vesicles]
                vesicle = truth.vesicles[int(np.argmin(centres))]
                normals, distance = vesicle_normals(vesicle, truth.voxel_size, positions)
                self.assertLess(np.abs(distance).max(), 1.5, f'{tsId} group {groupId}: off the membrane')
                angles = np.degrees(np.arccos(np.clip(np.sum(normals * table.matrices[inGroup, 2, :3], 1), -1, 1)))
                # 40 clicks on central slices: the poles are extrapolated, hence the looser maximum
                self.assertLess(angles.max(), 8.0, f'{tsId} group {groupId}: normals')
                self.assertLess(np.median(angles), 2.0)
                row = report[(tsId, int(groupId))]
                self.assertEqual(row['model'], vesicle['kind'])  # auto: sphere or ellipsoid from the points
                np.testing.assert_allclose(row['radii'], sorted(np.asarray(vesicle['radii']) / truth.voxel_size,
                                                                reverse=True), rtol=0.03)
                self.assertEqual(row['status'], 'ok')
                # refined against the density by default: most profiles found the membrane
                self.assertTrue(row['refined'])
                self.assertLess(row['outliers'], row['profiles'] / 3)
                np.testing.assert_allclose(table.scores[inGroup], row['rms'], rtol=1e-3)
                self.assertEqual(row['crop_points'], inGroup.sum())
            # the Scipion round trip of positions and matrices is exact
            saved = np.load(self.workflow._getExtraPath(f'{tsId}_cropping.npz'))
            order = np.lexsort(saved['positions'].T)
            back = np.lexsort(table.xyz.T)
            np.testing.assert_allclose(table.xyz[back], saved['positions'][order], atol=1e-9)
            np.testing.assert_array_equal(table.matrices[back], saved['matrices'][order])

    def test_underdetermined_group_fails_alone(self):
        failed = [row for row in self.workflow.getReport() if row['status'] == 'failed']
        self.assertEqual(len(failed), 1)
        self.assertEqual(failed[0]['tsId'], 'TS_01')
        self.assertIn('at least 2 distinct path points', failed[0]['reason'])
        failedMeshes = self.workflow.failedMeshes
        self.assertEqual(failedMeshes.getSize(), 1)
        self.assertEqual({c.getGroupId() for c in failedMeshes.iterItems()}, {failed[0]['group']})
        summary = '\n'.join(self.workflow.summary())
        self.assertIn('FAILED', summary)
        self.assertIn('profiles without a clear membrane kept on the fit', summary)
        self.assertIn(f"{sum(r['status'] == 'ok' for r in self.workflow.getReport())} of", summary)

    def test_viewer_figure_headless(self):
        from cryoseg.viewers.viewer_model_workflow import CryoSegModelWorkflowViewer, protocol_figure

        self.assertIn(ProtCryoSegModelWorkflow, CryoSegModelWorkflowViewer._targets)
        fig = protocol_figure(self.workflow)
        # slice with the fitted and refined surfaces, 3-D view, histogram of the shifts
        self.assertEqual(len(fig.axes), 3 * len(self.truths))
        labels = [text.get_text() for ax in fig.axes[::3] for text in ax.get_legend().get_texts()]
        self.assertIn('refined surface', labels)
        self.assertIn('fitted model', labels)
        self.assertTrue(any('median' in text.get_text() for text in fig.axes[2].get_legend().get_texts()))
        path = self.workflow._getExtraPath('viewer.png')
        fig.savefig(path)
        self.assertGreater(os.path.getsize(path), 10000)

    def test_box_size_wizard_proposes_the_input_box(self):
        from cryoseg.wizards import CryoSegModelWorkflowBoxSizeWizard
        form = self.newProtocol(ProtCryoSegModelWorkflow, inputMeshes=self.importProt.meshes)
        self.assertEqual(CryoSegModelWorkflowBoxSizeWizard.boxSize(form), 24)
        self.assertIsNone(CryoSegModelWorkflowBoxSizeWizard.boxSize(self.newProtocol(ProtCryoSegModelWorkflow)))
