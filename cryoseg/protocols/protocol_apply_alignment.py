"""Apply the subtomograms' transforms and average them (algorithms.md §4.3)."""
import os

import numpy as np
from pyworkflow.protocol import params
from tomo.objects import AverageSubTomogram, SetOfSubTomograms

from .. import convert
from ..core.mrcio import read_volume, write_volume
from ..core.transform import RunningAverage, align
from .base import ProtCryoSegPerTomogram

PROGRESS_EVERY = 500


class ProtCryoSegApplyAlignment(ProtCryoSegPerTomogram):
    """Resamples every subtomogram with its own transform, so all particles end up in the
    reference orientation, and averages them. With orientations from a geometric model (e.g.
    membrane normals) the rotation around the particle's z axis is arbitrary, so the average is only
    meaningful up to that rotation; a blurry but recognisable density tells the picking worked."""
    _label = 'apply alignment and average'
    OUTPUT_SUBTOMOGRAMS = 'subtomograms'
    OUTPUT_AVERAGE = 'average'
    _possibleOutputs = {OUTPUT_SUBTOMOGRAMS: SetOfSubTomograms, OUTPUT_AVERAGE: AverageSubTomogram}

    def _defineParams(self, form):
        form.addSection(label='Input')
        form.addParam('inputSubtomograms', params.PointerParam, pointerClass='SetOfSubTomograms',
                      important=True, label='Subtomograms',
                      help='Subtomograms with transforms (e.g. extracted from oriented coordinates, '
                           'or after a refinement).')
        form.addParallelSection(threads=2, mpi=0)

    # ----------------------------------------------------------------------------------- inputs
    def _tsIdsToProcess(self):
        return list(convert.read_subtomograms(self.inputSubtomograms.get()))

    def _sourceOfOutputs(self):
        return self.inputSubtomograms

    def _partialSumPath(self, tsId):
        return self._getExtraPath(tsId or 'untracked', 'aligned.npz')

    # ----------------------------------------------------------------------------------- steps
    def processTomogram(self, tsId):
        with self._lock:  # the project database is not shared between threads
            table = convert.read_subtomograms(self.inputSubtomograms.get())[tsId]
        folder = os.path.dirname(self._partialSumPath(tsId))
        os.makedirs(folder, exist_ok=True)
        average = RunningAverage()
        paths = []
        for count, (objId, path, matrix) in enumerate(zip(table.obj_ids, table.paths, table.matrices), 1):
            volume, info = read_volume(path)
            # fill with the box mean, so rotated corners add no artificial edge to the average
            aligned = align(volume, matrix, fill='mean')
            paths.append(write_volume(os.path.join(folder, f'aligned_{objId:07d}.mrc'), aligned,
                                      info.voxel_size))
            average.add(aligned)
            if count % PROGRESS_EVERY == 0:
                self.info(f"{tsId}: {count}/{len(table)} subtomograms aligned")
        np.savez(self._partialSumPath(tsId), obj_ids=table.obj_ids, paths=np.array(paths, str),
                 total=average.total if average.count else np.zeros(0), count=average.count)
        self.info(f"{tsId}: {average.count} subtomograms aligned")

    def registerTomogram(self, tsId):
        result = np.load(self._partialSumPath(tsId))
        inputSet = self.inputSubtomograms.get()

        def create():
            output = self._createSetOfSubTomograms()
            output.copyInfo(inputSet)
            output.setAlignment3D()  # aligned: every transform is now the identity
            return output

        def fill(output):
            newPaths = dict(zip(result['obj_ids'].tolist(), result['paths'].tolist()))
            for subtomo in inputSet.iterItems():
                if subtomo.getObjId() in newPaths:
                    aligned = subtomo.clone()
                    aligned.setFileName(newPaths[subtomo.getObjId()])
                    aligned.setTransform(None)  # the identity
                    output.append(aligned)

        self._appendToOutput(self.OUTPUT_SUBTOMOGRAMS, create, fill, tsId)

    def closeOutputStep(self):
        if getattr(self, self.OUTPUT_AVERAGE, None) is None:  # the close step runs again at each Continue
            self._defineAverage()
        super().closeOutputStep()

    def _defineAverage(self):
        average = RunningAverage()
        for tsId in self._tsIdsToProcess():
            if tsId not in self.getFailures() and os.path.exists(self._partialSumPath(tsId)):
                partial = np.load(self._partialSumPath(tsId))
                average.add_sum(partial['total'], int(partial['count']))
        if average.count:
            inputSet = self.inputSubtomograms.get()
            path = write_volume(self._getExtraPath('average.mrc'), average.mean(), inputSet.getSamplingRate())
            result = AverageSubTomogram()
            result.setFileName(path)
            result.setSamplingRate(inputSet.getSamplingRate())
            self._defineOutputs(**{self.OUTPUT_AVERAGE: result})
            self._defineSourceRelation(self.inputSubtomograms, result)

    # ----------------------------------------------------------------------------------- info
    def _validate(self):
        inputSet = self.inputSubtomograms.get()
        if inputSet is None:
            return []
        boxes = {subtomo.getXDim() for subtomo in inputSet.iterItems(limit=50)}
        if len(boxes) > 1:
            return [f'The subtomograms have different box sizes ({sorted(boxes)}); they cannot be averaged.']
        return []

    def _summary(self):
        summary = []
        output = getattr(self, self.OUTPUT_SUBTOMOGRAMS, None)
        if output is not None:
            summary.append(f'{output.getSize()} subtomograms aligned with their transforms.')
        if getattr(self, self.OUTPUT_AVERAGE, None) is not None:
            summary.append('Average of the aligned subtomograms computed.')
        return summary + self._failureSummary()

    def _methods(self):
        if getattr(self, self.OUTPUT_AVERAGE, None) is None:
            return []
        return ['The subtomograms were resampled with their transforms (cubic spline) and averaged '
                'using cryoseg.']

    def _citations(self):
        return ['JimenezDeLaMorena2022']
