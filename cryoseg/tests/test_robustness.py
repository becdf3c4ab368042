"""Robustness catalogue, protocol part: bad inputs given to cryoseg protocols in a real headless
Scipion project (see test_robustness_cli.py for the command line).

Mistakes the form can see are answered by ``prot.validate()`` with a clear message (no "Protocol
validation failed" wrapper around a traceback). Mistakes only the data reveal fail the run (or the
tomogram) with a clear message: checked are the run's error message or summary, that no traceback
reached the logs, that no partial output was registered and that the input files are unchanged.
Bad tomogram files, which scipion-em-tomo's import refuses to read, replace the files of imported
tomograms.
"""
import os

import numpy as np
from cryoseg.demo import register_coordinates
from cryoseg.protocols import (ProtCryoSegExtract, ProtCryoSegImportMeshes, ProtCryoSegMakeMask,
                               ProtCryoSegModelWorkflow, ProtCryoSegPickingConsensus, ProtCryoSegRemoveDuplicates,
                               ProtCryoSegSegDiamPick)
from cryoseg.tests import badinputs
from cryoseg.tests.base import CryoSegProjectTest

BAD_TSIDS = {f'TS_{name}': message for name, (_, message) in badinputs.BAD_VOLUMES.items()}


def corrupt_tomograms(tomograms, writers):
    """Overwrite the files of imported tomograms, as a disk or transfer failure would after the
    import: ``writers`` maps a tsId to a function writing a bad file at a path. Returns the paths."""
    paths = {}
    for tomo in tomograms.iterItems():
        path = os.path.realpath(tomo.getFileName())
        os.remove(path)
        writers[tomo.getTsId()](path)
        paths[tomo.getTsId()] = path
    return paths


def add_cases(test_class, cases, check):
    """One test method per case (parametrised for pytest and pyworkflow's runner alike)."""
    for name, *case in cases:
        def test(self, case=case):
            check(self, *case)
        setattr(test_class, f'test_{name}', test)


def check_validation(test, protocol_class, params, expected):
    prot = test.newProtocol(protocol_class, **params(test))
    errors = prot.validate()
    test.assertTrue(any(expected.lower() in error.lower() for error in errors),
                    f'{expected!r} not in the validation errors {errors}')
    test.assertFalse(any('validation failed' in error for error in errors), errors)


class RobustnessTest(CryoSegProjectTest):
    def launchUnchecked(self, protocol_class, **params):
        """Launch a protocol that may fail; returns it reloaded from the project."""
        prot = self.newProtocol(protocol_class, **params)
        self.proj.launchProtocol(prot, wait=True)
        return self.proj.getProtocol(prot.getObjId())

    def assertNoTraceback(self, prot):
        for path in filter(os.path.exists, prot.getLogPaths()):
            with open(path) as handle:
                self.assertNotIn('Traceback', handle.read(), path)

    def assertCleanFailure(self, prot, expected, outputs):
        self.assertTrue(prot.isFailed(), prot.getStatus())
        for text in expected:
            self.assertIn(text.lower(), prot.getErrorMessage().lower())
        for name in outputs:
            self.assertIsNone(getattr(prot, name, None), f'{name} registered despite the failure')
        self.assertNoTraceback(prot)


