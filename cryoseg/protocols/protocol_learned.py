"""Learned particle detection (MaskNet + CenterNet) and semantic masks (algorithms.md §6).

The networks need the optional ``ml`` extra (torch, MONAI). This module imports neither: the
protocols load, and their validation says what to install when the extra is missing.
"""
import json

import numpy as np
from pyworkflow.protocol import params
from tomo.objects import SetOfCoordinates3D, SetOfTomoMasks

from .. import convert
from ..core.errors import CryoSegInputError
from ..core.extract import rescale_positions
from ..core.mrcio import read_volume, write_volume
from ..learn import missing_ml_message
from ..objects import CryoSegModel
from .base import MaskOutputMixin, ProtCryoSegBase, ProtCryoSegPerTomogram
from .protocol_make_mask import ball_voxels

SAMPLING_TOLERANCE = 0.05  # relative voxel-size difference between model and tomograms still accepted


def _channels(text):
    try:
        channels = [int(value) for value in text.replace(',', ' ').split()]
    except ValueError:
        channels = []
    if len(channels) != 3 or min(channels) < 1:
        raise CryoSegInputError(f'network channels must be three positive whole numbers, e.g. "32 48 64"; got {text!r}')
    return channels


def _mlErrors():
    message = missing_ml_message()
    return [message] if message else []


def _samplingErrors(model, tomograms):
    if model is None or tomograms is None:
        return []
    modelSize, tomoSize = model.getVoxelSize(), tomograms.getSamplingRate()
    if abs(tomoSize - modelSize) > SAMPLING_TOLERANCE * modelSize:
        return [f'The model was trained on tomograms of {modelSize:.2f} Å/px but these have {tomoSize:.2f} Å/px: '
                f'apply it to tomograms binned like the training ones.']
    return []


class _TrainingForm:
    """Form parameters and model output shared by the two training protocols."""
    OUTPUT_NAME = 'model'
    _possibleOutputs = {OUTPUT_NAME: CryoSegModel}

    def _addTrainingParams(self, form, iterations, batch, patch, learningRate, channels):
        form.addSection(label='Training')
        form.addParam('iterations', params.IntParam, default=iterations, validators=[params.GE(1)],
                      label='Iterations', help='Number of batches the network learns from. The loss plot shows '
                                               'whether it has converged; more iterations take longer.')
        form.addParam('batchSize', params.IntParam, default=batch, validators=[params.GE(1)], label='Batch size',
                      help='Patches per iteration.')
        form.addParam('patchSize', params.IntParam, default=patch, validators=[params.GE(8)],
                      label='Patch size (voxels)', help='Side of the cubic training patches, a multiple of 4; it must '
                                                        'hold a particle with some context around it.')
        form.addParam('learningRate', params.FloatParam, default=learningRate, validators=[params.GT(0)],
                      expertLevel=params.LEVEL_ADVANCED, label='Learning rate', help='Adam step size.')
        form.addParam('channels', params.StringParam, default=channels, expertLevel=params.LEVEL_ADVANCED,
                      label='Network channels', help='Feature channels at the three resolution levels; smaller '
                                                     'networks train faster but learn less.')
        form.addParam('quarterTurns', params.BooleanParam, default=False, expertLevel=params.LEVEL_ADVANCED,
                      label='Augment with quarter turns about z?',
                      help='Flips in x, y and z (which keep the missing wedge in place) are always used. Quarter '
                           'turns about z keep the wedge around z but exchange the x and y axes, and with them '
                           'the direction of the tilt axis.')
        form.addParam('randomSeed', params.IntParam, default=0, expertLevel=params.LEVEL_ADVANCED, label='Random seed')
        form.addParallelSection(threads=2, mpi=0)

    def _settings(self):
        from ..learn.training import TrainingSettings

        return TrainingSettings(iterations=self.iterations.get(), batch=self.batchSize.get(),
                                patch=self.patchSize.get(), learning_rate=self.learningRate.get(),
                                centre_learning_rate=self.learningRate.get(), channels=tuple(_channels(self.channels.get())),
                                quarter_turns=bool(self.quarterTurns), seed=self.randomSeed.get(),
                                threads=max(1, self.numberOfThreads.get()))

    def _modelPath(self):
        return self._getExtraPath('model.pt')

    def _lossLogPath(self):
        return self._getExtraPath('loss_log.csv')

    def _saveHistory(self, history, voxelSize):
        with open(self._getExtraPath('history.json'), 'w') as handle:
            json.dump(dict(history, voxel_size=voxelSize), handle)

    def _registerModel(self, kind, diameter, source):
        with open(self._getExtraPath('history.json')) as handle:
            history = json.load(handle)
        voxelSize = history.pop('voxel_size')
        model = CryoSegModel()
        model.setModelFile(self._modelPath())
        model.setKind(kind)
        model.setPatchSize(self.patchSize.get())
        model.setVoxelSize(voxelSize)
        model.setDiameter(diameter)
        model.setLossLog(self._lossLogPath())
        model.setReport(dict(iterations=history['iterations'], seconds=round(history['seconds'], 1),
                             final_losses={name: values[-1] for name, values in history.items()
                                           if isinstance(values, list) and values}))
        self._defineOutputs(**{self.OUTPUT_NAME: model})
        self._defineSourceRelation(source, model)

    def _trainingErrors(self):
        errors = _mlErrors()
        try:
            _channels(self.channels.get())
        except CryoSegInputError as err:
            errors.append(str(err))
        if self.patchSize.get() % 4:
            errors.append(f'The patch size must be a multiple of 4 voxels; got {self.patchSize.get()}.')
        return errors

    def _summary(self):
        model = getattr(self, self.OUTPUT_NAME, None)
        if model is None:
            return ['Not trained yet.']
        report = model.getReport()
        losses = ', '.join(f'{name} {value:.4f}' for name, value in report.get('final_losses', {}).items())
        return [f"Trained {report.get('iterations')} iterations in {report.get('seconds')} s; final losses: {losses}.",
                f'Model: {model.getModelFile()}']

    def _methods(self):
        if getattr(self, self.OUTPUT_NAME, None) is None:
            return []
        return [f'{self._trainedWhat()} was trained for {self.iterations.get()} iterations {self._trainedOn()}with cryoseg.']


