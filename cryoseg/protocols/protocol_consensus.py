"""Picking consensus over several SetOfCoordinates3D, and duplicate removal within one set.

Thin layer over :mod:`cryoseg.core.consensus`: positions are read in Å (Scipion's stored positions
times each set's sampling) so pickings at different binnings combine, and written back in the
pixels of the first (reference) set with its box size and sampling.
"""
import json
import logging

import numpy as np
from pyworkflow.object import String
from pyworkflow.protocol import params
from pyworkflow.protocol.constants import LEVEL_ADVANCED
from tomo.objects import SetOfCoordinates3D

from ..convert import (append_coordinates_angstrom, precedents_pointer, read_coordinates_angstrom,
                       tomograms_by_tsid)
from ..core.consensus import Picks, consensus, remove_duplicates
from .base import ProtCryoSegBase

logger = logging.getLogger(__name__)

MODE_CHOICES = ['>=', '=']
MODE_KEYS = ['ge', 'eq']
ORIENTATION_CHOICES = ['full rotation', 'normal only']


def _has_orientations(tables):
    """True when any coordinate of the set carries a rotation other than the identity."""
    return any(len(t) and not np.allclose(t.matrices[:, :3, :3], np.eye(3), atol=1e-6)
               for t in tables.values())


def _picks_of_set(coord_set):
    """``({tsId: Picks in Å}, oriented)`` of one SetOfCoordinates3D."""
    tables = read_coordinates_angstrom(coord_set)
    oriented = _has_orientations(tables)
    return {ts_id: Picks(t.xyz, t.matrices if oriented else None, t.scores, t.group_ids)
            for ts_id, t in tables.items()}, oriented


def _voted_rows(clusters):
    """Output rows of consensus clusters: the score is the number of pickings that found them."""
    return clusters.xyz, clusters.matrices, clusters.group_ids, clusters.votes


class ProtCryoSegConsensusBase(ProtCryoSegBase):
    """Shared output writing (not a protocol users see)."""
    _label = None

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.report = String()

    def _buildOutput(self, name, template, rows, oriented):
        """A written SetOfCoordinates3D of ``rows`` ({tsId: (xyz Å, matrices, group ids, scores)})
        shaped like ``template`` (its pixels, box size, sampling and tomograms), and the tsIds left
        out because the template's tomograms do not include them."""
        tomos = tomograms_by_tsid(template.getPrecedents())
        output = self._createSetOfCoordinates3D(precedents_pointer(template), f'_{name}')
        output.setSamplingRate(template.getSamplingRate())
        output.setBoxSize(template.getBoxSize())
        skipped = []
        for ts_id, (xyz, matrices, group_ids, scores) in rows.items():
            if not len(xyz):
                continue
            if ts_id not in tomos:
                skipped.append(ts_id)
                continue
            append_coordinates_angstrom(output, tomos[ts_id], xyz, matrices if oriented else None,
                                        group_ids, scores)
        output.write()
        return output, skipped

    def _registerOutputs(self, outputs):
        """Register complete outputs together, so a failure never leaves some of them behind."""
        self._defineOutputs(**outputs)
        for output in outputs.values():
            for source in self._sources():
                self._defineSourceRelation(source, output)

    def getReport(self):
        return json.loads(self.report.get() or '{}')

    def _storeReport(self, report):
        self.report.set(json.dumps(report))
        self._store(self.report)