class TestRobustnessTomogramProtocols(RobustnessTest):
    """Make mask, segdiam pick, extract, consensus and duplicate removal."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.zeroSampling = cls.importTomograms(cls.dataDir, 0.0)
        cls.tomograms5A = cls.importTomograms(cls.dataDir, 5.0)
        cls.badDir = os.path.join(cls.proj.getPath(), 'bad_tomograms')
        for name in badinputs.BAD_VOLUMES:
            badinputs.write_mrc(os.path.join(cls.badDir, f'TS_{name}.mrc'), badinputs.noise_volume())
        cls.badTomograms = cls.importTomograms(cls.badDir, cls.SAMPLING)
        badFiles = corrupt_tomograms(cls.badTomograms, {f'TS_{name}': writer for name, (writer, _)
                                                        in badinputs.BAD_VOLUMES.items()})
        cls.badChecksums = badinputs.checksums(badFiles.values())
        masksDir = os.path.join(cls.proj.getPath(), 'masks')
        for tsId in cls.truths:
            badinputs.write_mrc(os.path.join(masksDir, f'{tsId}.mrc'),
                                np.ones(cls.truths[tsId].shape_xyz[::-1], np.float32), cls.SAMPLING)
        cls.masks10A = cls.importTomograms(masksDir, cls.SAMPLING)
        # true particle centres plus two points outside each tomogram
        cls.outside = np.array([[-40.0, 10.0, 10.0], [10.0, 10.0, 500.0]])
        rows = {ts: (np.vstack([[p['centre'] for p in truth.particles], cls.outside]), None)
                for ts, truth in cls.truths.items()}
        cls.particles = register_coordinates(cls.proj, cls.tomograms, rows, cls.SAMPLING, 16, 'particles')
        cls.emptyCoordinates = register_coordinates(cls.proj, cls.tomograms, {}, cls.SAMPLING, 16, 'empty')

    # ------------------------------------------------------------------------------ run-time failures
    def test_make_mask_on_unusable_tomogram_files(self):
        prot = self.launchUnchecked(ProtCryoSegMakeMask, inputTomograms=self.badTomograms, numberOfThreads=1)
        self.assertCleanFailure(prot, ['every tomogram failed', *BAD_TSIDS], [ProtCryoSegMakeMask.OUTPUT_NAME])
        failures = prot.getFailures()
        self.assertEqual(set(failures), set(BAD_TSIDS))
        for tsId, message in BAD_TSIDS.items():
            self.assertIn(message.lower(), failures[tsId].lower(), tsId)
            self.assertIn(f'Failed {tsId}', '\n'.join(prot.summary()))
        self.assertEqual(badinputs.checksums(self.badChecksums), self.badChecksums)
        self.assertFalse([f for f in os.listdir(prot._getExtraPath()) if f.endswith('.mrc')],
                         'no mask file may be left behind')

    def test_segdiam_pick_on_unusable_tomogram_files(self):
        prot = self.launchUnchecked(ProtCryoSegSegDiamPick, inputTomograms=self.badTomograms, numberOfThreads=1)
        self.assertCleanFailure(prot, ['every tomogram failed'], [ProtCryoSegSegDiamPick.OUTPUT_NAME, 'boxSize'])
        failures = prot.getFailures()
        for tsId, message in BAD_TSIDS.items():
            self.assertIn(message.lower(), failures[tsId].lower(), tsId)
        self.assertEqual(badinputs.checksums(self.badChecksums), self.badChecksums)

    def test_segdiam_pick_finding_zero_particles_says_why(self):
        prot = self.launchUnchecked(ProtCryoSegSegDiamPick, inputTomograms=self.tomograms, minDiameter=2000.0,
                                    maxDiameter=3000.0, numberOfThreads=1)
        self.assertTrue(prot.isFinished(), prot.getErrorMessage())
        self.assertIsNone(getattr(prot, ProtCryoSegSegDiamPick.OUTPUT_NAME, None))
        self.assertIn('No size estimate', '\n'.join(prot.summary()))
        self.assertNoTraceback(prot)

    def test_extract_skips_and_lists_points_outside_the_tomogram(self):
        before = badinputs.checksums([self.tomogramPath(ts) for ts in self.truths])
        prot = self.launchUnchecked(ProtCryoSegExtract, inputCoordinates=self.particles, boxSize=16,
                                    numberOfThreads=1)
        self.assertTrue(prot.isFinished(), prot.getErrorMessage())
        skipped = prot.getSkipped()
        for tsId, truth in self.truths.items():
            self.assertGreaterEqual(len(skipped[tsId]), len(self.outside))
        inside = sum(len(t.particles) + len(self.outside) for t in self.truths.values()) - \
            sum(len(ids) for ids in skipped.values())
        self.assertEqual(prot.subtomograms.getSize(), inside)
        self.assertIn('box leaves the tomogram', '\n'.join(prot.summary()))
        self.assertEqual(badinputs.checksums(before), before)


VALIDATION_CASES = [
    ('mask_percentile_0', ProtCryoSegMakeMask, lambda t: dict(inputTomograms=t.tomograms, percentile=0.0),
     'Density percentile'),
    ('mask_negative_side', ProtCryoSegMakeMask, lambda t: dict(inputTomograms=t.tomograms, side=-80.0),
     'filter side must be a positive length'),
    ('mask_negative_threshold', ProtCryoSegMakeMask,
     lambda t: dict(inputTomograms=t.tomograms, stdMode=0, threshold=-1.0),
     'Contrast threshold'),
    ('mask_z_crop_above_half', ProtCryoSegMakeMask, lambda t: dict(inputTomograms=t.tomograms, zCrop=0.6),
     'Z crop'),
    ('mask_zero_sampling', ProtCryoSegMakeMask, lambda t: dict(inputTomograms=t.zeroSampling),
     'pixel size of 0.0'),
    ('segdiam_inverted_diameter_range', ProtCryoSegSegDiamPick,
     lambda t: dict(inputTomograms=t.tomograms, minDiameter=300.0, maxDiameter=100.0), 'min < max'),
    ('segdiam_zero_working_size', ProtCryoSegSegDiamPick, lambda t: dict(inputTomograms=t.tomograms, workingSize=0.0),
     'Working pixel size'),
    ('segdiam_zero_foreground', ProtCryoSegSegDiamPick,
     lambda t: dict(inputTomograms=t.tomograms, foregroundFraction=0.0), 'Foreground fraction'),
    ('segdiam_mismatched_samplings', ProtCryoSegSegDiamPick,
     lambda t: dict(inputTomograms=t.tomograms5A, inputMasks=t.masks10A), 'does not match its tomogram'),
    ('segdiam_zero_sampling', ProtCryoSegSegDiamPick, lambda t: dict(inputTomograms=t.zeroSampling),
     'pixel size of 0.0'),
    ('extract_box_larger_than_tomogram', ProtCryoSegExtract,
     lambda t: dict(inputCoordinates=t.particles, boxSize=400), 'larger than tomogram'),
    ('extract_box_of_1', ProtCryoSegExtract, lambda t: dict(inputCoordinates=t.particles, boxSize=1), 'Box size'),
    ('extract_upsampling', ProtCryoSegExtract,
     lambda t: dict(inputCoordinates=t.particles, boxSize=16, downFactor=0.5), 'Downsampling factor'),
    ('extract_empty_coordinates', ProtCryoSegExtract, lambda t: dict(inputCoordinates=t.emptyCoordinates, boxSize=16),
     'is empty'),
    ('extract_tomograms_without_coordinates', ProtCryoSegExtract,
     lambda t: dict(inputCoordinates=t.particles, boxSize=16, tomoSource=1, inputTomograms=t.badTomograms),
     'None of the tomograms to extract from'),
    ('extract_sphere_larger_than_box', ProtCryoSegExtract,
     lambda t: dict(inputCoordinates=t.particles, boxSize=16, doNormalize=True, normMethod=1, sphereRadius=1000.0),
     'sphere radius'),
    ('consensus_single_input', ProtCryoSegPickingConsensus, lambda t: dict(inputCoordinates=[t.particles]),
     'at least two'),
    ('consensus_votes_above_inputs', ProtCryoSegPickingConsensus,
     lambda t: dict(inputCoordinates=[t.particles, t.particles], consensus=5), 'Consensus must be'),
    ('consensus_negative_radius', ProtCryoSegPickingConsensus,
     lambda t: dict(inputCoordinates=[t.particles, t.particles], consensusRadius=-10.0), 'Matching radius'),
    ('consensus_angle_above_180', ProtCryoSegPickingConsensus,
     lambda t: dict(inputCoordinates=[t.particles, t.particles], angularGate=200.0), 'maximum angle'),
    ('remove_duplicates_zero_radius', ProtCryoSegRemoveDuplicates,
     lambda t: dict(inputCoordinates=t.particles, radius=0.0), 'radius'),
]
add_cases(TestRobustnessTomogramProtocols, VALIDATION_CASES, check_validation)


class TestRobustnessUserPoints(RobustnessTest):
    """Import user points and the directional model workflow."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.pointsDir = os.path.join(cls.proj.getPath(), 'points')
        os.makedirs(cls.pointsDir, exist_ok=True)
        cls.emptyPoints = register_coordinates(cls.proj, cls.tomograms, {}, cls.SAMPLING, 16, 'no points')

    def writePoints(self, name, rows):
        folder = os.path.join(self.pointsDir, name)
        os.makedirs(folder, exist_ok=True)
        for tsId, lines in rows.items():
            with open(os.path.join(folder, f'{tsId}.txt'), 'w') as handle:
                handle.writelines(f'{x} {y} {z} {group}\n' for x, y, z, group in lines)
        return folder

    def test_import_refuses_points_outside_the_tomogram(self):
        # Å values imported as pixels: the usual units mistake
        folder = self.writePoints('outside', {'TS_01': [(1200.0, 800.0, 600.0, 1), (1300.0, 900.0, 600.0, 1)],
                                              'TS_02': [(50.0, 50.0, 30.0, 1)]})
        before = badinputs.checksums(os.path.join(folder, f) for f in os.listdir(folder))
        prot = self.launchUnchecked(ProtCryoSegImportMeshes, inputTomograms=self.tomograms, filesPath=folder,
                                    filesPattern='{TS}.txt')
        self.assertCleanFailure(prot, ['TS_01', 'lie outside the tomogram', 'units'],
                                [ProtCryoSegImportMeshes.OUTPUT_NAME])
        self.assertEqual(badinputs.checksums(before), before)

    def test_geometry_with_too_few_points_is_reported(self):
        folder = self.writePoints('few', {'TS_01': [(60.0, 60.0, 30.0, 1), (70.0, 60.0, 30.0, 1)]})
        meshes = self.runProtocol(ProtCryoSegImportMeshes, inputTomograms=self.tomograms, filesPath=folder,
                                  filesPattern='{TS}.txt').meshes
        prot = self.launchUnchecked(ProtCryoSegModelWorkflow, inputMeshes=meshes, modelType=1, numberOfThreads=1)
        self.assertTrue(prot.isFinished(), prot.getErrorMessage())
        self.assertIsNone(getattr(prot, ProtCryoSegModelWorkflow.OUTPUT_NAME, None))
        self.assertEqual(prot.failedMeshes.getSize(), 2)
        summary = '\n'.join(prot.summary())
        self.assertIn('0 of 1 geometries fitted', summary)
        self.assertIn('needs at least', summary)
        self.assertNoTraceback(prot)


