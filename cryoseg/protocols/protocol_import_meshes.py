"""Import user points: clicked points that define geometries (vesicles, membranes, filaments) read from
STAR, CSV or text files into a SetOfMeshes, one group per geometry (algorithms.md §3)."""
import fnmatch
import glob
import json
import os
import re

import numpy as np
from pyworkflow.object import String
from pyworkflow.protocol import params
from tomo.objects import SetOfMeshes

from .. import convert
from ..core.errors import CryoSegInputError
from ..core.formats import TomogramGeometry
from ..core.model_workflow import read_user_points
from .base import ProtCryoSegBase

UNITS = ['pixels', 'angstrom']
ORIGINS = ['first voxel is 0', 'first voxel is 1', 'tomogram centre is 0']
FILE_FORMATS = ['by extension', 'IMOD model2point']


def pattern_regex(pattern):
    """Regular expression of a file pattern with shell wildcards and one ``{TS}`` placeholder."""
    parts = pattern.split('{TS}')
    if len(parts) > 2:
        raise CryoSegInputError('the file pattern may contain {TS} only once')
    translated = [fnmatch.translate(part)[4:-3] for part in parts]  # strip fnmatch's '(?s:' and ')\Z'
    return re.compile('(?P<TS>.+?)'.join(translated) + r'\Z') if len(parts) == 2 else \
        re.compile(translated[0] + r'\Z')