class ProtCryoSegPickingConsensus(ProtCryoSegConsensusBase):
    """Keeps the particles that enough pickings agree on.

    Picks of two or more pickings (any picker, any binning of the same tomograms) that lie within the
    matching radius of each other are grouped, with at most one pick per picking in a group, so a
    particle's votes never exceed the number of pickings. The grouping does not depend on the order
    of the pickings or of their picks. The output holds one coordinate per group with enough votes,
    at the mean position (not rounded), with the mean orientation when the pickings carry
    orientations, in the pixels, box size and sampling of the first picking; its score is the number
    of pickings that found it.
    """
    _label = 'picking consensus'
    _possibleOutputs = {'consensusCoordinates': SetOfCoordinates3D,
                        'differenceCoordinates': SetOfCoordinates3D}

    def _defineParams(self, form):
        form.addSection(label='Input')
        form.addParam('inputCoordinates', params.MultiPointerParam, pointerClass='SetOfCoordinates3D',
                      important=True, label='Pickings to combine',
                      help='Two or more sets of 3D coordinates of the same tomograms (matched by tsId). '
                           'They may come from different pickers and different binnings: positions are '
                           'compared in Å. The first one is the reference: the output uses its pixel '
                           'size, box size and tomograms.')
        form.addParam('consensusRadius', params.FloatParam, default=60.0,
                      validators=[params.Positive], label='Matching radius (Å)',
                      help='Picks of different pickings closer than this distance, in Å, are taken as the '
                           'same particle. About the particle radius is a good choice.')
        form.addParam('consensus', params.IntParam, default=-1, label='Consensus (votes)',
                      help='How many pickings must have found a particle: -1 = all of them (AND), '
                           '1 = any of them (OR), k = at least k (or exactly k, see the mode).')
        form.addParam('mode', params.EnumParam, choices=MODE_CHOICES, default=0,
                      display=params.EnumParam.DISPLAY_HLIST, expertLevel=LEVEL_ADVANCED,
                      label='Consensus mode',
                      help='>= keeps particles with at least the consensus number of votes; = keeps those '
                           'with exactly that number (e.g. 1 with = lists what only one picker found).')
        form.addParam('orientationMode', params.EnumParam, choices=ORIENTATION_CHOICES, default=0,
                      display=params.EnumParam.DISPLAY_HLIST, label='Combine orientations as',
                      help='For oriented picks. "full rotation": the mean rotation (chordal L2 mean). '
                           '"normal only": the mean particle normal (e.g. membrane proteins, whose '
                           'in-plane angle is arbitrary); the in-plane angle of the first picking is kept.')
        form.addParam('angularGate', params.FloatParam, default=0.0, label='Maximum angle (deg)',
                      expertLevel=LEVEL_ADVANCED,
                      help='Oriented picks whose orientations (or normals) differ by more than this angle '
                           'are not matched. 0 = no limit.')
        form.addParam('outputDifference', params.BooleanParam, default=False,
                      label='Output the picks found only by one picking?',
                      help='Also output the picks of one picking that no other picking confirms.')
        form.addParam('differenceInput', params.IntParam, default=1, condition='outputDifference',
                      label='Picking number (1 = first)',
                      help='Which picking to list the unconfirmed picks of; in its own pixels and box size.')

    # ------------------------------------------------------------------ steps
    def _insertAllSteps(self):
        self._insertFunctionStep(self.consensusStep)

    def _inputSets(self):
        return [pointer.get() for pointer in self.inputCoordinates]

    def _sources(self):
        return list(self.inputCoordinates)

    def consensusStep(self):
        coord_sets = self._inputSets()
        picked = [_picks_of_set(s) for s in coord_sets]
        oriented = any(o for _, o in picked)
        for index, (_, has) in enumerate(picked):
            logger.info(f"input {index + 1}: {coord_sets[index].getSize()} coordinates at "
                        f"{coord_sets[index].getSamplingRate()} Å/px{' with orientations' if has else ''}")
        gate = self.angularGate.get() or None
        result = consensus([p for p, _ in picked], self.consensusRadius.get(), self.consensus.get(),
                           MODE_KEYS[self.mode.get()], angular_gate=gate if oriented else None,
                           axis_mode=self.orientationMode.get() == 1)
        selected = result.selected()
        outputs = {}
        outputs['consensusCoordinates'], skipped = self._buildOutput(
            'consensusCoordinates', coord_sets[0], {t: _voted_rows(c) for t, c in selected.items()}, oriented)
        report = {'n_sets': len(coord_sets), 'oriented': oriented, 'skipped': skipped, 'tomograms': {}}
        jaccard, votes = result.jaccard(), result.vote_counts()
        for ts_id in result.clusters:
            report['tomograms'][ts_id] = {
                'inputs': [len(p.get(ts_id, ())) for p, _ in picked],
                'clusters': len(result.clusters[ts_id]), 'consensus': len(selected[ts_id]),
                'jaccard': None if np.isnan(jaccard[ts_id]) else jaccard[ts_id],
                'votes': votes[ts_id].tolist()}
        if self.outputDifference:
            index = self.differenceInput.get() - 1
            difference = result.difference(index)
            report['difference'] = {'input': index + 1,
                                    'counts': {t: len(c) for t, c in difference.items()}}
            outputs['differenceCoordinates'], _ = self._buildOutput(
                'differenceCoordinates', coord_sets[index],
                {t: _voted_rows(c) for t, c in difference.items()}, picked[index][1])
        self._registerOutputs(outputs)
        self._storeReport(report)
        for line in self._summary():
            logger.info(line)

    # ------------------------------------------------------------------ info
    def _validate(self):
        errors = []
        coord_sets = [p.get() for p in self.inputCoordinates]
        count = len(coord_sets)
        if count < 2:
            errors.append('Select at least two sets of coordinates to combine.')
        if any(s is None for s in coord_sets):
            errors.append('One of the selected inputs no longer exists.')
        k = self.consensus.get()
        if count >= 2 and not (k == -1 or 1 <= k <= count):
            errors.append(f'Consensus must be -1 (all pickings) or between 1 and the number of '
                          f'pickings ({count}); it is {k}.')
        if self.angularGate.get() is not None and not 0 <= self.angularGate.get() <= 180:
            errors.append('The maximum angle must be between 0 and 180 degrees (0 = no limit).')
        if self.outputDifference and not 1 <= self.differenceInput.get() <= max(count, 1):
            errors.append(f'The picking number for the unconfirmed picks must be between 1 and {count}.')
        return errors

    def _summary(self):
        report = self.getReport()
        if not report:
            return ['Not run yet.']
        n_sets = report['n_sets']
        k = self.consensus.get()
        lines = [f"{n_sets} pickings, radius {self.consensusRadius.get():g} Å, votes "
                 f"{MODE_CHOICES[self.mode.get()]} {n_sets if k == -1 else k}"
                 f"{', orientations averaged' if report['oriented'] else ''}"]
        for ts_id, row in report['tomograms'].items():
            jaccard = 'n/a' if row['jaccard'] is None else f"{row['jaccard']:.2f}"
            lines.append(f"{ts_id}: inputs {' / '.join(map(str, row['inputs']))} -> {row['clusters']} "
                         f"particles, {row['consensus']} kept; Jaccard (found by all / all) {jaccard}")
        total = sum(row['consensus'] for row in report['tomograms'].values())
        lines.append(f"Consensus: {total} coordinates")
        if 'difference' in report:
            count = sum(report['difference']['counts'].values())
            lines.append(f"Only in picking {report['difference']['input']}: {count} coordinates")
        if report['skipped']:
            lines.append(f"Not written (tomogram not among the first picking's tomograms): "
                         f"{', '.join(report['skipped'])}")
        return lines

    def _methods(self):
        report = self.getReport()
        if not report:
            return []
        return [f"A consensus of {report['n_sets']} pickings was computed with cryoseg (matching "
                f"radius {self.consensusRadius.get():g} Å, at most one pick per picking per particle)."]

    def _citations(self):
        return ['JimenezDeLaMorena2022']


