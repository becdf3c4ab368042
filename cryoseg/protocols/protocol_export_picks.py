"""Export picks: coordinates or subtomograms → a RELION 5 particle STAR or a Dynamo table (.tbl + .vll),
written with :mod:`cryoseg.core.formats` for use outside Scipion."""
import json
import os

import numpy as np
from pyworkflow.object import String
from pyworkflow.protocol import params

from .. import convert
from ..core.errors import CryoSegInputError
from ..core.formats import (PointTable, TomogramGeometry, write_dynamo_table, write_relion5_star,
                            write_volume_list)
from .base import ProtCryoSegBase

FORMATS = ['RELION 5 particle STAR', 'Dynamo table']
RELION5, DYNAMO = range(2)


class ProtCryoSegExportPicks(ProtCryoSegBase):
    """Writes coordinates or subtomograms as a file the next tool reads directly.

    *RELION 5 particle STAR* (``particles.star``): rlnTomoName (the tsId), rlnCenteredCoordinateX/Y/ZAngst
    (Å from the tomogram centre, size/2 on each axis, as RELION 5 defines it), rlnAngleRot/Tilt/Psi
    (when the picks are oriented) and rlnAutopickFigureOfMerit; a second block, cryoseg_tomograms, lists
    each tomogram's size and pixel size (the columns of RELION's tomograms.star). Import it in RELION 5
    with *Import coordinates* or use it as the particles of an optimisation set.

    *Dynamo table* (``particles.tbl`` + ``particles.vll``): one row per particle with tag, tdrot tilt narot,
    tomogram index (column 20: line number of the tomogram in the .vll) and x y z (columns 24-26, voxels
    from the first voxel, as scipion-em-dynamo reads them).

    Subtomograms are written at their coordinates with the rotation of their transforms."""
    _label = 'export picks'

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.exportReport = String('{}')

    def _defineParams(self, form):
        form.addSection(label='Input')
        form.addParam('inputPicks', params.PointerParam, pointerClass='SetOfCoordinates3D, SetOfSubTomograms',
                      important=True, label='Picks',
                      help='Coordinates (any picker) or subtomograms with coordinates.')
        form.addParam('outputFormat', params.EnumParam, choices=FORMATS, default=RELION5,
                      display=params.EnumParam.DISPLAY_HLIST, label='Export to')

    def _insertAllSteps(self):
        self._insertFunctionStep(self.exportStep)

    # ----------------------------------------------------------------------------------- steps
    def exportStep(self):
        tables, tomos = convert.read_picks_in_tomogram_pixels(self.inputPicks.get())
        if not tables:
            raise CryoSegInputError('the input holds no picks')
        order = sorted(tables)
        oriented = any(not np.allclose(t.matrices[:, :3, :3], np.eye(3)) for t in tables.values())
        table = PointTable(
            np.concatenate([[ts_id] * len(tables[ts_id]) for ts_id in order]),
            np.concatenate([tables[ts_id].xyz for ts_id in order]),
            np.concatenate([tables[ts_id].matrices[:, :3, :3] for ts_id in order]) if oriented else None,
            np.concatenate([tables[ts_id].scores for ts_id in order]))
        if self.outputFormat.get() == RELION5:
            geometries = {ts_id: TomogramGeometry(tuple(tomos[ts_id].getDim()), tomos[ts_id].getSamplingRate())
                          for ts_id in order}
            files = [write_relion5_star(self._getExtraPath('particles.star'), table, geometries)]
        else:
            files = [write_dynamo_table(self._getExtraPath('particles.tbl'), table,
                                        {ts_id: index for index, ts_id in enumerate(order, start=1)}),
                     write_volume_list(self._getExtraPath('particles.vll'),
                                       [os.path.abspath(convert.tomogram_path(tomos[ts_id])) for ts_id in order])]
        report = dict(format=FORMATS[self.outputFormat.get()], files=[os.path.abspath(f) for f in files],
                      oriented=oriented,
                      tomograms=[dict(index=index, tsId=ts_id, count=len(tables[ts_id]),
                                      dims=list(map(int, tomos[ts_id].getDim())),
                                      sampling=tomos[ts_id].getSamplingRate())
                                 for index, ts_id in enumerate(order, start=1)])
        self.exportReport.set(json.dumps(report))
        self._store(self.exportReport)
        self.info(f"{len(table)} picks of {len(order)} tomogram(s) written to {', '.join(files)}")

    # ----------------------------------------------------------------------------------- info
    def getReport(self):
        return json.loads(self.exportReport.get() or '{}')

    def _summary(self):
        report = self.getReport()
        if not report:
            return ['Nothing exported yet.']
        total = sum(t['count'] for t in report['tomograms'])
        lines = [f"{total} picks exported as {report['format']}"
                 + (' with orientations' if report['oriented'] else ' (no orientations)') + ':']
        lines += [f"  {path}" for path in report['files']]
        for t in report['tomograms']:
            index = f"index {t['index']}: " if report['format'] == FORMATS[DYNAMO] else ''
            lines.append(f"  {index}{t['tsId']}: {t['count']} picks, {' x '.join(map(str, t['dims']))} px "
                         f"at {t['sampling']:g} Å/px")
        return lines

    def _methods(self):
        report = self.getReport()
        return [f"Picks were exported as {report['format']} with cryoseg."] if report else []

    def _citations(self):
        return ['JimenezDeLaMorena2022']