class ProtCryoSegTrainDetector(_TrainingForm, ProtCryoSegBase):
    """Trains a particle detector on annotated tomograms: MaskNet learns which voxels belong to a
    particle (a ball of the given diameter around each annotation) and CenterNet learns how deep a
    voxel lies inside its particle (1 at the centre, 0 at the edge), which separates touching
    particles. Annotate every particle of interest in the training tomograms: unannotated ones are
    learned as background. Apply the model with 'detect particles' to tomograms of the same voxel size."""
    _label = 'train particle detector'

    def _citations(self):
        return ['HelmholtzParticleDetection', 'Moebel2021DeepFinder']

    def _defineParams(self, form):
        form.addSection(label='Input')
        form.addParam('inputCoordinates', params.PointerParam, pointerClass='SetOfCoordinates3D', important=True,
                      label='Annotated coordinates',
                      help='Particle positions in the training tomograms (the tomograms the coordinates belong to).')
        form.addParam('diameter', params.FloatParam, default=200.0, validators=[params.GT(0)],
                      label='Particle diameter (Å)', help='Diameter of the particles to learn.')
        self._addTrainingParams(form, iterations=2000, batch=8, patch=56, learningRate=5e-4, channels='32 48 64')

    def _insertAllSteps(self):
        self._insertFunctionStep(self.trainStep)
        self._insertFunctionStep(self.createOutputStep)

    def _trainingData(self):
        coordSet = self.inputCoordinates.get()
        tomos = coordSet.getPrecedentsInvolved()
        volumes, centres = [], []
        for tsId, table in convert.read_coordinates(coordSet).items():
            tomo = tomos[tsId]
            volumes.append(read_volume(convert.tomogram_path(tomo))[0])
            centres.append(rescale_positions(table.xyz, coordSet.getSamplingRate(), tomo.getSamplingRate()))
        return volumes, centres, coordSet.getPrecedents().getSamplingRate()

    def trainStep(self):
        from ..learn.training import train_detector

        volumes, centres, sampling = self._trainingData()
        self.info(f'training on {len(volumes)} tomogram(s) with {sum(len(c) for c in centres)} particles')
        self._saveHistory(train_detector(volumes, centres, self.diameter.get(), sampling, self._modelPath(),
                                         self._lossLogPath(), self._settings()), sampling)

    def createOutputStep(self):
        self._registerModel(CryoSegModel.DETECTOR, self.diameter.get(), self.inputCoordinates)

    def _validate(self):
        errors = self._trainingErrors()
        coordSet = self.inputCoordinates.get()
        if coordSet is not None and not errors:
            diameterPx = self.diameter.get() / coordSet.getSamplingRate()
            if diameterPx >= self.patchSize.get():
                errors.append(f'Particles of {self.diameter.get():.0f} Å ({diameterPx:.0f} voxels) do not fit in '
                              f'{self.patchSize.get()}-voxel patches: enlarge the patches or bin the tomograms.')
        return errors

    def _trainedWhat(self):
        return 'A MaskNet/CenterNet particle detector (U-Net with two down- and two up-sampling levels)'

    def _trainedOn(self):
        return f'on particles of {self.diameter.get():.0f} Å '