class ProtCryoSegRemoveDuplicates(ProtCryoSegConsensusBase):
    """Merges picks of one set that are closer than a radius (the same particle picked twice).

    Picks are grouped so that every two picks of a group are within the radius (a row of picks along
    a filament is therefore not collapsed into one). Each group keeps either its best-scoring pick,
    with all its attributes, or the mean position and orientation.
    """
    _label = 'remove duplicate coordinates'
    _possibleOutputs = {'coordinates': SetOfCoordinates3D}

    def _defineParams(self, form):
        form.addSection(label='Input')
        form.addParam('inputCoordinates', params.PointerParam, pointerClass='SetOfCoordinates3D',
                      important=True, label='Coordinates')
        form.addParam('radius', params.FloatParam, default=60.0, validators=[params.Positive],
                      label='Duplicate radius (Å)',
                      help='Picks closer than this distance, in Å, are the same particle.')
        form.addParam('keep', params.EnumParam, choices=['best score', 'mean'], default=0,
                      display=params.EnumParam.DISPLAY_HLIST, label='Keep',
                      help='"best score": the pick with the highest score of each group, unchanged. '
                           '"mean": the mean position (and orientation) of the group.')

    def _insertAllSteps(self):
        self._insertFunctionStep(self.removeDuplicatesStep)

    def _sources(self):
        return [self.inputCoordinates]

    def removeDuplicatesStep(self):
        coord_set = self.inputCoordinates.get()
        picks, oriented = _picks_of_set(coord_set)
        keep = 'best' if self.keep.get() == 0 else 'mean'
        rows, report = {}, {'tomograms': {}}
        for ts_id, tomo_picks in picks.items():
            clusters = remove_duplicates(tomo_picks, self.radius.get(), keep=keep)
            if keep == 'best':
                chosen = clusters.representative[:, 1]
                rows[ts_id] = (tomo_picks.xyz[chosen],
                               tomo_picks.matrices[chosen] if oriented else None,
                               tomo_picks.group_ids[chosen], tomo_picks.scores[chosen])
            else:
                rows[ts_id] = (clusters.xyz, clusters.matrices, clusters.group_ids, clusters.scores)
            report['tomograms'][ts_id] = [len(tomo_picks), len(clusters)]
        self._registerOutputs({'coordinates': self._buildOutput('coordinates', coord_set, rows, oriented)[0]})
        self._storeReport(report)

    def _summary(self):
        report = self.getReport()
        if not report:
            return ['Not run yet.']
        lines = [f"{ts_id}: {before} -> {after} coordinates"
                 for ts_id, (before, after) in report['tomograms'].items()]
        removed = sum(b - a for b, a in report['tomograms'].values())
        return lines + [f"{removed} duplicates removed (radius {self.radius.get():g} Å)"]

    def _citations(self):
        return ['JimenezDeLaMorena2022']