class ProtCryoSegImportMeshes(ProtCryoSegBase):
    """Imports the points you clicked on membranes, vesicles or filaments (the "user points" of Dynamo)
    from text files, so that "directional model workflow" can turn them into oriented particles.

    One file per tomogram, matched to the tomogram by the {TS} part of the file pattern (or one STAR
    file whose rlnTomoName column names the tomogram of each point). Accepted formats: STAR
    (rlnCoordinateX/Y/Z, or RELION 5 rlnCenteredCoordinateX/Y/ZAngst; a group column such as cryosegGroup
    or rlnGroupNumber, optional cryosegRole), Dynamo tables (.tbl with their .vll), IMOD model2point text,
    CSV (header x,y,z,group[,role] or those columns in that order) and plain text lines
    "x y z [group] [role]". All points of one group describe one geometry; a point whose role is
    "marker" (or "centre") marks the inside of that geometry (orientations point away from it). Each
    (tomogram, group) becomes one mesh with its own group id: numbered 1, 2, ... by tomogram id and then
    by group label, so the same files always give the same ids."""
    _label = 'import user points'
    OUTPUT_NAME = 'meshes'
    _possibleOutputs = {OUTPUT_NAME: SetOfMeshes}

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.groupTable = String('[]')

    def _defineParams(self, form):
        form.addSection(label='Input')
        form.addParam('inputTomograms', params.PointerParam, pointerClass='SetOfTomograms', important=True,
                      label='Tomograms', help='The tomograms on which the points were clicked.')
        form.addParam('filesPath', params.PathParam, important=True, label='Folder with the point files')
        form.addParam('filesPattern', params.StringParam, default='{TS}*.txt', label='File pattern',
                      help='Shell pattern of the point files inside the folder; {TS} stands for the '
                           'tilt-series id of the tomogram, e.g. "{TS}_points.star" or "clicks_{TS}.csv". '
                           'Without {TS}, the files must be STAR with an rlnTomoName column, or there '
                           'must be a single tomogram.')
        form.addParam('fileFormat', params.EnumParam, choices=FILE_FORMATS, default=0,
                      display=params.EnumParam.DISPLAY_HLIST, label='File format',
                      help='"by extension": .star (RELION: voxel rlnCoordinateX/Y/Z, or RELION 5 '
                           'rlnCenteredCoordinateX/Y/ZAngst, detected and converted with the tomograms\' size '
                           'and pixel size, whatever units and origin say), .tbl (Dynamo table with its '
                           '.vll), .csv, other: "x y z [group] [role]" text. "IMOD model2point": the output '
                           'of model2point [-object] [-contour] model.mod points.txt; each object/contour is '
                           'one group.')
        form.addParam('units', params.EnumParam, choices=['pixels', 'Å'], default=0,
                      display=params.EnumParam.DISPLAY_HLIST, label='Coordinate units')
        form.addParam('pointsSamplingRate', params.FloatParam, default=0.0, condition='units == 0',
                      validators=[params.GE(0)], label='Pixel size of the points (Å)',
                      help='Pixel size of the tomogram you clicked on, e.g. a binned copy. 0: the same '
                           'pixel size as the tomograms above.')
        form.addParam('origin', params.EnumParam, choices=ORIGINS, default=0, label='Coordinate origin',
                      help='"first voxel is 0": Scipion, EMAN, Dynamo exports, RELION 4 pixels. '
                           '"first voxel is 1": IMOD models, MATLAB. "tomogram centre is 0": RELION 5 '
                           'centred coordinates (choose Å units for those).')
        form.addParam('boxSize', params.IntParam, default=32, validators=[params.Positive],
                      label='Box size (px)', help='Stored on the meshes; the model workflow can reuse it.')

    def _insertAllSteps(self):
        self._insertFunctionStep(self.importStep)

    # ----------------------------------------------------------------------------------- steps
    def _matchFiles(self):
        """``{path: tsId or None}``: the files of the pattern and the tsId in their name."""
        folder, pattern = self.filesPath.get() or '', self.filesPattern.get() or ''
        regex = pattern_regex(pattern)
        matched = {}
        for path in sorted(glob.glob(os.path.join(folder, pattern.replace('{TS}', '*')))):
            found = regex.match(os.path.basename(path))
            if found:
                matched[path] = found.group('TS') if '{TS}' in pattern else None
        return matched

    def _toBottomLeftPixels(self, xyz, tomo):
        sampling = tomo.getSamplingRate()
        if self.units.get() == 0:
            xyz = xyz * ((self.pointsSamplingRate.get() or sampling) / sampling)
        else:
            xyz = xyz / sampling
        if self.origin.get() == 1:
            xyz = xyz - 1
        elif self.origin.get() == 2:
            xyz = xyz + np.asarray(tomo.getDim(), float) / 2
        return xyz

    def _pointsByTomogram(self, tomograms):
        """``{tsId: [(xyz, group label, role, already tomogram voxels), ...]}`` from every matched file."""
        byTsId = {}
        geometries = {tsId: TomogramGeometry(tuple(tomo.getDim()), tomo.getSamplingRate())
                      for tsId, tomo in tomograms.items()}
        fileFormat = 'imod' if self.fileFormat.get() == 1 else 'auto'
        for path, tsId in self._matchFiles().items():
            # RELION 5 rows name their tomogram by tsId; a file matched by {TS} may name none
            known = {**geometries, **({'': geometries[tsId]} if tsId in geometries else {})}
            points = read_user_points(path, fileFormat, known)
            if points.convention.startswith('RELION 5'):
                self.info(f'{os.path.basename(path)}: {points.convention}, converted with the tomograms\' size '
                          'and pixel size')
            if tsId is not None:
                owners = [tsId] * len(points.xyz)
            elif points.tomo_names is not None:
                owners = [_tsIdOfName(name, tomograms) for name in points.tomo_names]
            else:
                owners = [next(iter(tomograms))] * len(points.xyz)
            voxels = points.convention.startswith('RELION 5')  # already voxels of the tomogram
            for xyz, label, role, owner in zip(points.xyz, points.groups, points.roles, owners):
                if owner in tomograms:
                    byTsId.setdefault(owner, []).append((xyz, label, role, voxels))
                else:
                    self.warning(f'{os.path.basename(path)}: no tomogram with id {owner!r}; point skipped')
        return byTsId

    def importStep(self):
        tomograms = convert.tomograms_by_tsid(self.inputTomograms.get())
        byTsId = self._pointsByTomogram(tomograms)
        if not byTsId:
            raise CryoSegInputError('no point in the files matches a tomogram of the input set')
        meshes = self._createSetOfMeshes(self.inputTomograms)
        meshes.setSamplingRate(self.inputTomograms.get().getSamplingRate())
        meshes.setBoxSize(self.boxSize.get())
        table = []
        for tsId in sorted(byTsId):
            tomo = tomograms[tsId]
            rows = byTsId[tsId]
            xyz = np.array([r[0] for r in rows], float)
            inFormUnits = ~np.array([r[3] for r in rows], bool)  # RELION 5 points are voxels already
            xyz[inFormUnits] = self._toBottomLeftPixels(xyz[inFormUnits], tomo)
            added = append_point_groups(meshes, tomo, xyz, [r[1] for r in rows], [r[2] for r in rows],
                                        len(table) + 1)
            table += added
            self.info(f'{tsId}: {len(rows)} points in {len(added)} group(s)')
        meshes.setNumberOfMeshes(len(table))
        self.groupTable.set(json.dumps(table))
        self._store(self.groupTable)
        self._defineOutputs(**{self.OUTPUT_NAME: meshes})
        self._defineSourceRelation(self.inputTomograms, meshes)

    # ----------------------------------------------------------------------------------- info
    def _validate(self):
        errors = []
        folder = self.filesPath.get()
        if not folder or not os.path.isdir(folder):
            return [f'The folder {folder!r} does not exist.']
        try:
            matched = self._matchFiles()
        except CryoSegInputError as err:
            return [str(err)]
        if not matched:
            errors.append(f'No file in {folder} matches the pattern {self.filesPattern.get()!r}.')
        tomograms = self.inputTomograms.get()
        if tomograms is not None and '{TS}' not in (self.filesPattern.get() or '') and tomograms.getSize() > 1:
            unnamed = [p for p in matched if not p.lower().endswith('.star')]
            if unnamed:
                errors.append('Several tomograms but no {TS} in the file pattern: use {TS} to match files '
                              'to tomograms, or STAR files with an rlnTomoName column.')
        return errors

    def _summary(self):
        rows = json.loads(self.groupTable.get() or '[]')
        if not rows:
            return ['No points imported yet.']
        lines = [f'{len(rows)} geometries imported:']
        lines += [f"  {r['tsId']} group '{r['label']}' -> id {r['groupId']}: {r['points']} points"
                  + (f", {r['markers']} marker(s)" if r['markers'] else '') for r in rows]
        return lines

    def _methods(self):
        rows = json.loads(self.groupTable.get() or '[]')
        return [f'User points of {len(rows)} geometries were imported with cryoseg.'] if rows else []

    def _citations(self):
        return ['JimenezDeLaMorena2022']


