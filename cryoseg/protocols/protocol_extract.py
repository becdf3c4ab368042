"""Extraction of subtomograms around 3D coordinates (algorithms.md §4.1–4.2)."""
import json
import logging
import os

import numpy as np
from pwem.constants import ALIGN_NONE
from pyworkflow.object import String
from pyworkflow.protocol import params
from tomo.objects import SetOfSubTomograms

from .. import convert
from ..core.errors import CryoSegInputError
from ..core.extract import ExtractionSettings, Extractor, rescale_positions
from ..core.mrcio import write_volume
from ..core.transform import extraction_matrix
from .base import ProtCryoSegPerTomogram

logger = logging.getLogger(__name__)

SAME_AS_PICKING, OTHER_TOMOGRAMS = 0, 1
BORDER_POLICIES = ['skip', 'pad']
NORMALIZATIONS = ['box', 'outside_sphere']
SUBVOXEL_MODES = ['shift', 'interpolate']
PROGRESS_EVERY = 1000


class ProtCryoSegExtract(ProtCryoSegPerTomogram):
    """Cuts a cubic subtomogram around every 3D coordinate, from the tomograms the coordinates were
    picked on or from other tomograms of the same tilt series (another binning, a denoised or a raw
    reconstruction), matched by tilt-series id. Orientations (the coordinates' matrices) are kept as
    the subtomograms' transforms, ready for subtomogram averaging."""
    _label = 'extract subtomograms'
    OUTPUT_NAME = 'subtomograms'
    _possibleOutputs = {OUTPUT_NAME: SetOfSubTomograms}
    JOURNALED_ATTRIBUTES = ProtCryoSegPerTomogram.JOURNALED_ATTRIBUTES + ('skippedParticles',)

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.skippedParticles = String('{}')

    # ----------------------------------------------------------------------------------- form
    def _defineParams(self, form):
        form.addSection(label='Input')
        form.addParam('inputCoordinates', params.PointerParam, pointerClass='SetOfCoordinates3D',
                      important=True, label='Input coordinates',
                      help='The particle positions (and orientations, if the picker gave them).')
        form.addParam('tomoSource', params.EnumParam, choices=['same as picking', 'other'],
                      default=SAME_AS_PICKING, display=params.EnumParam.DISPLAY_HLIST,
                      label='Tomogram source',
                      help='Extract from the tomograms the coordinates were picked on, or from other '
                           'tomograms of the same tilt series, e.g. a less binned or a raw '
                           'reconstruction. Other tomograms are paired with the coordinates by their '
                           'tilt-series id (tsId), and the positions are rescaled by the ratio of the '
                           'sampling rates.')
        form.addParam('inputTomograms', params.PointerParam, pointerClass='SetOfTomograms',
                      condition=f'tomoSource == {OTHER_TOMOGRAMS}', label='Tomograms to extract from',
                      help='Tomograms with the same tsIds as those the coordinates were picked on.')
        form.addParam('boxSize', params.IntParam, label='Box size (px)', important=True,
                      validators=[params.GE(2)],
                      help='Size of the cubic box, in pixels of the tomograms extracted from. The '
                           'wizard proposes the coordinates\' box size rescaled to those tomograms.')
        form.addParam('downFactor', params.FloatParam, default=1.0, validators=[params.GE(1.0)],
                      label='Downsampling factor',
                      help='Above 1, the subtomograms are shrunk by this factor by Fourier cropping: '
                           'the box becomes box/factor (rounded to an even size) and the pixel size '
                           'grows accordingly. 1 keeps the tomogram sampling.')

        form.addSection(label='Preprocess')
        form.addParam('doInvert', params.BooleanParam, default=False, label='Invert contrast?',
                      help='Multiply the subtomograms by -1 (dark particles become bright).')
        form.addParam('doNormalize', params.BooleanParam, default=False, label='Normalize subtomograms?',
                      help='Subtract the mean and divide by the standard deviation, so each '
                           'subtomogram has mean 0 and std 1 (after downsampling).')
        form.addParam('normMethod', params.EnumParam, condition='doNormalize',
                      choices=['whole box', 'outside a sphere'], default=0,
                      display=params.EnumParam.DISPLAY_HLIST, label='Normalize over',
                      help='Statistics of the whole box, or of the background outside a sphere '
                           'around the particle (the particle itself then does not bias them).')
        form.addParam('sphereRadius', params.FloatParam, default=-1,
                      condition='doNormalize and normMethod == 1', label='Sphere radius (Å)',
                      help='Radius of the sphere excluded from the statistics; -1 = half the box.')
        form.addParam('borderMode', params.EnumParam, choices=['skip', 'pad with the mean'], default=0,
                      display=params.EnumParam.DISPLAY_HLIST, label='Particles near the border',
                      help='A particle whose box leaves the tomogram on any side is either skipped '
                           '(listed in the summary) or extracted with the outside part filled with '
                           'the mean of the inside part.')
        form.addParam('subvoxel', params.EnumParam, choices=['shift in the transform', 'interpolate'],
                      default=0, expertLevel=params.LEVEL_ADVANCED, label='Sub-pixel positions',
                      help='Coordinates between voxels: crop at the nearest voxel and store the '
                           'remaining sub-pixel offset in the transform (voxels untouched), or '
                           'interpolate the box (cubic spline) so the particle sits on its centre.')
        form.addParallelSection(threads=2, mpi=0)

    # ----------------------------------------------------------------------------------- inputs
    def _coordinateTomograms(self):
        """``{tsId: tomogram}`` the coordinates were picked on (only those holding coordinates)."""
        return {tsId: tomo.clone()
                for tsId, tomo in self.inputCoordinates.get().getPrecedentsInvolved().items()}

    def _sourceTomogramSet(self):
        if self.tomoSource.get() == OTHER_TOMOGRAMS:
            return self.inputTomograms.get()
        return self.inputCoordinates.get().getPrecedents()

    def _extractionTomograms(self):
        return convert.tomograms_by_tsid(self._sourceTomogramSet())

    def _tsIdsToProcess(self):
        picked = self._coordinateTomograms()
        return [tsId for tsId in self._extractionTomograms() if tsId in picked]

    def _sourceOfOutputs(self):
        return self.inputCoordinates

    def _settings(self, tomoSampling):
        downFactor = float(self.downFactor.get())
        base = ExtractionSettings(box=int(self.boxSize.get()), down_factor=downFactor)
        radius = None
        if self.doNormalize and self.normMethod.get() == 1 and self.sphereRadius.get() > 0:
            radius = self.sphereRadius.get() / base.output_sampling(tomoSampling)
        return ExtractionSettings(
            box=base.box, down_factor=downFactor, invert=bool(self.doInvert),
            normalize=NORMALIZATIONS[self.normMethod.get()] if self.doNormalize else 'none',
            sphere_radius=radius, border=BORDER_POLICIES[self.borderMode.get()],
            subvoxel=SUBVOXEL_MODES[self.subvoxel.get()])

    def _resultPath(self, tsId):
        return self._getExtraPath(tsId, 'extraction.npz')

    # ----------------------------------------------------------------------------------- steps
    def processTomogram(self, tsId):
        with self._lock:  # the project database is not shared between threads
            coordSet = self.inputCoordinates.get()
            coordSampling = coordSet.getSamplingRate()
            table = convert.read_tomogram_coordinates(coordSet, self._coordinateTomograms()[tsId])
            tomo = self._extractionTomograms()[tsId]
        tomoSampling = tomo.getSamplingRate()
        settings = self._settings(tomoSampling)
        outSampling = settings.output_sampling(tomoSampling)
        positions = rescale_positions(table.xyz, coordSampling, tomoSampling)
        folder = self._getExtraPath(tsId)
        os.makedirs(folder, exist_ok=True)
        kept, matrices, paths = [], [], []
        with convert.open_tomogram(tomo) as (data, _):
            extractor = Extractor(data, positions, settings)
            total = len(extractor.plan.kept)
            for count, (index, box) in enumerate(extractor.boxes(), start=1):
                objId = int(table.obj_ids[index])
                # the file is named after the coordinate id: pairing never depends on sort order
                path = write_volume(os.path.join(folder, f'{tsId}_{objId:07d}.mrc'), box, outSampling)
                kept.append(objId)
                paths.append(path)
                matrices.append(extraction_matrix(table.matrices[index], coordSampling / outSampling,
                                                  extractor.residuals_out(index)))
                if count % PROGRESS_EVERY == 0:
                    self.info(f"{tsId}: {count}/{total} subtomograms written")
        skipped = [int(table.obj_ids[i]) for i in extractor.plan.skipped]
        np.savez(self._resultPath(tsId), obj_ids=np.array(kept, int), paths=np.array(paths, str),
                 matrices=np.array(matrices, float).reshape(-1, 4, 4), sampling=outSampling)
        self.info(f"{tsId}: {len(kept)} subtomograms of {settings.output_box} px at {outSampling:.3f} Å/px; "
                  f"{len(skipped)} skipped (box leaves the tomogram)")
        self._recordSkipped(tsId, skipped)

    def registerTomogram(self, tsId):
        result = np.load(self._resultPath(tsId))
        coordSet = self.inputCoordinates.get()

        def create():
            output = self._createSetOfSubTomograms()
            output.copyInfo(self._sourceTomogramSet())
            output.setSamplingRate(float(result['sampling']))
            output.setCoordinates3D(self.inputCoordinates)
            output.setAlignment(ALIGN_NONE)
            return output

        def fill(output):
            tomo = self._extractionTomograms()[tsId]
            coords = convert.coordinates_by_id(coordSet, self._coordinateTomograms()[tsId])
            matrices = result['matrices']
            if not np.allclose(matrices, np.eye(4)):
                output.setAlignment3D()
            for objId, path, matrix in zip(result['obj_ids'], result['paths'], matrices):
                output.append(convert.make_subtomogram(coords[int(objId)], str(path), float(result['sampling']),
                                                       matrix, tsId, tomo.getAcquisition()))

        self._appendToOutput(self.OUTPUT_NAME, create, fill, tsId)

    # ----------------------------------------------------------------------------------- bookkeeping
    def getSkipped(self):
        """``{tsId: [coordinate ids]}`` of the particles whose box left the tomogram."""
        return json.loads(self.skippedParticles.get() or '{}')

    def _recordSkipped(self, tsId, objIds):
        with self._lock:
            skipped = self.getSkipped()
            skipped[tsId] = objIds
            self.skippedParticles.set(json.dumps(skipped))
            self._store(self.skippedParticles)

    # ----------------------------------------------------------------------------------- info
    def _validate(self):
        errors = []
        coordSet = self.inputCoordinates.get()
        if coordSet is None or (self.tomoSource.get() == OTHER_TOMOGRAMS and self.inputTomograms.get() is None):
            return errors  # the form reports missing inputs itself
        if not coordSet.getSize():
            return ['The input coordinates set is empty: there is nothing to extract.']
        picked = set(coordSet.getTSIds())
        tomos = self._extractionTomograms()
        if not picked & set(tomos):
            errors.append('None of the tomograms to extract from has the tsId of a tomogram with '
                          f'coordinates (coordinates: {", ".join(sorted(picked)) or "none"}; '
                          f'tomograms: {", ".join(tomos) or "none"}).')
        box = self.boxSize.get()
        for tsId in sorted(picked & set(tomos)):
            dims = tomos[tsId].getDim()
            if dims and box and box > min(dims):
                errors.append(f'The box ({box} px) is larger than tomogram {tsId} '
                              f'({dims[0]}x{dims[1]}x{dims[2]} px).')
                break
        sampling = next(iter(tomos.values())).getSamplingRate() if tomos else 0
        if box and sampling > 0:
            try:
                self._settings(sampling)
            except CryoSegInputError as err:
                errors.append(f'{err}.')
        return errors

    def _warnings(self):
        coordSet = self.inputCoordinates.get()
        if coordSet is None or (self.tomoSource.get() == OTHER_TOMOGRAMS and self.inputTomograms.get() is None):
            return []
        missing = sorted(set(coordSet.getTSIds()) - set(self._extractionTomograms()))
        if missing:
            return [f'No tomogram to extract from for {", ".join(missing)}: their coordinates will be ignored.']
        return []

    def _summary(self):
        summary = []
        output = getattr(self, self.OUTPUT_NAME, None)
        if output is not None:
            summary.append(f'{output.getSize()} subtomograms of {output.getFirstItem().getXDim()} px '
                           f'at {output.getSamplingRate():.3f} Å/px.' if output.getSize() else
                           'No subtomogram was extracted.')
        for tsId, objIds in self.getSkipped().items():
            if objIds:
                shown = ', '.join(map(str, objIds[:20])) + (', ...' if len(objIds) > 20 else '')
                summary.append(f'{tsId}: {len(objIds)} particles skipped, their box leaves the tomogram '
                               f'(coordinate ids {shown}).')
        return summary + self._failureSummary()

    def _methods(self):
        if getattr(self, self.OUTPUT_NAME, None) is None:
            return []
        return [f'Subtomograms were extracted with a box of {self.boxSize.get()} px'
                + (f', downsampled by {self.downFactor.get():g}' if self.downFactor.get() > 1 else '')
                + (', contrast inverted' if self.doInvert else '')
                + (', normalised' if self.doNormalize else '') + ' using cryoseg.']

    def _citations(self):
        return ['JimenezDeLaMorena2022']
