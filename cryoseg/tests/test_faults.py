"""Fault injection: every per-tomogram protocol (and the learned detector) killed at step boundaries
and inside steps, then continued, ends with exactly the outputs of an uninterrupted run.

Each protocol runs once uninterrupted (the reference), then once more through a chain of kills: the
run SIGKILLs itself at a named point (``CRYOSEG_TEST_KILL_AT``, a hook of the protocol base class) and
is continued with Scipion's Continue mode, up to the next point. Half of the kills are continued as
the GUI does (the project first reads the killed run's database); the others from the project's older
copy, the worst case: Continue then rolls the run's database back (see the base class docstring).
The chain covers a kill while a tomogram's files are written (left truncated), between the items of
an output and their commit, between a step's work and its finished mark (the issue's close step), at
the start of steps, and a finished run whose database the project never read. At the end the
outputs (sets, item values, files' contents, scalar outputs) and the summary must equal the
reference's. Segdiam pick also meets a full disk (the run fails with a clear message before anything
is registered) and a result file deleted after its step (the run fails naming the outputs it lacks);
Continue after each repair completes it.
"""
import hashlib
import json
import os
import shutil
import signal

import numpy as np
import pytest
from pyworkflow.object import Set
from pyworkflow.protocol import MODE_RESUME

from cryoseg.core.model_workflow import simulate_clicks
from cryoseg.core.mrcio import read_volume, write_volume
from cryoseg.demo import register_coordinates
from cryoseg.protocols import (ProtCryoSegApplyAlignment, ProtCryoSegExtract, ProtCryoSegImportMeshes,
                               ProtCryoSegMakeMask, ProtCryoSegModelWorkflow, ProtCryoSegSegDiamPick)
from cryoseg.protocols.base import KILL_AT_VARIABLE
from cryoseg.tests.base import CryoSegProjectTest

SYNCED, STALE = True, False  # how the project sees the killed run before Continue


def per_tomogram_chain(output):
    """Kill points of a base per-tomogram run of two tomograms with one thread (steps: process,
    register, process, register, close). The project never sees TS_01 registered: the launch after
    the kill at TS_02's start creates the output again without it, and only the close step can
    restore it."""
    return [('processTomogramStep:TS_01:torn', SYNCED),
            (f'{output}:TS_01:filled', STALE),
            ('registerTomogramStep:TS_01:end', STALE),
            ('processTomogramStep:TS_02:start', STALE),
            (f'{output}:TS_02:stored', SYNCED),
            ('closeOutputStep::end', STALE)]


def describe_file(path):
    """Contents of a result file, independent of the run folder (MRC headers carry a date)."""
    if path.endswith('.mrc'):
        data, info = read_volume(path)
        return [hashlib.sha1(np.ascontiguousarray(data).tobytes()).hexdigest(), str(data.dtype),
                list(info.shape_xyz), np.round(info.voxel_size, 4).tolist()]
    with open(path, 'rb') as handle:
        return hashlib.sha1(handle.read()).hexdigest()


def describe(obj, runFolder):
    """Every attribute of an output object, with the files of the run replaced by their contents."""
    values = {}
    for key, value in obj.getObjDict().items():
        if isinstance(value, str) and value.startswith(runFolder) and os.path.isfile(value):
            value = [os.path.relpath(value, runFolder), describe_file(value)]
        values[key] = value
    return values


def snapshot(prot):
    """The outputs of a run (sets as sorted item descriptions) and its summary."""
    runFolder = prot.getWorkingDir()
    outputs = {}
    for name, output in prot.iterOutputAttributes():
        if isinstance(output, Set):
            items = sorted(json.dumps(describe(item, runFolder), sort_keys=True, default=str)
                           for item in output.iterItems())
            outputs[name] = {'size': output.getSize(), 'items': items}
        else:
            outputs[name] = describe(output, runFolder)
    # with several threads the tomograms' summary lines come in the order they were processed
    return {'outputs': outputs, 'summary': sorted(prot.summary())}


