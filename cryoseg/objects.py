"""cryoseg's own Scipion object types (Scipion finds them in this module, by convention)."""
import json

from pwem.objects import EMObject
from pyworkflow.object import Float, Integer, String


class CryoSegModel(EMObject):
    """A trained cryoseg network: a particle detector (MaskNet + CenterNet) or a semantic mask network.

    It points to the model file (weights and architecture), and records what the model expects: its
    kind, the training patch size (voxels), the voxel size (Å) of the tomograms it was trained on and,
    for detectors, the particle diameter (Å); plus the loss log and a JSON training report.
    """
    DETECTOR = 'detector'
    MASK = 'mask'

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._modelFile = String()
        self._kind = String()
        self._patchSize = Integer()
        self._voxelSize = Float()
        self._diameter = Float()
        self._lossLog = String()
        self._report = String('{}')

    def getModelFile(self):
        return self._modelFile.get()

    def setModelFile(self, path):
        self._modelFile.set(path)

    def getKind(self):
        return self._kind.get()

    def setKind(self, kind):
        self._kind.set(kind)

    def getPatchSize(self):
        return self._patchSize.get()

    def setPatchSize(self, size):
        self._patchSize.set(size)

    def getVoxelSize(self):
        return self._voxelSize.get()

    def setVoxelSize(self, size):
        self._voxelSize.set(size)

    def getDiameter(self):
        """Particle diameter (Å) a detector was trained for; None for mask networks."""
        return self._diameter.get()

    def setDiameter(self, diameter):
        self._diameter.set(diameter)

    def getLossLog(self):
        return self._lossLog.get()

    def setLossLog(self, path):
        self._lossLog.set(path)

    def getReport(self):
        """The training report: ``{'iterations', 'seconds', 'final_losses', 'settings', ...}``."""
        return json.loads(self._report.get() or '{}')

    def setReport(self, report):
        self._report.set(json.dumps(report))

    def getFiles(self):
        return {path for path in (self.getModelFile(), self.getLossLog()) if path}

    def __str__(self):
        extra = f', {self.getDiameter():.0f} Å particles' if self.getDiameter() else ''
        return f'{self.getKind()} model ({self.getVoxelSize()} Å/px{extra})'
