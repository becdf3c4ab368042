"""Segdiam pick: segmentation picking with particle-diameter statistics (algorithms.md §2)."""
import json
import os

import numpy as np
from pyworkflow.object import Float, Integer, String
from pyworkflow.protocol import params
from tomo.objects import SetOfCoordinates3D

from .. import convert
from ..core.mrcio import read_volume
from ..core.segdiam import (SMPD_SHRINK1, PickSettings, SizeEstimate, components_table, estimate_particle_size,
                            estimate_summary, in_range, load_components, pick_components, save_components)
from .base import ProtCryoSegPerTomogram

DIAMETER_ATTRIBUTE = '_cryosegDiameter'
CONTRASTS = ['dark', 'light']
BACKENDS = ['kmeans', 'hac']
ESTIMATORS = ['equal_volume', 'policy']
THRESHOLDS = ['kmeans', 'otsu']
ROUNDINGS = ['up', 'closest']


class ProtCryoSegSegDiamPick(ProtCryoSegPerTomogram):
    """Finds blob-like particles in tomograms without a template and without knowing their size.
    Each tomogram is denoised at a working pixel size, thresholded and split into connected blobs;
    touching particles are then split by a blob detector tuned to the blobs' median diameter and a
    watershed, so that every particle gets a centre and a diameter. The diameters of ALL tomograms are then clustered and
    the size populations that stand out (gold beads, contamination, debris, noise blobs) are
    rejected by robust z-scores, as in SIMPLE's segdiam picker. From the accepted particles the
    protocol derives a box size (px) and a mask diameter (Å) for the rest of the pipeline, and
    returns the blobs whose diameter lies in the accepted range as coordinates. Each coordinate
    carries its diameter in Å (attribute _cryosegDiameter) and a score (the blob's mean contrast in
    units of the background noise)."""
    _label = 'segdiam pick'
    OUTPUT_NAME = 'coordinates'
    _possibleOutputs = {OUTPUT_NAME: SetOfCoordinates3D, 'boxSize': Integer, 'maskDiameter': Float}
    JOURNALED_ATTRIBUTES = ProtCryoSegPerTomogram.JOURNALED_ATTRIBUTES + ('estimateMessage',)

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.estimateMessage = String()

    # ----------------------------------------------------------------------------------- form
    def _defineParams(self, form):
        form.addSection(label='Input')
        form.addParam('inputTomograms', params.PointerParam, pointerClass='SetOfTomograms', important=True,
                      label='Tomograms', help='The tomograms to pick. The statistics use all of them together.')
        form.addParam('inputMasks', params.PointerParam, pointerClass='SetOfTomoMasks', allowsNull=True,
                      label='Masks (optional)',
                      help='Pick only where the mask is non-zero (e.g. the output of "make mask"). Masks '
                           'are matched to tomograms by tilt-series id; a tomogram without a mask is '
                           'picked whole.')
        form.addParam('contrast', params.EnumParam, choices=['dark particles', 'light particles'], default=0,
                      display=params.EnumParam.DISPLAY_HLIST, label='Particle contrast',
                      help='Dark: particles darker than the ice, as in most reconstructions. Light: '
                           'inverted tomograms.')
        line = form.addLine('Diameter range (Å)',
                            help='Only blobs whose diameter lies in this range are measured and picked; '
                                 'SIMPLE uses 20-500 Å. The statistics then narrow it to the accepted '
                                 'particle population.')
        line.addParam('minDiameter', params.FloatParam, default=20.0, label='min')
        line.addParam('maxDiameter', params.FloatParam, default=500.0, label='max')
        form.addParam('workingSize', params.FloatParam, default=SMPD_SHRINK1, validators=[params.Positive],
                      label='Working pixel size (Å)',
                      help='Tomograms with a finer pixel are binned to this size before picking (never '
                           'finer than the tomogram\'s own pixel). SIMPLE uses 4 Å.')
        form.addParam('lowpass', params.FloatParam, default=60.0, validators=[params.GE(0)],
                      label='Low-pass resolution (Å)',
                      help='Gaussian low-pass applied before thresholding (half amplitude at this '
                           'resolution). About a third to half of the particle diameter works well '
                           '(e.g. 90 Å for particles of 120-260 Å); lower it for small particles, raise it '
                           'for noisy tomograms. It never goes finer than four working pixels (twice the '
                           'Nyquist period): on binned tomograms that is the low-pass used.')
        form.addParam('clustering', params.EnumParam, choices=['k-means (10 clusters)', 'HAC'], default=0,
                      display=params.EnumParam.DISPLAY_HLIST, label='Diameter clustering',
                      help='k-means: 10 size clusters, the smallest and the largest are always rejected '
                           '(SIMPLE default). HAC: clusters merged within one standard deviation, as '
                           'many as the data have, none rejected for being at the edge.')
        form.addParam('inPlane', params.BooleanParam, default=True, label='Use in-plane diameters?',
                      help='The missing wedge stretches objects along z; the in-plane (xy) diameter of the '
                           'largest cross-section is then the reliable one. No: use the 3-D diameter.')

        form.addSection(label='Advanced')
        form.addParam('sigmaCrit', params.FloatParam, default=2.0, validators=[params.Positive],
                      expertLevel=params.LEVEL_ADVANCED, label='Rejection z-score',
                      help='A size cluster is rejected when its mean diameter or its (small) population '
                           'lies this many robust standard deviations from the median (SIMPLE: 2.0).')
        form.addParam('foregroundFraction', params.FloatParam, default=0.10, validators=[params.Range(0.001, 0.9)],
                      expertLevel=params.LEVEL_ADVANCED, label='Foreground fraction target',
                      help='The threshold is the k-means cluster boundary whose foreground fraction is '
                           'closest to this value (SIMPLE uses 0.17 on micrographs; tomograms hold far '
                           'less particle volume). The blob diameters are measured at half their own '
                           'contrast, so they do not depend much on this choice.')
        form.addParam('minPeak', params.FloatParam, default=5.0, validators=[params.GE(0)],
                      expertLevel=params.LEVEL_ADVANCED, label='Minimum peak contrast (σ)',
                      help='A blob is kept only if its brightest voxel stands this many robust standard '
                           'deviations (1.4826 x median absolute deviation of the low-passed tomogram) above '
                           'the background. The threshold above always cuts into noise and ice texture; '
                           'their many faint blobs would otherwise outnumber the particles and win the '
                           'diameter statistics. 0 keeps every blob (SIMPLE).')
        form.addParam('split', params.BooleanParam, default=True, expertLevel=params.LEVEL_ADVANCED,
                      label='Split touching particles?',
                      help='Yes: the diameters of the thresholded blobs set the scale of a blob detector '
                           '(difference of Gaussians) whose seeds split the foreground by a watershed of the '
                           'low-passed tomogram, so crowded particles that touch each other or a membrane '
                           'are picked one by one; the scale follows the measured median diameter. No: '
                           'SIMPLE\'s picker alone (two erosions and connected blobs).')
        form.addParam('minSeed', params.FloatParam, default=9.0, validators=[params.GE(0)],
                      expertLevel=params.LEVEL_ADVANCED, label='Minimum seed contrast (σ)', condition='split',
                      help='A particle centre must stand this many robust standard deviations above the '
                           'band-passed (particle-scale) tomogram. 9 suits cellular tomograms (crowded '
                           'cytoplasm, empty ice around the lamella); lower it (e.g. 5) for sparse or '
                           'low-contrast particles, raise it for fewer, surer picks.')
        form.addParam('thresholdMethod', params.EnumParam, choices=['k-means (SIMPLE)', 'Otsu'], default=0,
                      expertLevel=params.LEVEL_ADVANCED, label='Threshold method')
        form.addParam('estimator', params.EnumParam,
                      choices=['equal volume (unbiased)', 'SIMPLE (2 x max radius + 2 px)'], default=0,
                      expertLevel=params.LEVEL_ADVANCED, label='Diameter estimator',
                      help='Equal volume: each blob is grown back to half its contrast and its diameter '
                           'is that of the ball (disk) of the same volume (area); unbiased on balls. '
                           'SIMPLE: twice the largest centre-to-voxel distance of the eroded blob plus two '
                           'working pixels; it reads ideal balls too small.')
        form.addParam('boxRounding', params.EnumParam, choices=['up (policy)', 'closest (SIMPLE code)'],
                      default=0, expertLevel=params.LEVEL_ADVANCED, label='Box size rounding',
                      help='The box is 1.5 x the largest accepted diameter, rounded to an FFT-friendly size: '
                           'up to the next one (policy), or to the closest one (SIMPLE\'s code).')
        form.addParam('fallbackAll', params.BooleanParam, default=False, expertLevel=params.LEVEL_ADVANCED,
                      label='Use all diameters if every cluster is rejected?',
                      help='No: report that no estimate is possible. Yes: derive the box from all diameters '
                           '(with a warning).')
        form.addParallelSection(threads=2, mpi=0)

    # ----------------------------------------------------------------------------------- steps
    def _insertAllSteps(self):
        """Pick every tomogram in parallel, then one statistics step, then register each tomogram."""
        tsIds = self._tsIdsToProcess()
        pickSteps = [self._insertFunctionStep(self.processTomogramStep, tsId, prerequisites=[], needsGPU=False)
                     for tsId in tsIds]
        statistics = self._insertFunctionStep(self.statisticsStep, prerequisites=pickSteps, needsGPU=False)
        registerSteps = [self._insertFunctionStep(self.registerTomogramStep, tsId, prerequisites=[statistics],
                                                  needsGPU=False) for tsId in tsIds]
        self._insertFunctionStep(self.closeOutputStep, prerequisites=registerSteps, needsGPU=False)

    def _settings(self):
        return PickSettings(working_size=self.workingSize.get(), contrast=CONTRASTS[self.contrast.get()],
                            lowpass=self.lowpass.get(), threshold=THRESHOLDS[self.thresholdMethod.get()],
                            foreground_fraction=self.foregroundFraction.get(),
                            estimator=ESTIMATORS[self.estimator.get()], in_plane=self.inPlane.get(),
                            diameter_range=(self.minDiameter.get(), self.maxDiameter.get()),
                            min_peak=self.minPeak.get(), split=self.split.get(), min_seed=self.minSeed.get())

    def _componentsPath(self, tsId):
        return self._getExtraPath(f'{tsId}_components.npz')

    def _estimatePath(self):
        return self._getExtraPath('size_estimate.json')

    def _tomograms(self):
        return convert.tomograms_by_tsid(self.inputTomograms.get())

    def _maskPath(self, tsId):
        if self.inputMasks.get() is None:
            return None
        masks = convert.tomograms_by_tsid(self.inputMasks.get())
        return convert.tomogram_path(masks[tsId]) if tsId in masks else None

    def processTomogram(self, tsId):
        tomo = self._tomograms()[tsId]
        maskPath = self._maskPath(tsId)
        mask = read_volume(maskPath, np.uint8)[0] if maskPath else None
        with convert.open_tomogram(tomo) as (data, _):
            found = pick_components(data, tomo.getSamplingRate(), self._settings(), mask=mask)
        self.info(f"{tsId}: {len(found)} blobs in the diameter range"
                  + (' (inside the mask)' if maskPath else ''))
        save_components(self._componentsPath(tsId), found)

    def statisticsStep(self):
        picked = {tsId: load_components(self._componentsPath(tsId)) for tsId in self._tsIdsToProcess()
                  if tsId not in self.getFailures()}
        diameters = np.concatenate([found.diameter for found in picked.values()] or [np.zeros(0)])
        sampling = self.inputTomograms.get().getSamplingRate()
        estimate = estimate_particle_size(diameters, sampling, BACKENDS[self.clustering.get()],
                                          self.sigmaCrit.get(), ROUNDINGS[self.boxRounding.get()],
                                          'all' if self.fallbackAll.get() else None)
        summary = estimate_summary(estimate)
        with open(self._estimatePath(), 'w') as handle:
            json.dump(summary, handle, indent=1)
        rows, start = [], 0
        for tsId, found in picked.items():
            accepted = (estimate.filter.accepted[start:start + len(found)] if estimate.filter is not None
                        else np.zeros(len(found), bool))
            rows.append((tsId, found, accepted))
            start += len(found)
        components_table(rows).write(self._getExtraPath('diameters.star'), tableName='diameters')
        if not isinstance(estimate, SizeEstimate):
            self.estimateMessage.set(f'No size estimate: {estimate.reason}')
            self._store(self.estimateMessage)
            self.warning(self.estimateMessage.get())
            return
        for warning in estimate.warnings:
            self.warning(warning)
        self.info(f"box {estimate.box} px, mask diameter {estimate.mask_diameter:.1f} Å, re-pick range "
                  f"[{estimate.minv:.1f}, {estimate.maxv:.1f}] Å")
        with self._lock:
            self._defineOutputs(boxSize=Integer(estimate.box), maskDiameter=Float(estimate.mask_diameter))

    def _estimate(self):
        if not os.path.exists(self._estimatePath()):
            return None
        with open(self._estimatePath()) as handle:
            return json.load(handle)

    def registerTomogram(self, tsId):
        estimate = self._estimate()
        if not estimate or not estimate['ok']:
            return
        found = load_components(self._componentsPath(tsId))
        kept = found.select(in_range(found.diameter, (estimate['minv'], estimate['maxv'])))  # stage 6 re-pick
        tomo = self._tomograms()[tsId]
        tomos = self.inputTomograms.get()

        def create():
            output = self._createSetOfCoordinates3D(self.inputTomograms)
            output.setSamplingRate(tomos.getSamplingRate())
            output.setBoxSize(estimate['box'])
            return output

        def fill(output):
            convert.append_coordinates(output, tomo, kept.xyz, scores=kept.score,
                                       attributes={DIAMETER_ATTRIBUTE: kept.diameter})

        self._appendToOutput(self.OUTPUT_NAME, create, fill, tsId)
        self.info(f"{tsId}: {len(kept)} of {len(found)} blobs in the accepted range")

    # ----------------------------------------------------------------------------------- info
    def _validate(self):
        errors = []
        if self.minDiameter.get() is not None and self.maxDiameter.get() is not None \
                and not 0 <= self.minDiameter.get() < self.maxDiameter.get():
            errors.append('The diameter range needs 0 <= min < max (Å).')
        return errors + self._maskErrors()

    def _maskErrors(self):
        """Masks must have the size and pixel size of the tomograms they belong to."""
        tomos, masks = self.inputTomograms.get(), self.inputMasks.get()
        if tomos is None or masks is None:
            return []
        masksByTsId = convert.tomograms_by_tsid(masks)
        for tsId, tomo in convert.tomograms_by_tsid(tomos).items():
            mask = masksByTsId.get(tsId)
            if mask is not None and (tuple(mask.getDim()) != tuple(tomo.getDim())
                                     or abs(mask.getSamplingRate() - tomo.getSamplingRate()) > 1e-3):
                return [f'The mask of {tsId} ({"x".join(map(str, mask.getDim()))} px at '
                        f'{mask.getSamplingRate():g} Å/px) does not match its tomogram '
                        f'({"x".join(map(str, tomo.getDim()))} px at {tomo.getSamplingRate():g} Å/px): '
                        'use masks made on these tomograms.']
        return []

    def _warnings(self):
        masks = self.inputMasks.get()
        if masks is None:
            return []
        missing = sorted(set(self._tsIdsToProcess()) - set(masks.getTSIds()))
        return [f'No mask for {", ".join(missing)}: these tomograms are picked whole.'] if missing else []

    def _summary(self):
        lines = []
        if self.estimateMessage.get():
            lines.append(self.estimateMessage.get())
        estimate = self._estimate()
        if estimate and 'before' in estimate:
            before = estimate['before']
            lines.append(f"Diameters of all blobs: n={before['n']}, median {before['median']:.1f} Å, "
                         f"range {before['minv']:.1f}-{before['maxv']:.1f} Å")
        if estimate and estimate['ok']:
            after = estimate['after']
            lines.append(f"Accepted: n={after['n']}, median {after['median']:.1f} Å, "
                         f"range {after['minv']:.1f}-{after['maxv']:.1f} Å")
        if hasattr(self, 'boxSize'):
            lines.append(f"Box size: {self.boxSize.get()} px; mask diameter: {self.maskDiameter.get():.1f} Å")
        if hasattr(self, self.OUTPUT_NAME):
            lines.append(f"Picked {getattr(self, self.OUTPUT_NAME).getSize()} particles")
        return lines + self._failureSummary()

    def _methods(self):
        if not hasattr(self, 'boxSize'):
            return []
        return [f"Particles were picked by segmentation and their diameters clustered (SIMPLE's segdiam "
                f"policy, {BACKENDS[self.clustering.get()]} clustering) with cryoseg; the accepted population "
                f"gave a box of {self.boxSize.get()} px and a mask diameter of {self.maskDiameter.get():.0f} Å."]

    def _citations(self):
        return ['Reboul2018SIMPLE']
