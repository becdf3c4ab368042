"""Learned particle detection (blob candidates scored by small networks trained from partial
annotations) and semantic masks (algorithms.md §6).

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

    def _addTrainingParams(self, form, iterations, batch, iterationsLabel, iterationsHelp):
        """The Training section with its first parameters; the protocol adds its own, then
        :meth:`_addNetworkParams`."""
        form.addSection(label='Training')
        form.addParam('iterations', params.IntParam, default=iterations, validators=[params.GE(1)],
                      label=iterationsLabel, help=iterationsHelp)
        form.addParam('batchSize', params.IntParam, default=batch, validators=[params.GE(1)], label='Batch size',
                      help='Patches per iteration.')

    def _addNetworkParams(self, form, learningRate, channels):
        form.addParam('learningRate', params.FloatParam, default=learningRate, validators=[params.GT(0)],
                      expertLevel=params.LEVEL_ADVANCED, label='Learning rate', help='Adam step size.')
        form.addParam('channels', params.StringParam, default=channels, expertLevel=params.LEVEL_ADVANCED,
                      label='Network channels', help='Feature channels at the three resolution levels; smaller '
                                                     'networks train faster but learn less.')
        form.addParam('randomSeed', params.IntParam, default=0, expertLevel=params.LEVEL_ADVANCED, label='Random seed')
        form.addParallelSection(threads=2, mpi=0)

    def _modelPath(self):
        return self._getExtraPath('model.pt')

    def _lossLogPath(self):
        return self._getExtraPath('loss_log.csv')

    def _saveHistory(self, history, voxelSize):
        with open(self._getExtraPath('history.json'), 'w') as handle:
            json.dump(dict(history, voxel_size=voxelSize), handle)

    def _registerModel(self, kind, diameter, source, patch=None):
        with open(self._getExtraPath('history.json')) as handle:
            history = json.load(handle)
        voxelSize = history.pop('voxel_size')
        model = CryoSegModel()
        model.setModelFile(self._modelPath())
        model.setKind(kind)
        if patch is not None:
            model.setPatchSize(patch)
        model.setVoxelSize(voxelSize)
        model.setDiameter(diameter)
        model.setLossLog(self._lossLogPath())
        model.setReport(self._report(history))
        self._defineOutputs(**{self.OUTPUT_NAME: model})
        self._defineSourceRelation(source, model)

    def _trainingErrors(self):
        errors = _mlErrors()
        try:
            _channels(self.channels.get())
        except CryoSegInputError as err:
            errors.append(str(err))
        return errors

    def _methods(self):
        if getattr(self, self.OUTPUT_NAME, None) is None:
            return []
        return [f'{self._trainedWhat()} was trained {self._trainedHow()} with cryoseg.']


class ProtCryoSegTrainDetector(_TrainingForm, ProtCryoSegBase):
    """Trains a particle detector from annotated particles; the annotation may be partial (most
    particles of a tomogram unannotated), which is the normal case. Every blob of the particle's size
    (a difference of Gaussians at the particle's scale, on the tomogram binned until a particle is a
    few voxels across) is a candidate, and small 3-D CNNs learn to score the patch around each one.
    Unannotated candidates are not taken as background: training labels come from self-training
    (annotated particles and unannotated blobs at least as strong as the typical annotated one are
    positives, blobs weaker than nearly every annotated particle negatives, the rest unlabelled).
    The annotations are split into spatial folds; one network per fold learns from the others, is
    scored on its held-back fold as it trains, stops when that score stops improving and keeps its
    best state. The held-back scores set the score threshold. Apply the model with 'detect
    particles' to tomograms of the same voxel size."""
    _label = 'train particle detector'

    def _citations(self):
        return ['Xu2011TemplateFree', 'Lee2013PseudoLabel', 'Elkan2008PositiveUnlabeled']

    def _defineParams(self, form):
        from ..learn.settings import DetectorSettings

        defaults = DetectorSettings()
        form.addSection(label='Input')
        form.addParam('inputCoordinates', params.PointerParam, pointerClass='SetOfCoordinates3D', important=True,
                      label='Annotated coordinates',
                      help='Particle positions in the training tomograms (the tomograms the coordinates belong to). '
                           'Not every particle needs an annotation.')
        form.addParam('diameter', params.FloatParam, default=200.0, validators=[params.GT(0)],
                      label='Particle diameter (Å)', help='Diameter of the particles to learn.')
        form.addParam('completeAnnotation', params.BooleanParam, default=defaults.complete_annotation,
                      label='Every particle annotated?',
                      help='No (the normal case): only some particles of the training tomograms are annotated; '
                           'unannotated blobs are not taken as background, only clearly weaker ones are. Yes: '
                           'every particle of interest is annotated, so every other blob is background.')
        self._addTrainingParams(form, iterations=defaults.iterations, batch=defaults.batch,
                                iterationsLabel='Most iterations per fold',
                                iterationsHelp='Each fold network trains at most this many batches; it stops '
                                               'earlier when its held-back score stops improving.')
        form.addParam('folds', params.IntParam, default=defaults.folds, validators=[params.GE(2)],
                      label='Cross-validation folds',
                      help='The annotations are split into this many spatial regions; one network per region '
                           'is validated on it and trained on the others. The detector averages them.')
        form.addParam('targetRecall', params.FloatParam, default=defaults.target_recall,
                      validators=[params.GT(0), params.LE(1)], label='Target recall',
                      help='The score threshold keeps this fraction of the held-back annotated particles. Higher '
                           'finds more particles and more false ones.')
        form.addParam('minStrength', params.FloatParam, default=defaults.min_strength, validators=[params.GE(0)],
                      expertLevel=params.LEVEL_ADVANCED, label='Min candidate strength (σ)',
                      help='Candidates are blobs standing at least this many robust standard deviations above '
                           'the background; lower finds fainter particles and takes longer.')
        form.addParam('validateEvery', params.IntParam, default=defaults.validate_every, validators=[params.GE(1)],
                      expertLevel=params.LEVEL_ADVANCED, label='Validate every (iterations)',
                      help='How often each fold network is scored on its held-back fold.')
        form.addParam('patience', params.IntParam, default=defaults.patience, validators=[params.GE(1)],
                      expertLevel=params.LEVEL_ADVANCED, label='Patience (validations)',
                      help='A fold stops after this many validations without a better score; its best state is kept.')
        self._addNetworkParams(form, learningRate=defaults.learning_rate,
                               channels=' '.join(map(str, defaults.channels)))

    def _settings(self):
        from ..learn.settings import DetectorSettings

        return DetectorSettings(iterations=self.iterations.get(), batch=self.batchSize.get(),
                                learning_rate=self.learningRate.get(), channels=tuple(_channels(self.channels.get())),
                                folds=self.folds.get(), validate_every=self.validateEvery.get(),
                                patience=self.patience.get(), target_recall=self.targetRecall.get(),
                                min_strength=self.minStrength.get(), complete_annotation=bool(self.completeAnnotation),
                                seed=self.randomSeed.get(), threads=max(1, self.numberOfThreads.get()))

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
        from ..learn.detector import train_detector

        volumes, centres, sampling = self._trainingData()
        self.info(f'training on {len(volumes)} tomogram(s) with {sum(len(c) for c in centres)} annotated particles')
        self._saveHistory(train_detector(volumes, centres, self.diameter.get(), sampling, self._modelPath(),
                                         self._lossLogPath(), self._settings()), sampling)

    def createOutputStep(self):
        self._registerModel(CryoSegModel.DETECTOR, self.diameter.get(), self.inputCoordinates)

    @staticmethod
    def _report(history):
        return dict(device=history['device'], seconds=round(history['seconds'], 1),
                    kept_iterations=[fold['iteration'] for fold in history['folds']],
                    threshold=history['threshold'], validation=history['validation'])

    def _validate(self):
        errors = self._trainingErrors()
        if not errors:
            try:
                self._settings().check()
            except CryoSegInputError as err:
                message = str(err)
                errors.append(f'{message[:1].upper()}{message[1:]}.')
        coordSet = self.inputCoordinates.get()
        if coordSet is not None and coordSet.getSize() < 2 * self.folds.get():
            errors.append(f'{coordSet.getSize()} annotated particles are too few for {self.folds.get()}-fold '
                          f'validation: annotate at least {2 * self.folds.get()} or use fewer folds.')
        return errors

    def _summary(self):
        model = getattr(self, self.OUTPUT_NAME, None)
        if model is None:
            return ['Not trained yet.']
        report = model.getReport()
        scores = report['validation']
        bound = '' if self.completeAnnotation else ' (a lower bound: not every particle is annotated)'
        kept = ', '.join(map(str, report['kept_iterations']))
        return [f"Trained {len(report['kept_iterations'])} fold networks on {report['device']} in "
                f"{report['seconds']} s; iterations kept per fold: {kept}; score threshold {report['threshold']:.3f}.",
                f"Held-back annotations (out of fold): recall {scores['recall']:.2f}, precision "
                f"{scores['precision']:.2f}{bound}, F1 {scores['f1']:.2f}, {scores['picks']} picks.",
                f'Model: {model.getModelFile()}']

    def _trainedWhat(self):
        return ('A particle detector (blob candidates at the particle\'s scale scored by small 3-D CNNs, trained '
                'from partial annotations by self-training)')

    def _trainedHow(self):
        return (f'on particles of {self.diameter.get():.0f} Å with {self.folds.get()}-fold spatial cross-validation '
                f'and early stopping (at most {self.iterations.get()} iterations per fold)')


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
        self._addTrainingParams(form, iterations=1000, batch=4, iterationsLabel='Iterations',
                                iterationsHelp='Number of batches the network learns from. The loss plot shows '
                                               'whether it has converged; more iterations take longer.')
        form.addParam('patchSize', params.IntParam, default=48, validators=[params.GE(8)],
                      label='Patch size (voxels)', help='Side of the cubic training patches, a multiple of 4; it must '
                                                        'hold a structure with some context around it.')
        form.addParam('quarterTurns', params.BooleanParam, default=False, expertLevel=params.LEVEL_ADVANCED,
                      label='Augment with quarter turns about z?',
                      help='Flips in x, y and z (which keep the missing wedge in place) are always used. Quarter '
                           'turns about z keep the wedge around z but exchange the x and y axes, and with them '
                           'the direction of the tilt axis.')
        self._addNetworkParams(form, learningRate=1e-3, channels='16 32 64')

    def _settings(self):
        from ..learn.training import TrainingSettings

        return TrainingSettings(iterations=self.iterations.get(), batch=self.batchSize.get(),
                                patch=self.patchSize.get(), learning_rate=self.learningRate.get(),
                                channels=tuple(_channels(self.channels.get())), quarter_turns=bool(self.quarterTurns),
                                seed=self.randomSeed.get(), threads=max(1, self.numberOfThreads.get()))

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
        self._registerModel(CryoSegModel.MASK, None, self.inputMasks, patch=self.patchSize.get())

    @staticmethod
    def _report(history):
        return dict(iterations=history['iterations'], seconds=round(history['seconds'], 1),
                    final_losses={name: values[-1] for name, values in history.items()
                                  if isinstance(values, list) and values})

    def _validate(self):
        errors = self._trainingErrors()
        if self.patchSize.get() % 4:
            errors.append(f'The patch size must be a multiple of 4 voxels; got {self.patchSize.get()}.')
        tomos, masks = self.inputTomograms.get(), self.inputMasks.get()
        if tomos is not None and masks is not None and not set(tomos.getTSIds()) & set(masks.getTSIds()):
            errors.append('No mask has the tilt-series id of a tomogram: give the masks of these tomograms.')
        return errors

    def _summary(self):
        model = getattr(self, self.OUTPUT_NAME, None)
        if model is None:
            return ['Not trained yet.']
        report = model.getReport()
        losses = ', '.join(f'{name} {value:.4f}' for name, value in report.get('final_losses', {}).items())
        return [f"Trained {report.get('iterations')} iterations in {report.get('seconds')} s; final losses: {losses}.",
                f'Model: {model.getModelFile()}']

    def _trainedWhat(self):
        return 'A 3-D U-Net (MONAI) predicting tomogram masks'

    def _trainedHow(self):
        return f'for {self.iterations.get()} iterations'


