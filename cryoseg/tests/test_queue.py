"""Cluster runs: a protocol submitted through a queue defined in hosts.conf, the way Scipion drives
SLURM/PBS/SGE. The queue here executes locally (the submit command starts the job script with
``nohup bash`` and prints its process id as the job id), so the whole route is exercised: the submit
template filled with the job's variables, the job script, the job id, and the protocol run by the
job itself. The queue's hosts.conf belongs to this test project only (``.config/hosts.conf`` in the
project folder), so other projects keep theirs."""
import time

from pyworkflow.project import Manager

from cryoseg.core.mrcio import read_volume
from cryoseg.protocols import ProtCryoSegMakeMask
from cryoseg.tests.base import CryoSegProjectTest

QUEUE_HOSTS_CONF = """[localhost]
PARALLEL_COMMAND = mpirun -np %_(JOB_NODES)d %_(COMMAND)s
NAME = LocalQueue
MANDATORY = False
SUBMIT_COMMAND = nohup bash %_(JOB_SCRIPT)s > %_(JOB_LOGS)s.queue.log 2>&1 & echo $!
CANCEL_COMMAND = kill %_(JOB_ID)s
CHECK_COMMAND = ps -o pid= -p %_(JOB_ID)s
SUBMIT_TEMPLATE = #!/bin/bash
    # job %_(JOB_NAME)s, queue %_(JOB_QUEUE)s, %_(JOB_THREADS)d threads, %_(JOB_MEMORY)s MB
    echo "running on the local queue"
    %_(JOB_COMMAND)s
QUEUES = {"local": [["JOB_MEMORY", "2048", "Memory (MB)", "Memory of the job"]]}
QUEUES_DEFAULT = {"JOB_GPUS": "0"}
"""
TIMEOUT_SECONDS = 300


class TestQueueSubmission(CryoSegProjectTest):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        with open(cls.proj.getLocalConfigHosts(), 'w') as handle:
            handle.write(QUEUE_HOSTS_CONF)
        cls.proj = Manager().loadProject(cls.projName)  # reads the project's own hosts.conf

    def waitUntilDone(self, prot):
        start = time.time()
        while time.time() - start < TIMEOUT_SECONDS:
            self.proj._updateProtocol(prot)
            if not prot.isActive():
                return
            time.sleep(0.5)
        self.fail(f'the queued run did not end in {TIMEOUT_SECONDS} s')

    def test_make_mask_submitted_through_the_queue(self):
        prot = self.newProtocol(ProtCryoSegMakeMask, inputTomograms=self.tomograms, numberOfThreads=2)
        prot._useQueue.set(True)
        prot.setQueueParams(['local', {'JOB_MEMORY': '1024'}])
        self.proj.launchProtocol(prot)
        self.assertTrue(prot.useQueueForProtocol())
        self.waitUntilDone(prot)
        self.assertTrue(prot.isFinished(), prot.getErrorMessage())

        jobScript = prot.getSubmitDict()['JOB_SCRIPT']
        with open(jobScript) as handle:
            script = handle.read()
        self.assertIn(f'job {prot.strId()}, queue local, 2 threads, 1024 MB', script)
        self.assertIn('pw_protocol_run.py', script)
        self.assertTrue(prot.getJobIds(), 'the job id printed by the submit command is kept')
        with open(prot.getStdoutLog()) as handle:
            self.assertIn('Executing through the queue system', handle.read())

        masks = {mask.getTsId(): mask.getFileName() for mask in prot.tomoMasks.iterItems()}
        self.assertEqual(sorted(masks), sorted(self.truths))
        for tsId, path in masks.items():
            mask, info = read_volume(path)
            self.assertEqual(info.shape_xyz, tuple(self.truths[tsId].shape_xyz))
            self.assertTrue(0.05 < mask.mean() < 0.95, f'{tsId}: {mask.mean()}')