class ProtCryoSegTrainMaskNet(_TrainingForm, ProtCryoSegBase):
    """Trains a 3-D U-Net (MONAI) to reproduce tomogram masks, e.g. specimen against ice, vacuum, carbon
    or other look-alike structures that statistics masks cannot tell apart. Give a few tomograms with
    good masks (made or corrected by hand); apply the model with 'predict mask' to the others."""
    _label = 'train mask network'

    def _citations(self):
        return ['Cicek2016UNet3D']

    def _defineParams(self, form):
        form.addSection(label='Input')
        form.addParam('inputTomograms', params.PointerParam, pointerClass='SetOfTomograms', important=True,
                      label='Tomograms', help='The training tomograms.')
        form.addParam('inputMasks', params.PointerParam, pointerClass='SetOfTomoMasks', important=True,
                      label='Masks', help='One mask per training tomogram (matched by tilt-series id); non-zero = keep.')
        self._addTrainingParams(form, iterations=1000, batch=4, patch=48, learningRate=1e-3, channels='16 32 64')

    def _insertAllSteps(self):
        self._insertFunctionStep(self.trainStep)
        self._insertFunctionStep(self.createOutputStep)

    def _pairs(self):
        tomos = convert.tomograms_by_tsid(self.inputTomograms.get())
        masks = convert.tomograms_by_tsid(self.inputMasks.get())
        return [(tomos[tsId], masks[tsId]) for tsId in tomos if tsId in masks]

    def trainStep(self):
        from ..learn.training import train_mask

        pairs = self._pairs()
        volumes = [read_volume(convert.tomogram_path(tomo))[0] for tomo, _ in pairs]
        masks = [read_volume(convert.tomogram_path(mask))[0] for _, mask in pairs]
        self.info(f'training on {len(pairs)} tomogram(s) with their masks')
        sampling = self.inputTomograms.get().getSamplingRate()
        self._saveHistory(train_mask(volumes, masks, sampling, self._modelPath(), self._lossLogPath(),
                                     self._settings(), _channels(self.channels.get())), sampling)

    def createOutputStep(self):
        self._registerModel(CryoSegModel.MASK, None, self.inputMasks)

    def _validate(self):
        errors = self._trainingErrors()
        tomos, masks = self.inputTomograms.get(), self.inputMasks.get()
        if tomos is not None and masks is not None and not set(tomos.getTSIds()) & set(masks.getTSIds()):
            errors.append('No mask has the tilt-series id of a tomogram: give the masks of these tomograms.')
        return errors

    def _trainedWhat(self):
        return 'A 3-D U-Net (MONAI) predicting tomogram masks'

    def _trainedOn(self):
        return ''