class _ApplyModel(ProtCryoSegPerTomogram):
    """Shared by the protocols that apply a model to each tomogram."""
    MODEL_KIND = None

    def _addModelParams(self, form):
        form.addSection(label='Input')
        form.addParam('inputTomograms', params.PointerParam, pointerClass='SetOfTomograms', important=True,
                      label='Tomograms', help='Tomograms of the voxel size the model was trained on.')
        form.addParam('inputModel', params.PointerParam, pointerClass='CryoSegModel', important=True,
                      label='Trained model', help=f'A {self.MODEL_KIND} model trained by cryoseg.')

    def _loadedModel(self):
        from ..learn.training import load_model

        with self._lock:
            if getattr(self, '_loaded', None) is None:
                self._loaded = load_model(self.inputModel.get().getModelFile())
        return self._loaded

    def _readTomogram(self, tsId):
        with self._lock:
            tomo = self._tomograms()[tsId]
        volume = read_volume(convert.tomogram_path(tomo))[0]
        self.info(f'{tsId}: applying the {self.MODEL_KIND} model to {volume.shape[::-1]} voxels')
        return tomo, volume

    def _tomograms(self):
        if getattr(self, '_tomosById', None) is None:
            self._tomosById = convert.tomograms_by_tsid(self.inputTomograms.get())
        return self._tomosById

    def _modelErrors(self):
        errors = _mlErrors()
        model = self.inputModel.get()
        if model is not None and model.getKind() != self.MODEL_KIND:
            errors.append(f'This protocol needs a {self.MODEL_KIND} model; the chosen one is a {model.getKind()} model.')
        return errors + _samplingErrors(model, self.inputTomograms.get())


