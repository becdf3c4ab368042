"""Tomogram masks: IsoNet-style statistics mask, classical texture mask, clean-up (algorithms.md §1)."""
import json

import numpy as np
from pyworkflow.object import String
from pyworkflow.protocol import params

from .. import convert
from ..core.errors import CryoSegInputError
from ..core.extract import rescale_positions
from ..core.mrcio import open_volume
from ..core.statmask import (DEFAULT_BLOCK_ANGSTROM, DEFAULT_MIN_REGION_ANGSTROM, DEFAULT_SIDE_ANGSTROM, METHODS,
                             STD_MODES, Z_CROP_MODES, ball_voxels, make_mask_file, mask_warnings, points_inside,
                             side_from_angstrom)
from .base import MaskOutputMixin, ProtCryoSegPerTomogram

STATISTICS, TEXTURE, BOTH = range(3)
TEXTURE_VOTES = ('variance', 'majority')  # the form's order


class ProtCryoSegMakeMask(MaskOutputMixin, ProtCryoSegPerTomogram):
    """Masks the specimen in each tomogram so that later steps (picking, training sub-volume
    sampling, segmentation) ignore empty ice, the vacuum above and below the lamella and other
    empty regions. The statistics mask is IsoNet's: it keeps regions near dense material (for sparse
    samples such as purified proteins or viruses) that are also textured (for cellular tomograms,
    whose top and bottom slabs are featureless). The texture mask votes on local variance, oriented
    structure and edge strength. Both can be intersected and cleaned up. The output masks (8-bit,
    1 = keep) have the dimensions, sampling and tilt-series id of their tomograms."""
    _label = 'make mask'
    JOURNALED_ATTRIBUTES = ProtCryoSegPerTomogram.JOURNALED_ATTRIBUTES + ('maskStats',)

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.maskStats = String('{}')

    # ----------------------------------------------------------------------------------- form
    def _defineParams(self, form):
        form.addSection(label='Input')
        form.addParam('inputTomograms', params.PointerParam, pointerClass='SetOfTomograms', important=True,
                      label='Tomograms', help='The tomograms to mask.')
        form.addParam('method', params.EnumParam, choices=['statistics (IsoNet)', 'texture', 'both'],
                      default=STATISTICS, display=params.EnumParam.DISPLAY_HLIST, label='Mask method',
                      help='Statistics: IsoNet\'s mask (dense material AND local contrast), fast and '
                           'the one IsoNet users know. Texture: a vote of local variance, oriented '
                           'structure and edges, for specimen against featureless resin, ice or vacuum. '
                           'Both: voxels kept by both masks.')
        form.addParam('inputCoordinates', params.PointerParam, pointerClass='SetOfCoordinates3D',
                      allowsNull=True, label='Coordinates to check (optional)',
                      help='If given, the summary reports for each tomogram how many of these '
                           'coordinates fall inside its mask (matched by tilt-series id), a quick check '
                           'that the mask keeps the particles.')

        form.addSection(label='Statistics mask')
        form.addParam('side', params.FloatParam, default=DEFAULT_SIDE_ANGSTROM, label='Filter side (Å)',
                      condition=f'method != {TEXTURE}',
                      help='Scale of the density and contrast filters; set it close to the size of the '
                           'particles of interest. The tomogram is binned by 2, smoothed with a Gaussian '
                           'of half this side and filtered in boxes twice this side. The side is '
                           'converted to binned voxels (2 × pixel size each); IsoNet\'s --side is that '
                           'number of binned voxels (its default 4 is 80 Å at 10 Å/px).')
        form.addParam('percentile', params.FloatParam, default=100.0, label='Density percentile (%)',
                      condition=f'method != {TEXTURE}', validators=[params.Range(0.01, 100)],
                      help='Approximate percentage of the volume with meaningful content: the max-value '
                           'mask keeps this percentage of the tomogram, where dense (dark) material is '
                           'nearby. For sparse samples (IsoNet\'s default: 50; for a virus: 20). 100 (default) '
                           'disables the density mask, as IsoNet advises for cellular tomograms: it compares '
                           'absolute densities, which drift across a lamella, and drops particles there.')
        form.addParam('stdMode', params.EnumParam, choices=['factor of the overall std', 'percentile',
                                                            'textured class (Otsu)'],
                      default=STD_MODES.index('otsu'), display=params.EnumParam.DISPLAY_HLIST,
                      condition=f'method != {TEXTURE}', label='Contrast criterion',
                      help='How the standard-deviation mask decides what is textured. Textured class (default): '
                           'the voxels are split into two classes, featureless (vacuum, ice, resin: noise '
                           'alone) and textured, at Otsu\'s threshold of the logarithm of the local standard '
                           'deviation; it needs no assumption on how much of the tomogram is specimen. '
                           'Factor: keep regions whose local standard deviation exceeds the threshold times '
                           'the overall standard deviation of the tomogram (IsoNet documentation). '
                           'Percentile: keep a fixed percentage of the most textured voxels (current IsoNet '
                           'code; with side 4 binned voxels and 50 % it gives IsoNet\'s mask).')
        form.addParam('threshold', params.FloatParam, default=1.0, validators=[params.GE(0)],
                      condition=f'method != {TEXTURE} and stdMode == 0', label='Contrast threshold',
                      help='Factor of the overall standard deviation. Smaller keeps more (it enlarges '
                           'the mask), larger keeps less; 0 disables the contrast mask. Empty ice and '
                           'the empty slabs at the top and bottom of a tomogram are removed by this mask.')
        form.addParam('robustStd', params.BooleanParam, default=True,
                      condition=f'method != {TEXTURE} and stdMode == 0', expertLevel=params.LEVEL_ADVANCED,
                      label='Robust overall std?',
                      help='Yes: the overall standard deviation is estimated as 1.4826 × the median '
                           'absolute deviation of the smoothed tomogram, which equals the standard '
                           'deviation for ordinary (Gaussian) contrast but ignores a minority of extreme '
                           'voxels. Gold beads, carbon, contamination and the ice surfaces inflate the '
                           'plain standard deviation so much that threshold 1 then drops many particles. '
                           'No: the plain standard deviation, as in IsoNet (use a threshold near 0.5).')
        form.addParam('stdPercentile', params.FloatParam, default=50.0, validators=[params.Range(0.01, 100)],
                      condition=f'method != {TEXTURE} and stdMode == 1', label='Contrast percentile (%)',
                      help='Percentage of the volume kept by the contrast mask; 100 disables it.')
        form.addParam('isonetBinning', params.BooleanParam, default=False, condition=f'method != {TEXTURE}',
                      expertLevel=params.LEVEL_ADVANCED, label='IsoNet binning?',
                      help='No: the tomogram is binned by 2 by block means. Yes: with a Gaussian anti-aliasing '
                           'filter first, as IsoNet does (three times slower; after the smoothing the two '
                           'differ little). Needed for exactly IsoNet\'s mask (with side 80 Å at 10 Å/px, '
                           'density 50 % and contrast percentile 50 %, no clean-up).')
        form.addParam('zCrop', params.FloatParam, default=0.0, validators=[params.Range(0, 0.49)],
                      condition=f'method != {TEXTURE}', label='Z crop (fraction)',
                      help='Fraction of the slices removed at each end in z, whatever the data (e.g. 0.1 '
                           'removes the top and bottom 10 %). 0 keeps all slices.')
        form.addParam('zCropMode', params.EnumParam, choices=list(Z_CROP_MODES), default=0,
                      display=params.EnumParam.DISPLAY_HLIST, condition=f'method != {TEXTURE} and zCrop > 0',
                      expertLevel=params.LEVEL_ADVANCED, label='Z crop convention',
                      help='isonet1: the fraction is removed at each end. isonet2: IsoNet 2 halves the '
                           'fraction before applying it (its default 0.2 removes 10 % at each end).')

        form.addSection(label='Texture mask')
        form.addParam('textureVote', params.EnumParam,
                      choices=['local variance (cryo-ET)', 'majority of all features'], default=0,
                      display=params.EnumParam.DISPLAY_HLIST, condition=f'method != {STATISTICS}',
                      label='Texture decision',
                      help='Local variance: the specimen is where the local variance is high (Otsu '
                           'threshold over the whole tomogram). Majority: local variance, orientation '
                           'coherence and edge strength (and the band-pass energy if chosen) vote, as in '
                           'Catena for FIB-SEM volumes. At cryo-ET signal-to-noise ratios the orientation '
                           'and edge features respond to the noise as much as to the specimen: on the '
                           'sample tomograms the majority keeps about half of the particles and 13-15 % of '
                           'the empty ice, the local variance all particles and under 5 % of the empty ice.')
        form.addParam('blockSize', params.FloatParam, default=DEFAULT_BLOCK_ANGSTROM,
                      condition=f'method != {STATISTICS}',
                      label='Variance window (Å)',
                      help='Side of the window in which the local variance is measured; a few times '
                           'the size of the structures that make up the specimen.')
        form.addParam('textureSigma', params.FloatParam, default=10.0,
                      condition=f'method != {STATISTICS} and textureVote == 1',
                      label='Structure scale (Å)',
                      help='Scale of the gradients whose orientation coherence is measured (oriented '
                           'structure such as membranes and filaments).')
        form.addParam('edgeSigma', params.FloatParam, default=5.0,
                      condition=f'method != {STATISTICS} and textureVote == 1',
                      label='Edge scale (Å)', help='Scale of the edge-strength (gradient magnitude) filter.')
        form.addParam('useDog', params.BooleanParam, default=False,
                      condition=f'method != {STATISTICS} and textureVote == 1',
                      label='Add band-pass (DoG) energy vote?',
                      help='Adds a fourth vote: difference-of-Gaussians band energy.')
        form.addParam('threeD', params.BooleanParam, default=False, condition=f'method != {STATISTICS}',
                      expertLevel=params.LEVEL_ADVANCED, label='3-D texture features?',
                      help='Measure variance and orientation in 3-D instead of in each xy slice.')

        form.addSection(label='Clean-up')
        form.addParam('doCleanup', params.BooleanParam, default=True, label='Clean up the mask?',
                      help='Remove specks, fill enclosed holes and optionally grow or erode the mask.')
        form.addParam('minRegion', params.FloatParam, default=DEFAULT_MIN_REGION_ANGSTROM, condition='doCleanup',
                      label='Smallest region kept (Å)',
                      help='Connected regions smaller than a ball of this diameter are removed. 0 keeps all.')
        form.addParam('openRadius', params.FloatParam, default=0.0, condition='doCleanup',
                      label='Opening radius (Å)', expertLevel=params.LEVEL_ADVANCED,
                      help='Opening of each xy slice with a disk of this radius removes thin protrusions; '
                           '0 disables it.')
        form.addParam('keepLargest', params.BooleanParam, default=False, condition='doCleanup',
                      label='Keep only the largest region?',
                      help='For a single lamella or cell: drop every region but the biggest one.')
        form.addParam('fillHoles', params.BooleanParam, default=True, condition='doCleanup',
                      label='Fill enclosed holes?',
                      help='Background entirely surrounded by the mask (not touching the tomogram '
                           'faces) becomes part of it, e.g. the lumen of a vesicle.')
        form.addParam('grow', params.FloatParam, default=0.0, condition='doCleanup', label='Grow by (Å)',
                      help='Grow the mask by this distance (negative values erode it); 0 leaves it.')
        form.addParallelSection(threads=2, mpi=0)

    # ----------------------------------------------------------------------------------- settings
    def maskSettings(self, sampling):
        """``make_mask`` keyword arguments for a tomogram of ``sampling`` Å/px (form values in Å)."""
        method = METHODS[self.method.get()]
        statistics = dict(side=side_from_angstrom(self.side.get(), sampling),
                          percentile=self.percentile.get(), threshold=self.threshold.get(),
                          std_mode=STD_MODES[self.stdMode.get()], std_percentile=self.stdPercentile.get(),
                          z_crop=self.zCrop.get(), z_crop_mode=Z_CROP_MODES[self.zCropMode.get()],
                          std_estimate='robust' if self.robustStd else 'plain',
                          binning='gaussian' if self.isonetBinning else 'mean')
        texture = dict(block_size=max(2, int(round(self.blockSize.get() / sampling))),
                       texture_sigma=self.textureSigma.get() / sampling,
                       edge_sigma=self.edgeSigma.get() / sampling,
                       use_dog=bool(self.useDog), three_d=bool(self.threeD),
                       vote=TEXTURE_VOTES[self.textureVote.get()])
        postprocess = None
        if self.doCleanup:
            postprocess = dict(min_region_size=ball_voxels(self.minRegion.get(), sampling),
                               open_radius=int(round(self.openRadius.get() / sampling)),
                               keep_largest=bool(self.keepLargest), fill_holes=bool(self.fillHoles),
                               grow=self.grow.get() / sampling)
        return dict(method=method, statistics=statistics if method != 'texture' else None,
                    texture=texture if method != 'statistics' else None, postprocess=postprocess)

    def _tomograms(self):
        return convert.tomograms_by_tsid(self.inputTomograms.get())

    # ----------------------------------------------------------------------------------- steps
    def processTomogram(self, tsId):
        with self._lock:  # the project database is not shared between threads
            tomo = self._tomograms()[tsId]
            coordinates = self._coordinatesOf(tsId)
        sampling = tomo.getSamplingRate()
        settings = self.maskSettings(sampling)
        self.info(f"{tsId}: {settings['method']} mask ({convert.tomogram_path(tomo)})")
        fraction = make_mask_file(convert.tomogram_path(tomo), self._maskPath(tsId), **settings)
        stats = {'fraction': fraction}
        if coordinates is not None:
            xyz, coordSampling = coordinates
            with open_volume(self._maskPath(tsId)) as (mask, _):
                inside = points_inside(mask, rescale_positions(xyz, coordSampling, sampling))
            stats.update(inside=int(inside.sum()), total=len(inside))
        self.info(f"{tsId}: the mask keeps {100 * fraction:.2f} % of the voxels"
                  + ''.join(f'; WARNING: {w}' for w in mask_warnings(fraction)))
        self._recordStats(tsId, stats)

    def _coordinatesOf(self, tsId):
        """``(xyz, sampling)`` of the optional coordinates of this tomogram, or None. Call under the lock."""
        coordSet = self.inputCoordinates.get()
        if coordSet is None:
            return None
        if getattr(self, '_coordinateTables', None) is None:  # read once, shared by the threads
            self._coordinateTables = convert.read_coordinates(coordSet)
        table = self._coordinateTables.get(tsId)
        return (table.xyz if table is not None else np.zeros((0, 3))), coordSet.getSamplingRate()

    # ----------------------------------------------------------------------------------- bookkeeping
    def getMaskStats(self):
        """``{tsId: {'fraction': kept fraction, 'inside': n, 'total': n}}`` of the masked tomograms."""
        return json.loads(self.maskStats.get() or '{}')

    def _recordStats(self, tsId, stats):
        with self._lock:
            allStats = self.getMaskStats()
            allStats[tsId] = stats
            self.maskStats.set(json.dumps(allStats))
            self._store(self.maskStats)

    # ----------------------------------------------------------------------------------- info
    def _validate(self):
        tomos = self.inputTomograms.get()
        if tomos is None:
            return []
        try:
            self.maskSettings(tomos.getSamplingRate())
        except CryoSegInputError as err:
            return [str(err)]
        return []

    def _warnings(self):
        coordSet, tomos = self.inputCoordinates.get(), self.inputTomograms.get()
        if coordSet is None or tomos is None:
            return []
        if not set(coordSet.getTSIds()) & set(tomos.getTSIds()):
            return ['None of the coordinates belongs to a tomogram of the input (no common tilt-series id).']
        return []

    def _summary(self):
        summary = []
        for tsId, stats in self.getMaskStats().items():
            line = f"{tsId}: mask keeps {100 * stats['fraction']:.1f} % of the voxels"
            if 'total' in stats:
                line += f"; {stats['inside']} of {stats['total']} coordinates inside"
            summary.append(line + ''.join(f' — WARNING: {w}' for w in mask_warnings(stats['fraction'])))
        return summary + self._failureSummary()

    def _methods(self):
        if getattr(self, self.OUTPUT_NAME, None) is None:
            return []
        method = METHODS[self.method.get()]
        text = {'statistics': "IsoNet's statistics mask (max-value and standard-deviation masks)",
                'texture': 'a texture mask (local variance, orientation coherence and edge strength)',
                'both': "the intersection of IsoNet's statistics mask and a texture mask"}[method]
        return [f'Tomogram masks were computed with {text} using cryoseg.']

    def _citations(self):
        return ['Liu2022IsoNet'] if self.method.get() != TEXTURE else []