class TestKilledRunsContinue(CryoSegProjectTest):
    PHANTOM = dict(shape_zyx=(72, 112, 112), particles_per_class=(4, 3, 2), sphere_vesicle_radii=(150.0,),
                   ellipsoid_vesicle_radii=(), ice_fraction=0.8,
                   proteins_per_vesicle=6, filament=False, gold_beads=0, contamination=False)

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.centres = {ts: np.array([p['centre'] for p in truth.particles]) for ts, truth in cls.truths.items()}
        cls.particles = register_coordinates(cls.proj, cls.tomograms, {ts: (xyz, None) for ts, xyz
                                                                       in cls.centres.items()},
                                             cls.SAMPLING, 16, 'particles')

    # ------------------------------------------------------------------------------------ driver
    def launch(self, prot, killAt=None, synced=True):
        """Launch (or continue) ``prot``, killing it at ``killAt``; wait for its process to end.
        ``synced``: the project then reads the run's database, as the GUI or Stop do; else the project
        keeps its copy from before the launch. Returns the process's exit status."""
        if killAt:
            os.environ[KILL_AT_VARIABLE] = killAt
        try:
            prot.runMode.set(MODE_RESUME)
            self.proj.launchProtocol(prot, wait=False)
            try:
                _, status = os.waitpid(prot.getPid(), 0)
            except ChildProcessError:  # already reaped
                status = None
        finally:
            os.environ.pop(KILL_AT_VARIABLE, None)
        if synced:
            self.proj._updateProtocol(prot)
        return status

    def assertKilled(self, status, point):
        killed = status is not None and (os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
                                         or os.WIFEXITED(status) and os.WEXITSTATUS(status) == 128 + signal.SIGKILL)
        self.assertTrue(killed, f'the run was not killed at {point} (exit status {status})')

    def runUninterrupted(self, protocolClass, **params):
        prot = self.newProtocol(protocolClass, **params)
        self.launch(prot)
        self.assertTrue(prot.isFinished(), prot.getErrorMessage())
        return prot

    def killAndContinue(self, prot, chain):
        """Run ``prot`` through the kill points of ``chain`` (``(point, synced)``), then continue it to
        its end (project in sync)."""
        for point, synced in chain:
            self.assertKilled(self.launch(prot, point, synced), point)
        self.launch(prot)
        self.assertTrue(prot.isFinished(), prot.getErrorMessage())
        return prot

    def assertSameOutputs(self, reference, prot):
        expected, got = snapshot(reference), snapshot(prot)
        self.assertTrue(expected['outputs'], 'the reference run has outputs')
        self.assertEqual(sorted(got['outputs']), sorted(expected['outputs']))
        for name in expected['outputs']:
            self.assertEqual(got['outputs'][name], expected['outputs'][name], name)
        self.assertEqual(got['summary'], expected['summary'])
        leftovers = [name for _, _, names in os.walk(prot._getExtraPath()) for name in names
                     if name.startswith('.tmp_')]
        self.assertFalse(leftovers, 'no temporary file is left behind')

    def checkProtocol(self, protocolClass, chain, **params):
        reference = self.runUninterrupted(protocolClass, **params)
        prot = self.killAndContinue(self.newProtocol(protocolClass, **params), chain)
        self.assertSameOutputs(reference, prot)
        return reference

    # ------------------------------------------------------------------------------------ tests
    def test_make_mask(self):
        self.checkProtocol(ProtCryoSegMakeMask, per_tomogram_chain(ProtCryoSegMakeMask.OUTPUT_NAME),
                           inputTomograms=self.tomograms, numberOfThreads=1)

    def test_make_mask_with_three_threads(self):
        """Parallel steps (the issue's set-up): killed after the close step's work, twice."""
        self.checkProtocol(ProtCryoSegMakeMask, [('closeOutputStep::start', STALE), ('closeOutputStep::end', STALE)],
                           inputTomograms=self.tomograms, numberOfThreads=3)

    def test_extract_then_apply_alignment(self):
        extracted = self.checkProtocol(ProtCryoSegExtract, per_tomogram_chain(ProtCryoSegExtract.OUTPUT_NAME),
                                       inputCoordinates=self.particles, boxSize=16, numberOfThreads=1)
        self.checkProtocol(ProtCryoSegApplyAlignment,
                           per_tomogram_chain(ProtCryoSegApplyAlignment.OUTPUT_SUBTOMOGRAMS),
                           inputSubtomograms=extracted.subtomograms, numberOfThreads=1)

    def test_model_workflow(self):
        folder = os.path.join(self.proj.getPath(), 'clicks')
        os.makedirs(folder, exist_ok=True)
        for tsId, truth in self.truths.items():
            with open(os.path.join(folder, f'{tsId}.txt'), 'w') as handle:
                for vesicle in truth.vesicles:
                    for x, y, z in simulate_clicks(vesicle, truth.voxel_size, count=30, seed=vesicle['id']):
                        handle.write(f'{x:.3f} {y:.3f} {z:.3f} {vesicle["id"]}\n')
        meshes = self.runProtocol(ProtCryoSegImportMeshes, inputTomograms=self.tomograms, filesPath=folder,
                                  filesPattern='{TS}.txt', boxSize=16).meshes
        self.checkProtocol(ProtCryoSegModelWorkflow, per_tomogram_chain(ProtCryoSegModelWorkflow.OUTPUT_NAME),
                           inputMeshes=meshes, modelType=0, cropping=60.0, seed=3, numberOfThreads=1)

    def test_detect_particles(self):
        """The learned detector registers two outputs per tomogram: killed between them too. It runs
        on crops of the phantoms, which keeps the runs short."""
        pytest.importorskip('torch')
        from cryoseg.protocols import ProtCryoSegDetectParticles, ProtCryoSegTrainDetector

        folder = os.path.join(self.proj.getPath(), 'crops')
        for tsId in self.truths:
            volume, info = read_volume(self.tomogramPath(tsId))
            write_volume(os.path.join(folder, f'{tsId}.mrc'), volume[20:52, 32:80, 32:80], info.voxel_size)
        crops = self.importTomograms(folder, self.SAMPLING)
        model = self.runProtocol(ProtCryoSegTrainDetector, inputCoordinates=self.particles, diameter=160.0,
                                 completeAnnotation=True, iterations=60, validateEvery=20, batchSize=16,
                                 channels='4 8 8', numberOfThreads=1).model
        # every candidate blob is a pick (threshold 0): the test is about killed runs, not about scores
        reference = self.checkProtocol(
            ProtCryoSegDetectParticles,
            [('coordinates:TS_01:stored', STALE), ('instanceMasks:TS_02:filled', SYNCED),
             ('closeOutputStep::end', STALE)],
            inputTomograms=crops, inputModel=model, scoreThreshold=0.0, numberOfThreads=1)
        self.assertGreater(reference.coordinates.getSize(), 0)

    def test_segdiam_pick_with_full_disk_and_lost_file(self):
        params = dict(inputTomograms=self.tomograms, numberOfThreads=1)
        reference = self.runUninterrupted(ProtCryoSegSegDiamPick, **params)
        self.assertGreater(reference.coordinates.getSize(), 0)
        prot = self.newProtocol(ProtCryoSegSegDiamPick, **params)

        # a full disk: TS_01's results cannot be written
        self.assertKilled(self.launch(prot, 'processTomogramStep:TS_01:start', STALE), 'start')
        components = prot._componentsPath('TS_01')
        os.symlink('/dev/full', components)
        self.launch(prot)
        self.assertTrue(prot.isFailed(), prot.getStatus())
        self.assertIn('No space left on device', prot.getErrorMessage())
        self.assertIn('continue the run', prot.getErrorMessage())
        self.assertFalse(list(prot.iterOutputAttributes()), 'nothing is registered')
        os.remove(components)

        # kills inside and between steps, then the estimate file is lost: the run fails naming what it lacks
        estimate = prot._estimatePath()
        keep = estimate + '.kept'
        for point, synced in [('processTomogramStep:TS_02:torn', STALE), ('statisticsStep::end', SYNCED),
                              ('coordinates:TS_01:filled', STALE), ('registerTomogramStep:TS_02:end', STALE),
                              ('closeOutputStep::start', STALE)]:
            self.assertKilled(self.launch(prot, point, synced), point)
        shutil.move(estimate, keep)
        self.launch(prot)
        self.assertTrue(prot.isFailed(), prot.getStatus())
        message = prot.getErrorMessage()
        self.assertIn('the run ended without all its outputs', message)
        self.assertIn('coordinates is not registered', message)
        self.assertIn('TS_01, TS_02', message)
        shutil.move(keep, estimate)

        # the case: killed after the close step's work; then a finished run the project never read
        self.assertKilled(self.launch(prot, 'closeOutputStep::end', STALE), 'close')
        self.launch(prot, synced=STALE)
        self.launch(prot)
        self.assertTrue(prot.isFinished(), prot.getErrorMessage())
        self.assertSameOutputs(reference, prot)
        self.assertEqual(prot.boxSize.get(), reference.boxSize.get())