USER_POINT_CASES = [
    ('import_missing_folder', ProtCryoSegImportMeshes,
     lambda t: dict(inputTomograms=t.tomograms, filesPath='/no/such/folder'), 'does not exist'),
    ('import_two_placeholders', ProtCryoSegImportMeshes,
     lambda t: dict(inputTomograms=t.tomograms, filesPath=t.dataDir, filesPattern='{TS}{TS}.mrc'), 'only once'),
    ('import_no_matching_file', ProtCryoSegImportMeshes,
     lambda t: dict(inputTomograms=t.tomograms, filesPath=t.dataDir, filesPattern='{TS}.csv'), 'No file in'),
    ('import_several_tomograms_without_placeholder', ProtCryoSegImportMeshes,
     lambda t: dict(inputTomograms=t.tomograms, filesPath=t.dataDir, filesPattern='TS_01.mrc'), 'no {TS}'),
    ('model_workflow_empty_input', ProtCryoSegModelWorkflow, lambda t: dict(inputMeshes=t.emptyPoints), 'no points'),
    ('model_workflow_zero_spacing', ProtCryoSegModelWorkflow, lambda t: dict(inputMeshes=t.emptyPoints, cropping=0.0),
     'Spacing'),
    ('model_workflow_rings_without_subunits', ProtCryoSegModelWorkflow,
     lambda t: dict(inputMeshes=t.emptyPoints, modelType=6, subunitsPerRing=0), 'Subunits per ring'),
]
add_cases(TestRobustnessUserPoints, USER_POINT_CASES, check_validation)


def test_catalogue_size():
    """Protocol cases: every validation case, each bad file per run-time run, and the other runs."""
    assert len(VALIDATION_CASES) + len(USER_POINT_CASES) + 2 * len(BAD_TSIDS) + 4 >= 30
