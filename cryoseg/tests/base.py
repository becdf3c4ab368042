"""Base for protocol tests: real headless Scipion projects on generated phantom tomograms.

A test class derives from :class:`CryoSegProjectTest`; ``setUpClass`` creates its project with
pyworkflow's ``setupTestProject``, writes phantom tomograms (with ground truth) into it and imports
them with scipion-em-tomo's real import protocol. Protocols are launched the way Scipion does, in a
subprocess, through ``BaseTest.launchProtocol``.
"""
import os

from pyworkflow.tests import BaseTest, setupTestProject
from tomo.protocols import ProtImportTomograms

from ..core.phantom import write_sample_data


class CryoSegProjectTest(BaseTest):
    SAMPLING = 10.0  # Å per voxel of the phantoms
    TOMOGRAM_COUNT = 2
    PHANTOM = {}  # overrides of the 'small' phantom configuration

    @classmethod
    def setUpClass(cls):
        setupTestProject(cls)
        cls.dataDir = os.path.join(cls.proj.getPath(), 'phantoms')
        cls.truths = write_sample_data(cls.dataDir, count=cls.TOMOGRAM_COUNT, seed=1,
                                       voxel_size=cls.SAMPLING, **cls.PHANTOM)
        cls.tomograms = cls.importTomograms(cls.dataDir, cls.SAMPLING)

    @classmethod
    def importTomograms(cls, folder, sampling, pattern='{TS}.mrc'):
        prot = cls.newProtocol(ProtImportTomograms, filesPath=folder, filesPattern=pattern,
                               samplingRate=sampling)
        cls.launchProtocol(prot)
        return prot.Tomograms

    @classmethod
    def runProtocol(cls, protocol_class, **params):
        """Create, launch and return a protocol; fails the test if the run fails."""
        return cls.launchProtocol(cls.newProtocol(protocol_class, **params))

    def tomogramPath(self, ts_id):
        return os.path.join(self.dataDir, f'{ts_id}.mrc')