def append_point_groups(meshes, tomo, xyz, labels, roles, firstId, models=None):
    """Append the user points of one tomogram to ``meshes``, one mesh per group label, numbered
    ``firstId``, ``firstId`` + 1, ... in natural label order; ``xyz`` are bottom-left-corner pixels,
    ``roles`` 'point' or 'marker', ``models`` (optional) a model type per point. Points outside the
    tomogram are refused. Returns one summary row per group."""
    tsId = tomo.getTsId()
    _checkInside(tsId, xyz, tomo.getDim())
    ids, table = {}, []
    for label in sorted(set(labels), key=_naturalKey):
        ids[label] = firstId + len(ids)
        count = sum(1 for lab, role in zip(labels, roles) if lab == label and role == 'point')
        table.append(dict(tsId=tsId, label=label, groupId=ids[label], points=count,
                          markers=sum(1 for lab in labels if lab == label) - count))
    convert.append_mesh_points(meshes, tomo, xyz, [ids[label] for label in labels], roles, models)
    return table


def _tsIdOfName(name, tomograms):
    """tsId named by a STAR rlnTomoName value: the tsId itself or a file name whose stem is the tsId."""
    if name in tomograms:
        return name
    stem = os.path.splitext(os.path.basename(name))[0]
    return stem if stem in tomograms else name


def _checkInside(tsId, xyz, dims):
    """Points outside the tomogram mean wrong units, pixel size or origin: refuse them all."""
    outside = np.any((xyz < -0.5) | (xyz > np.asarray(dims, float) - 0.5), axis=1)
    if outside.any():
        first = ', '.join(f'{v:.1f}' for v in xyz[outside][0])
        raise CryoSegInputError(
            f'{tsId}: {int(outside.sum())} of {len(xyz)} points lie outside the tomogram '
            f'({dims[0]} x {dims[1]} x {dims[2]} px; the first at x, y, z = {first} px): check the units, '
            'the pixel size of the points and the coordinate origin')


def _naturalKey(label):
    """Numeric labels in numeric order, before text labels."""
    try:
        return (0, float(label), '')
    except ValueError:
        return (1, 0.0, label)
