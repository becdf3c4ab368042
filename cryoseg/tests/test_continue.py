"""Crash and continue: a multi-tomogram run stopped (its processes killed) after its first tomogram
was registered, then continued with Scipion's continue mode, keeps the finished tomogram, completes
the others and registers each tomogram exactly once, with complete files only. The same run's log
shows the progress lines (tomogram i of n, percent of the slabs of each pass)."""
import os
import time

import numpy as np
from pyworkflow.protocol import MODE_RESUME

from cryoseg.core.mrcio import read_volume
from cryoseg.protocols import ProtCryoSegMakeMask
from cryoseg.tests.base import CryoSegProjectTest

POLL_SECONDS = 0.2
TIMEOUT_SECONDS = 300


class TestCrashAndContinue(CryoSegProjectTest):
    TOMOGRAM_COUNT = 4

    def waitForRegisteredMasks(self, prot, count):
        """Poll the project until the running protocol's output holds ``count`` masks."""
        start = time.time()
        while time.time() - start < TIMEOUT_SECONDS:
            self.proj._updateProtocol(prot)
            output = getattr(prot, ProtCryoSegMakeMask.OUTPUT_NAME, None)
            if output is not None and output.getSize() >= count:
                return
            self.assertTrue(prot.isActive(), f'the run ended before it could be stopped: {prot.getStatus()}')
            time.sleep(POLL_SECONDS)
        self.fail('no mask was registered in time')

    def test_stopped_run_continues_without_repeating_or_duplicating_tomograms(self):
        # 'both' (statistics and texture) makes each tomogram take a few seconds
        prot = self.newProtocol(ProtCryoSegMakeMask, inputTomograms=self.tomograms, method=2, numberOfThreads=1)
        self.proj.launchProtocol(prot, wait=False)
        self.waitForRegisteredMasks(prot, 1)
        self.proj.stopProtocol(prot)  # kills the run's process and its children, as the Stop button does
        prot = self.proj.getProtocol(prot.getObjId())
        self.assertTrue(prot.isAborted(), prot.getStatus())
        kept = {mask.getTsId(): (mask.getFileName(), os.path.getmtime(mask.getFileName()))
                for mask in prot.tomoMasks.iterItems()}
        self.assertGreaterEqual(len(kept), 1)
        self.assertLess(len(kept), self.TOMOGRAM_COUNT, 'the run finished before it was stopped')

        prot.runMode.set(MODE_RESUME)
        self.proj.launchProtocol(prot, wait=True)
        prot = self.proj.getProtocol(prot.getObjId())
        self.assertTrue(prot.isFinished(), prot.getErrorMessage())

        masks = [mask.clone() for mask in prot.tomoMasks.iterItems()]
        tsIds = [mask.getTsId() for mask in masks]
        self.assertEqual(sorted(tsIds), sorted(self.truths), 'each tomogram exactly once')
        for tsId, (path, mtime) in kept.items():
            self.assertEqual(os.path.getmtime(path), mtime, f'{tsId} was computed again')
        for mask in masks:  # complete, readable files of the tomogram's size
            data, info = read_volume(mask.getFileName())
            self.assertEqual(info.shape_xyz, tuple(self.truths[mask.getTsId()].shape_xyz))
            self.assertTrue(set(np.unique(data)) <= {0, 1})
            self.assertGreater(data.mean(), 0.01)
        stats = prot.getMaskStats()
        self.assertEqual(sorted(stats), sorted(self.truths))
        leftovers = [name for name in os.listdir(prot._getExtraPath()) if name.startswith('.tmp_')]
        self.assertFalse(leftovers, 'no half-written file is left behind')

        # progress lines in the protocol's log: tomogram i of n, percent of slabs of each pass
        with open(prot.getLogPaths()[0]) as handle:
            log = handle.read()
        for tsId in self.truths:
            self.assertIn(f'{tsId}: tomogram {sorted(self.truths).index(tsId) + 1} of {self.TOMOGRAM_COUNT}', log)
        self.assertIn('tomograms processed in this run: ', log)
        for stage in ('statistics mask: binning by 2', 'statistics mask: density and contrast filters',
                      'texture mask: features, pass 1 of 2', 'texture mask: votes, pass 2 of 2'):
            self.assertRegex(log, rf'{stage} \(slabs\): \d+ of \d+ \(100 %\)')