class _ApplyModel(ProtCryoSegPerTomogram):
    """Shared by the protocols that apply a model to each tomogram."""
    MODEL_KIND = None

    def _addModelParams(self, form):
        form.addSection(label='Input')
        form.addParam('inputTomograms', params.PointerParam, pointerClass='SetOfTomograms', important=True,
                      label='Tomograms', help='Tomograms of the voxel size the model was trained on.')
        form.addParam('inputModel', params.PointerParam, pointerClass='CryoSegModel', important=True,
                      label='Trained model', help=f'A {self.MODEL_KIND} model trained by cryoseg.')
        form.addParam('inferencePatch', params.IntParam, default=96, validators=[params.GE(16)],
                      expertLevel=params.LEVEL_ADVANCED, label='Inference patch (voxels)',
                      help='The tomogram is processed in overlapping cubes of this side (a multiple of 4); a '
                           'sixth of each side is context that is discarded. Larger cubes are faster but use '
                           'more memory (GPU memory when a GPU is used).')

    def _loadedModel(self):
        from ..learn.training import load_model

        with self._lock:
            if getattr(self, '_loaded', None) is None:
                self._loaded = load_model(self.inputModel.get().getModelFile())
        return self._loaded

    def _maps(self, tsId):
        with self._lock:
            tomo = self._tomograms()[tsId]
        volume = read_volume(convert.tomogram_path(tomo))[0]
        self.info(f'{tsId}: applying the {self.MODEL_KIND} model to {volume.shape[::-1]} voxels')
        return tomo, self._loadedModel().predict(volume, patch=self.inferencePatch.get(),
                                                 threads=max(1, self.numberOfThreads.get() // 2))

    def _tomograms(self):
        if getattr(self, '_tomosById', None) is None:
            self._tomosById = convert.tomograms_by_tsid(self.inputTomograms.get())
        return self._tomosById

    def _modelErrors(self):
        errors = _mlErrors()
        model = self.inputModel.get()
        if model is not None and model.getKind() != self.MODEL_KIND:
            errors.append(f'This protocol needs a {self.MODEL_KIND} model; the chosen one is a {model.getKind()} model.')
        if self.inferencePatch.get() % 4:
            errors.append(f'The inference patch must be a multiple of 4 voxels; got {self.inferencePatch.get()}.')
        return errors + _samplingErrors(model, self.inputTomograms.get())


class ProtCryoSegDetectParticles(_ApplyModel):
    """Detects particles with a trained detector: MaskNet marks particle voxels, CenterNet marks their
    centres; touching particles are split by nearest centre, specks are removed and, optionally,
    isolated detections (whose k-th nearest neighbour is far) are dropped. Outputs the particle
    centres (score = CenterNet peak) and, per tomogram, an instance-label volume (each particle numbered)."""
    _label = 'detect particles'

    def _citations(self):
        return ['HelmholtzParticleDetection', 'Moebel2021DeepFinder']
    MODEL_KIND = CryoSegModel.DETECTOR
    COORDINATES, LABELS = 'coordinates', 'instanceMasks'
    _possibleOutputs = {COORDINATES: SetOfCoordinates3D, LABELS: SetOfTomoMasks}

    def _defineParams(self, form):
        self._addModelParams(form)
        form.addSection(label='Post-processing')
        form.addParam('maskThreshold', params.FloatParam, default=0.5, validators=[params.Range(0, 1)],
                      label='Mask threshold', help='Voxels whose particle probability exceeds this are particle voxels.')
        form.addParam('centreThreshold', params.FloatParam, default=0.3, validators=[params.Range(0, 1)],
                      label='Centre threshold',
                      help='Centre-map values below this are ignored (1 = centre of a particle, 0 = its edge). '
                           'Raise it when one particle is split in several.')
        form.addParam('minDiameter', params.FloatParam, default=0.0, validators=[params.GE(0)],
                      label='Smallest particle (Å)',
                      help='Regions smaller than a ball of this diameter are removed; 0 uses half the trained diameter.')
        form.addParam('strictMaxima', params.BooleanParam, default=True, expertLevel=params.LEVEL_ADVANCED,
                      label='Strict centre maxima?',
                      help='Yes: a centre must be higher than all 26 neighbours (flat tops give none). No: each '
                           'flat top gives one centre.')
        form.addParam('filterOutliers', params.BooleanParam, default=False, label='Remove isolated detections?',
                      help='For crowded samples: drop detections whose k-th nearest neighbour is farther than the distance.')
        form.addParam('neighbourNumber', params.IntParam, default=3, condition='filterOutliers',
                      validators=[params.GE(1)], label='Neighbour number (k)')
        form.addParam('outlierDistance', params.FloatParam, default=300.0, condition='filterOutliers',
                      validators=[params.GT(0)], label='Neighbour distance (Å)')
        form.addParallelSection(threads=2, mpi=0)

    def _detectionSettings(self, sampling, model):
        minDiameter = self.minDiameter.get() or model.getDiameter() / 2.0
        return dict(mask_threshold=self.maskThreshold.get(), centre_threshold=self.centreThreshold.get(),
                    min_size=ball_voxels(minDiameter, sampling), strict_maxima=bool(self.strictMaxima),
                    filter_outliers=bool(self.filterOutliers), neighbor_number=self.neighbourNumber.get(),
                    distance_threshold=self.outlierDistance.get() / sampling)

    def _labelsPath(self, tsId):
        return self._getExtraPath(f'{tsId}_instances.mrc')

    def _tablePath(self, tsId):
        return self._getExtraPath(f'{tsId}_particles.txt')

    def processTomogram(self, tsId):
        from ..core.detection import detect

        tomo, maps = self._maps(tsId)
        sampling = tomo.getSamplingRate()
        found = detect(maps['mask'], maps['centre'], **self._detectionSettings(sampling, self.inputModel.get()))
        self.info(f'{tsId}: {len(found)} particles')
        dtype = np.uint16 if len(found) < 2 ** 16 else np.float32  # MRC has no 32-bit integer mode
        info = convert.tomogram_info(tomo)
        write_volume(self._labelsPath(tsId), found.labels.astype(dtype), info.voxel_size, info.origin)
        table = np.column_stack([np.arange(1, len(found) + 1), found.centres, found.centres * sampling,
                                 found.scores, found.sizes])
        np.savetxt(self._tablePath(tsId), table, fmt=['%d'] + ['%.2f'] * 6 + ['%.4f', '%d'],
                   header='label x_px y_px z_px x_A y_A z_A score voxels')

    def registerTomogram(self, tsId):
        table = np.loadtxt(self._tablePath(tsId), ndmin=2).reshape(-1, 9)  # (0, 9) without particles
        tomo = self._tomograms()[tsId]
        sampling = tomo.getSamplingRate()

        def createCoordinates():
            output = self._createSetOfCoordinates3D(self.inputTomograms)
            output.setSamplingRate(sampling)
            output.setBoxSize(int(round(self.inputModel.get().getDiameter() / sampling)))
            return output

        def fillCoordinates(output):
            convert.append_coordinates(output, tomo, table[:, 1:4], scores=table[:, 7])

        def createMasks():
            output = self._createSet(SetOfTomoMasks, 'tomomasks%s.sqlite', 'instances')
            output.copyInfo(self.inputTomograms.get())
            return output

        def fillMasks(output):
            output.append(convert.make_tomo_mask(tomo, self._labelsPath(tsId)))

        self._appendToOutput(self.COORDINATES, createCoordinates, fillCoordinates, tsId)
        self._appendToOutput(self.LABELS, createMasks, fillMasks, tsId)

    def _validate(self):
        return self._modelErrors()

    def _summary(self):
        summary = []
        coords = getattr(self, self.COORDINATES, None)
        if coords is not None:
            summary.append(f'{coords.getSize()} particles detected.')
        return summary + self._failureSummary()

    def _methods(self):
        if getattr(self, self.COORDINATES, None) is None:
            return []
        return ['Particles were detected with a MaskNet/CenterNet detector trained in cryoseg; touching particles '
                'were split by nearest centre.']


class ProtCryoSegPredictMask(MaskOutputMixin, _ApplyModel):
    """Predicts a mask for each tomogram with a trained mask network, thresholds its probability and
    cleans it up like 'make mask' (specks removed, enclosed holes filled, optional grow/erode)."""
    _label = 'predict mask'

    def _citations(self):
        return ['Cicek2016UNet3D']
    MODEL_KIND = CryoSegModel.MASK

    def _defineParams(self, form):
        self._addModelParams(form)
        form.addSection(label='Clean-up')
        form.addParam('threshold', params.FloatParam, default=0.5, validators=[params.Range(0, 1)],
                      label='Probability threshold', help='Voxels with a higher predicted probability are kept.')
        form.addParam('minRegion', params.FloatParam, default=80.0, validators=[params.GE(0)],
                      label='Smallest region kept (Å)',
                      help='Connected regions smaller than a ball of this diameter are removed. 0 keeps all.')
        form.addParam('keepLargest', params.BooleanParam, default=False, label='Keep only the largest region?')
        form.addParam('fillHoles', params.BooleanParam, default=True, label='Fill enclosed holes?')
        form.addParam('grow', params.FloatParam, default=0.0, label='Grow by (Å)',
                      help='Grow the mask by this distance (negative values erode it).')
        form.addParallelSection(threads=2, mpi=0)

    def processTomogram(self, tsId):
        from ..core.morphology import postprocess_mask

        tomo, maps = self._maps(tsId)
        sampling = tomo.getSamplingRate()
        mask = postprocess_mask(maps['mask'] > self.threshold.get(), ball_voxels(self.minRegion.get(), sampling),
                                keep_largest=bool(self.keepLargest), fill_holes=bool(self.fillHoles),
                                grow=self.grow.get() / sampling)
        info = convert.tomogram_info(tomo)
        write_volume(self._maskPath(tsId), mask.view(np.int8), info.voxel_size, info.origin)  # MRC mode 0
        self.info(f'{tsId}: the mask keeps {100 * mask.mean():.1f} % of the voxels')

    def _validate(self):
        return self._modelErrors()

    def _summary(self):
        masks = getattr(self, self.OUTPUT_NAME, None)
        return ([f'{masks.getSize()} masks predicted.'] if masks is not None else []) + self._failureSummary()

    def _methods(self):
        if getattr(self, self.OUTPUT_NAME, None) is None:
            return []
        return ['Tomogram masks were predicted with a 3-D U-Net trained in cryoseg and cleaned up morphologically.']