class _ScoreThreshold(params.Conditional):
    """-1 (the threshold chosen in training) or a score in [0, 1]."""

    def __init__(self):
        super().__init__('Give -1 (the threshold chosen in training) or a score between 0 and 1.')
        self._condition = lambda value: value == -1 or 0 <= value <= 1


class ProtCryoSegDetectParticles(_ApplyModel):
    """Detects particles with a trained detector: every blob of the particle's size is a candidate,
    the detector's networks score it, and one pick per particle is kept among the candidates scoring
    at least the threshold (by default the one chosen in training); optionally, isolated detections
    (whose k-th nearest neighbour is far) are dropped. Outputs the particle centres (score = the
    networks' agreement, in (0, 1)) and, per tomogram, an instance-label volume (a ball of the trained
    diameter per particle, numbered)."""
    _label = 'detect particles'

    def _citations(self):
        return ['Xu2011TemplateFree', 'Lee2013PseudoLabel', 'Elkan2008PositiveUnlabeled']
    MODEL_KIND = CryoSegModel.DETECTOR
    COORDINATES, LABELS = 'coordinates', 'instanceMasks'
    _possibleOutputs = {COORDINATES: SetOfCoordinates3D, LABELS: SetOfTomoMasks}

    def _defineParams(self, form):
        self._addModelParams(form)
        form.addSection(label='Detection')
        form.addParam('scoreThreshold', params.FloatParam, default=-1.0, validators=[_ScoreThreshold()],
                      label='Score threshold',
                      help='Smallest score (0-1) of a pick; -1 uses the threshold chosen in training, which keeps '
                           'the target recall of the held-back annotated particles. Lower finds more particles '
                           'and more false ones.')
        form.addParam('filterOutliers', params.BooleanParam, default=False, label='Remove isolated detections?',
                      help='For crowded samples: drop detections whose k-th nearest neighbour is farther than the distance.')
        form.addParam('neighbourNumber', params.IntParam, default=3, condition='filterOutliers',
                      validators=[params.GE(1)], label='Neighbour number (k)')
        form.addParam('outlierDistance', params.FloatParam, default=300.0, condition='filterOutliers',
                      validators=[params.GT(0)], label='Neighbour distance (Å)')
        form.addParallelSection(threads=2, mpi=0)

    def _labelsPath(self, tsId):
        return self._getExtraPath(f'{tsId}_instances.mrc')

    def _tablePath(self, tsId):
        return self._getExtraPath(f'{tsId}_particles.txt')

    def processTomogram(self, tsId):
        from ..core.detection import isolated
        from ..learn.detector import detect_particles
        from ..learn.labels import particle_instances

        tomo, volume = self._readTomogram(tsId)
        sampling = tomo.getSamplingRate()
        threshold = self.scoreThreshold.get()
        found = detect_particles(self._loadedModel(), volume, None if threshold == -1 else threshold)
        centres, scores, strength = found.centres, found.scores, found.strength
        if self.filterOutliers:
            keep = ~isolated(centres, self.neighbourNumber.get(), self.outlierDistance.get() / sampling)
            self.info(f'{tsId}: {np.count_nonzero(~keep)} isolated detections removed')
            centres, scores, strength = centres[keep], scores[keep], strength[keep]
        self.info(f'{tsId}: {len(scores)} particles')
        labels = particle_instances(volume.shape, centres, self.inputModel.get().getDiameter() / sampling)
        dtype = np.uint16 if len(scores) < 2 ** 16 else np.float32  # MRC has no 32-bit integer mode
        info = convert.tomogram_info(tomo)
        write_volume(self._labelsPath(tsId), labels.astype(dtype), info.voxel_size, info.origin)
        table = np.column_stack([np.arange(1, len(scores) + 1), centres, centres * sampling, scores, strength])
        np.savetxt(self._tablePath(tsId), table, fmt=['%d'] + ['%.2f'] * 6 + ['%.4f', '%.2f'],
                   header='label x_px y_px z_px x_A y_A z_A score strength')

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
            threshold = self.scoreThreshold.get()
            chosen = 'the threshold chosen in training' if threshold == -1 else f'threshold {threshold:.3f}'
            summary.append(f'{coords.getSize()} particles detected (scores at least {chosen}).')
        return summary + self._failureSummary()

    def _methods(self):
        if getattr(self, self.COORDINATES, None) is None:
            return []
        return ["Particles were detected with a detector trained in cryoseg: blobs at the particle's scale "
                'scored by small 3-D CNNs, one pick per particle above the score threshold.']


