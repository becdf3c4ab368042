"""Score any picking against reference coordinates: precision, recall, F1 (algorithms.md §6.4).

Needs no machine-learning package: it compares two SetOfCoordinates3D of any origin.
"""
import csv
import json

from pyworkflow.object import String
from pyworkflow.protocol import params

from .. import convert
from ..core.evaluation import Score, score_tomograms
from .base import ProtCryoSegBase

TABLE_HEADER = ('tomogram', 'TP', 'FP', 'FN', 'precision', 'recall', 'F1')


class ProtCryoSegEvaluatePicking(ProtCryoSegBase):
    """Scores picked coordinates against reference coordinates (manual annotations, ground truth or
    another picker) of the same tomograms. Picks and references are paired one-to-one within a
    matching radius, pairing as many as possible and, among those pairings, the closest ones
    (Hungarian assignment). Matched pairs are true positives, unpaired picks false positives and
    unpaired references false negatives; precision = TP / (TP + FP), recall = TP / (TP + FN) and F1
    their harmonic mean, per tomogram and over all. Positions are compared in Å, so the two sets may
    have different samplings (binnings)."""
    _label = 'evaluate picking'

    def _citations(self):
        return ['JimenezDeLaMorena2022']
    _possibleOutputs = {}

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.evaluation = String('{}')

    def _defineParams(self, form):
        form.addSection(label='Input')
        form.addParam('inputCoordinates', params.PointerParam, pointerClass='SetOfCoordinates3D', important=True,
                      label='Picked coordinates', help='The picking to score (any picker).')
        form.addParam('referenceCoordinates', params.PointerParam, pointerClass='SetOfCoordinates3D',
                      important=True, label='Reference coordinates',
                      help='The coordinates taken as true (annotations or ground truth) of the same tomograms '
                           '(matched by tilt-series id).')
        form.addParam('radius', params.FloatParam, default=0.0, validators=[params.GE(0)],
                      label='Matching radius (Å)',
                      help='A pick and a reference closer than this are the same particle; usually the '
                           'particle radius. 0 uses half the box size of the reference set.')

    def _insertAllSteps(self):
        self._insertFunctionStep(self.evaluateStep)

    def matchingRadius(self):
        """The radius in Å: the form value, or half the reference box size."""
        if self.radius.get():
            return self.radius.get()
        reference = self.referenceCoordinates.get()
        return (reference.getBoxSize() or 0) * reference.getSamplingRate() / 2.0

    def evaluateStep(self):
        radius = self.matchingRadius()
        predicted = {ts: table.xyz for ts, table in convert.read_coordinates_angstrom(self.inputCoordinates.get()).items()}
        reference = {ts: table.xyz for ts, table in
                     convert.read_coordinates_angstrom(self.referenceCoordinates.get()).items()}
        scores, total = score_tomograms(predicted, reference, radius)
        for tsId, score in scores.items():
            self.info(f"{tsId}: TP {score.tp}, FP {score.fp}, FN {score.fn}; precision {score.precision:.3f}, "
                      f"recall {score.recall:.3f}, F1 {score.f1:.3f}")
        result = dict(radius=radius, tomograms={ts: s.as_dict() for ts, s in scores.items()}, total=total.as_dict())
        self.evaluation.set(json.dumps(result))
        self._store(self.evaluation)
        with open(self._getExtraPath('evaluation.csv'), 'w', newline='') as handle:
            writer = csv.writer(handle)
            writer.writerow(TABLE_HEADER)
            writer.writerows(scoreRows(result))

    def getEvaluation(self):
        """``{'radius': Å, 'tomograms': {tsId: scores}, 'total': scores}``, empty before the run."""
        return json.loads(self.evaluation.get() or '{}')

    def _validate(self):
        errors = []
        if self.radius.get() == 0 and self.referenceCoordinates.get() is not None \
                and not self.referenceCoordinates.get().getBoxSize():
            errors.append('The reference coordinates have no box size: give the matching radius in Å.')
        return errors

    def _warnings(self):
        picked, reference = self.inputCoordinates.get(), self.referenceCoordinates.get()
        if picked is not None and reference is not None and not set(picked.getTSIds()) & set(reference.getTSIds()):
            return ['The picked and reference coordinates share no tilt-series id: every pick will count as false.']
        return []

    def _summary(self):
        evaluation = self.getEvaluation()
        if not evaluation:
            return ['Not evaluated yet.']
        total = evaluation['total']
        lines = [f"Matching radius {evaluation['radius']:.1f} Å. Overall: precision {total['precision']:.3f}, "
                 f"recall {total['recall']:.3f}, F1 {total['f1']:.3f} (TP {total['tp']}, FP {total['fp']}, "
                 f"FN {total['fn']})."]
        lines += [f"{ts}: P {s['precision']:.3f}, R {s['recall']:.3f}, F1 {s['f1']:.3f}"
                  for ts, s in evaluation['tomograms'].items()]
        return lines

    def _methods(self):
        evaluation = self.getEvaluation()
        if not evaluation:
            return []
        return [f"Picked coordinates were matched one-to-one to reference coordinates within "
                f"{evaluation['radius']:.1f} Å (Hungarian assignment) with cryoseg; F1 = {evaluation['total']['f1']:.3f}."]


def scoreRows(evaluation):
    """Rows of :data:`TABLE_HEADER`: one per tomogram, then 'all'."""
    rows = []
    for name, s in list(evaluation.get('tomograms', {}).items()) + [('all', evaluation.get('total'))]:
        if s is None:
            continue
        score = Score(s['tp'], s['fp'], s['fn'])
        rows.append((name, score.tp, score.fp, score.fn, f'{score.precision:.3f}', f'{score.recall:.3f}',
                     f'{score.f1:.3f}'))
    return rows