class ProtCryoSegPredictMask(MaskOutputMixin, _ApplyModel):
    """Predicts a mask for each tomogram with a trained mask network, thresholds its probability and
    cleans it up like 'make mask' (specks removed, enclosed holes filled, optional grow/erode)."""
    _label = 'predict mask'

    def _citations(self):
        return ['Cicek2016UNet3D']
    MODEL_KIND = CryoSegModel.MASK

    def _defineParams(self, form):
        self._addModelParams(form)
        form.addParam('inferencePatch', params.IntParam, default=96, validators=[params.GE(16)],
                      expertLevel=params.LEVEL_ADVANCED, label='Inference patch (voxels)',
                      help='The tomogram is processed in overlapping cubes of this side (a multiple of 4); a '
                           'sixth of each side is context that is discarded. Larger cubes are faster but use '
                           'more memory (GPU memory when a GPU is used).')
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

        tomo, volume = self._readTomogram(tsId)
        maps = self._loadedModel().predict(volume, patch=self.inferencePatch.get(),
                                           threads=max(1, self.numberOfThreads.get() // 2))
        sampling = tomo.getSamplingRate()
        mask = postprocess_mask(maps['mask'] > self.threshold.get(), ball_voxels(self.minRegion.get(), sampling),
                                keep_largest=bool(self.keepLargest), fill_holes=bool(self.fillHoles),
                                grow=self.grow.get() / sampling)
        info = convert.tomogram_info(tomo)
        write_volume(self._maskPath(tsId), mask.view(np.int8), info.voxel_size, info.origin)  # MRC mode 0
        self.info(f'{tsId}: the mask keeps {100 * mask.mean():.1f} % of the voxels')

    def _validate(self):
        errors = self._modelErrors()
        if self.inferencePatch.get() % 4:
            errors.append(f'The inference patch must be a multiple of 4 voxels; got {self.inferencePatch.get()}.')
        return errors

    def _summary(self):
        masks = getattr(self, self.OUTPUT_NAME, None)
        return ([f'{masks.getSize()} masks predicted.'] if masks is not None else []) + self._failureSummary()

    def _methods(self):
        if getattr(self, self.OUTPUT_NAME, None) is None:
            return []
        return ['Tomogram masks were predicted with a 3-D U-Net trained in cryoseg and cleaned up morphologically.']
