"""Directional model workflow: user points → evenly spaced cropping points oriented normal to the fitted
membrane or along the filament (algorithms.md §3)."""
import csv
import json
from contextlib import ExitStack

import numpy as np
from pyworkflow.object import String
from pyworkflow.protocol import params
from tomo.objects import SetOfCoordinates3D, SetOfMeshes

from .. import convert
from ..core.model_workflow import ModelParameters, run_model_workflow, split_groups
from .base import ProtCryoSegPerTomogram

MODEL_CHOICES = ['auto', 'vesicle (sphere)', 'ellipsoidal vesicle', 'membrane by levels', 'general surface',
                 'filament (helical subunits)', 'filament rings']
MODEL_TYPES = ['auto', 'sphere', 'ellipsoid', 'membraneByLevels', 'general', 'filamentHelix', 'filamentRings']
IN_PLANE = ['zero', 'random', 'tangent']
MESH_MODELS = 'modelType in [0, 3, 4]'
FILAMENT_HELIX, FILAMENT_RINGS = 5, 6


class ProtCryoSegModelWorkflow(ProtCryoSegPerTomogram):
    """Turns the points you clicked on a membrane, a vesicle or a filament into evenly spaced particle
    positions ("cropping points") with orientations, natively (no MATLAB or Dynamo needed).

    Each group of points (one mesh of a SetOfMeshes, or one groupId of a SetOfCoordinates3D) is one
    geometry: a vesicle (sphere), an ellipsoidal vesicle (rotated axes), a membrane clicked on several
    z slices (lofted into a triangulated surface), a general surface, or a filament (subunits with
    rise and twist, or rings). The particle z-axis is the outward membrane normal (away from the centre,
    or from the marker point placed inside) or the filament axis; matrices follow Dynamo's ZXZ
    convention, so every tomography plugin reads the same orientation. The output coordinates keep the
    group id of their geometry and get the fit residual (rms distance of the clicked points to the
    fitted geometry, Å) as score. A geometry that cannot be fitted (too few points, all on one slice)
    is listed with its reason and returned in failedMeshes, while the others complete."""
    _label = 'directional model workflow'
    OUTPUT_NAME = 'coordinates'
    FAILED_NAME = 'failedMeshes'
    _possibleOutputs = {OUTPUT_NAME: SetOfCoordinates3D, FAILED_NAME: SetOfMeshes}
    JOURNALED_ATTRIBUTES = ProtCryoSegPerTomogram.JOURNALED_ATTRIBUTES + ('fitReport',)

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.fitReport = String('[]')

    # ----------------------------------------------------------------------------------- form
    def _defineParams(self, form):
        form.addSection(label='Input')
        form.addParam('inputMeshes', params.PointerParam, pointerClass='SetOfMeshes,SetOfCoordinates3D',
                      important=True, label='User points',
                      help='Meshes from "import user points" (or Dynamo vectorial picking), or coordinates '
                           'whose group id marks the geometry each point belongs to.')
        form.addParam('modelType', params.EnumParam, choices=MODEL_CHOICES, default=0, label='Model type',
                      help='auto: the Dynamo model name of each mesh when there is one, else inferred from '
                           'the points (collinear: filament; a sphere or ellipsoid fitting within 3 % of '
                           'its size: vesicle; points on several z slices: membrane by levels; else general).')
        form.addParam('boxSize', params.IntParam, default=0, validators=[params.GE(0)], label='Box size (px)',
                      help='Stored on the output coordinates for extraction. 0: the box size of the input.')
        form.addParam('cropping', params.FloatParam, default=100.0, validators=[params.Positive],
                      label='Spacing (Å)',
                      help='Surfaces: distance between neighbouring cropping points (their mean nearest-'
                           'neighbour distance; none closer than 0.86 x this). Helical filaments: rise '
                           'between subunits along the axis. Rings: distance between rings.')
        form.addParam('surfaceOffset', params.FloatParam, default=0.0, label='Surface offset (Å)',
                      condition='modelType < 5',
                      help='Move the cropping points along the normal: positive outward (e.g. to centre '
                           'the box on a protein standing on the membrane), negative inward.')
        form.addParam('inPlane', params.EnumParam, choices=IN_PLANE, default=0, label='In-plane angle',
                      display=params.EnumParam.DISPLAY_HLIST,
                      help='Rotation of each particle about its z-axis (Dynamo narot). zero: 0. random: '
                           'uniform, reproducible with the seed (avoids preferred in-plane angles in '
                           'averages). tangent: particle x-axis along the surface meridian (tomogram z '
                           'projected) or, for rings, along the filament. Helical filaments always turn '
                           'by the twist; random picks the starting angle.')
        form.addParam('seed', params.IntParam, default=0, label='Random seed',
                      help='Seed of the random in-plane angles and of the point sampling on surfaces.')

        form.addSection(label='Geometry')
        form.addParam('meshParameter', params.FloatParam, default=50.0, validators=[params.Positive],
                      condition=MESH_MODELS, label='Mesh edge (Å)',
                      help='Distance between the control points of the support mesh along each level '
                           '(Dynamo mesh_parameter): smaller gives more triangles.')
        form.addParam('maxTr', params.IntParam, default=100000, validators=[params.GE(8)],
                      condition=MESH_MODELS, label='Maximum number of triangles')
        form.addParam('doRefineMesh', params.BooleanParam, default=False, condition=MESH_MODELS,
                      label='Refine the mesh?',
                      help='Split each triangle in four, rounding the mesh towards a smooth surface.')
        form.addParam('subDivision', params.IntParam, default=2, validators=[params.GE(0)],
                      condition=MESH_MODELS + ' and doRefineMesh', label='Refinement rounds')
        form.addParam('clickScatter', params.FloatParam, default=10.0, validators=[params.GE(0)],
                      label='Click scatter (Å)',
                      help='How far your clicks may stray from the membrane or filament; the curves '
                           'through the points are smoothed by about this much. 0: pass exactly '
                           'through the points.')
        form.addParam('exclusionRadius', params.FloatParam, default=0.0, validators=[params.GE(0)],
                      condition='modelType in [0, 1, 2]', label='Exclusion radius around the marker (Å)',
                      help='Marked vesicles: no cropping point closer than this to the marker point.')
        form.addParam('robustFit', params.BooleanParam, default=True, condition='modelType in [0, 1, 2]',
                      label='Robust fit?', help='Down-weight and drop stray clicks when fitting vesicles.')
        form.addParam('twist', params.FloatParam, default=0.0, condition=f'modelType == {FILAMENT_HELIX}',
                      label='Twist (degrees per subunit)',
                      help='Rotation of consecutive subunits about the filament axis (actin: -166.7).')
        form.addParam('helixRadius', params.FloatParam, default=0.0, validators=[params.GE(0)],
                      condition=f'modelType == {FILAMENT_HELIX}', label='Helix radius (Å)',
                      help='0: subunits on the axis. Otherwise on a helix of this radius around it.')
        form.addParam('ringRadius', params.FloatParam, default=100.0, validators=[params.Positive],
                      condition=f'modelType == {FILAMENT_RINGS}', label='Ring radius (Å)')
        form.addParam('subunitsPerRing', params.IntParam, default=8, validators=[params.Positive],
                      condition=f'modelType == {FILAMENT_RINGS}', label='Subunits per ring')
        form.addParam('ringTwist', params.FloatParam, default=0.0, condition=f'modelType == {FILAMENT_RINGS}',
                      label='Ring twist (degrees)', help='Rotation of each ring relative to the previous one.')

        form.addSection(label='Refinement')
        form.addParam('doRefine', params.BooleanParam, default=True, label='Refine against the density?',
                      help='Rough clicks give rough normals, and real vesicles are not spheres. With this '
                           'on, the membrane is looked for in the tomogram along the normals of the fitted '
                           'model (the extremum of the low-passed density, dark or bright as measured), '
                           'and the cropping points and normals come from a smooth surface through it '
                           '(spherical harmonics for vesicles, a thin-plate surface for membranes, the '
                           'tube axis for filaments). Where the density shows no clear membrane the fitted '
                           'model is kept; the summary counts those places.')
        form.addParam('membraneThickness', params.FloatParam, default=40.0, validators=[params.Positive],
                      condition='doRefine', label='Membrane thickness (Å)',
                      help='Thickness of the membrane (filaments: of the tube wall) to look for; it sets '
                           'the low-pass filter and the distance between the density profiles.')
        form.addParam('refineSearch', params.FloatParam, default=0.0, validators=[params.GE(0)],
                      condition='doRefine', label='Search distance (Å)',
                      help='How far along each normal the membrane is looked for. 0: from the fit (three '
                           'times its residual or the click scatter, at least twice the membrane '
                           'thickness, at most a quarter of the model size).')
        form.addParam('filamentDiameter', params.FloatParam, default=0.0, validators=[params.GE(0)],
                      condition=f'doRefine and modelType in [0, {FILAMENT_HELIX}, {FILAMENT_RINGS}]',
                      label='Filament diameter (Å)',
                      help='Diameter of the tube whose axis is looked for. 0: twice the helix or ring '
                           'radius.')
        form.addParallelSection(threads=2, mpi=0)

    # ----------------------------------------------------------------------------------- steps
    def _tsIdsToProcess(self):
        return sorted(self.inputMeshes.get().getPrecedentsInvolved())

    def _sourceOfOutputs(self):
        return self.inputMeshes

    def _parameters(self, tomo):
        angstrom = self.inputMeshes.get().getSamplingRate() or tomo.getSamplingRate()
        return ModelParameters(
            model_type=MODEL_TYPES[self.modelType.get()], spacing=self.cropping.get() / angstrom,
            offset=self.surfaceOffset.get() / angstrom, in_plane=IN_PLANE[self.inPlane.get()],
            seed=self.seed.get(), mesh_edge=self.meshParameter.get() / angstrom, max_triangles=self.maxTr.get(),
            subdivision=self.subDivision.get() if self.doRefineMesh.get() else 0, robust=self.robustFit.get(),
            exclusion_radius=self.exclusionRadius.get() / angstrom, smoothing=self.clickScatter.get() / angstrom,
            twist=self.twist.get(), helix_radius=self.helixRadius.get() / angstrom,
            ring_radius=self.ringRadius.get() / angstrom, subunits_per_ring=self.subunitsPerRing.get(),
            ring_twist=self.ringTwist.get(),
            shape_xyz=convert.tomogram_info(tomo).shape_xyz, refine=self.doRefine.get(),
            membrane=self.membraneThickness.get() / angstrom, refine_band=self.refineSearch.get() / angstrom,
            filament_radius=self.filamentDiameter.get() / 2 / angstrom)

    def _resultPath(self, tsId):
        return self._getExtraPath(f'{tsId}_cropping.npz')

    def _readInput(self, tsId):
        with self._lock:  # the input set's database is shared by the step threads
            points = self.inputMeshes.get()
            tomo = points.getPrecedentsInvolved()[tsId].clone()
            table = convert.read_tomogram_coordinates(points, tomo)
            roles, models = convert.read_point_annotations(points, tomo)
        return tomo, table, roles, models

    def processTomogram(self, tsId):
        tomo, table, roles, models = self._readInput(tsId)
        groups = split_groups(table.xyz, table.group_ids, roles, models)
        parameters = self._parameters(tomo)
        with ExitStack() as stack:  # memory map: refinement reads only the boxes around the models
            volume = stack.enter_context(convert.open_tomogram(tomo))[0] if parameters.refine else None
            workflow = run_model_workflow(groups, parameters, volume)
        angstrom = self.inputMeshes.get().getSamplingRate() or tomo.getSamplingRate()
        rows = [dict(row, tsId=tsId) for row in workflow.report_rows()]
        for row in rows:
            for key in ('rms', 'median_shift'):
                if key in row:
                    row[key] = round(row[key] * angstrom, 3)  # Å (rms: the coordinates' score)
        positions, matrices, groupIds, rmsPx = workflow.arrays()
        fitted, refined = workflow.surface_points()
        np.savez(self._resultPath(tsId), positions=positions, matrices=matrices, group_ids=groupIds,
                 scores=rmsPx * angstrom, failed_groups=np.array(sorted(workflow.failures), int),
                 shifts=workflow.shifts() * angstrom, fitted_surface=fitted, refined_surface=refined)
        self._recordReport(rows)
        for row in rows:
            if row['status'] == 'ok':
                self.info(f"{tsId} group {row['group']}: {row['model']}, rms {row['rms']} Å, "
                          f"{row['crop_points']} cropping points")
            else:
                self.info(f"{tsId} group {row['group']} FAILED: {row['reason']}")

    def _recordReport(self, rows):
        with self._lock:
            redone = {row['tsId'] for row in rows}  # a tomogram processed again after a kill replaces its rows
            report = [row for row in json.loads(self.fitReport.get() or '[]') if row['tsId'] not in redone] + rows
            report.sort(key=lambda row: (row['tsId'], row['group']))
            self.fitReport.set(json.dumps(report))
            self._store(self.fitReport)
            columns = ['tsId', 'group', 'status', 'model', 'method', 'rms', 'crop_points', 'points_used',
                       'points_total', 'centre', 'radii', 'refined', 'profiles', 'outliers', 'median_shift',
                       'reason']
            with open(self._getExtraPath('fit_report.csv'), 'w', newline='') as handle:
                writer = csv.DictWriter(handle, columns, extrasaction='ignore')
                writer.writeheader()
                writer.writerows(report)

    def registerTomogram(self, tsId):
        result = np.load(self._resultPath(tsId))
        inputSet = self.inputMeshes.get()
        tomo = inputSet.getPrecedentsInvolved()[tsId].clone()
        if len(result['positions']):
            def create():
                coords = self._createSetOfCoordinates3D(convert.precedents_pointer(inputSet))
                coords.setSamplingRate(inputSet.getSamplingRate())
                coords.setBoxSize(self.boxSize.get() or inputSet.getBoxSize() or 32)
                return coords

            self._appendToOutput(self.OUTPUT_NAME, create, lambda coords: convert.append_coordinates(
                coords, tomo, result['positions'], result['matrices'], result['group_ids'], result['scores']), tsId)
        if len(result['failed_groups']):
            self._registerFailedGroups(tsId, tomo, set(result['failed_groups'].tolist()))

    def _registerFailedGroups(self, tsId, tomo, failedGroups):
        _, table, roles, _ = self._readInput(tsId)
        keep = np.isin(table.group_ids, list(failedGroups))
        inputSet = self.inputMeshes.get()

        def create():
            meshes = self._createSetOfMeshes(convert.precedents_pointer(inputSet), suffix='Failed')
            meshes.setSamplingRate(inputSet.getSamplingRate())
            meshes.setBoxSize(inputSet.getBoxSize() or 32)
            return meshes

        self._appendToOutput(self.FAILED_NAME, create, lambda meshes: convert.append_mesh_points(
            meshes, tomo, table.xyz[keep], table.group_ids[keep], np.asarray(roles)[keep]), tsId)

    # ----------------------------------------------------------------------------------- info
    def _validate(self):
        errors = []
        points = self.inputMeshes.get()
        if points is not None and not points.getSize():
            errors.append('The input has no points.')
        if self.modelType.get() == FILAMENT_RINGS and self.subunitsPerRing.get() < 1:
            errors.append('Rings need at least one subunit.')
        return errors

    def getReport(self):
        """The per-geometry fit report: one dict per (tomogram, group)."""
        return json.loads(self.fitReport.get() or '[]')

    def _summary(self):
        report = self.getReport()
        if not report:
            return ['No geometry processed yet.']
        ok = [r for r in report if r['status'] == 'ok']
        lines = [f"{len(ok)} of {len(report)} geometries fitted, "
                 f"{sum(r['crop_points'] for r in ok)} cropping points:"]
        for row in report:
            if row['status'] == 'ok':
                refined = (f", refined against the density: median shift {row['median_shift']} Å, "
                           f"{row['outliers']} of {row['profiles']} profiles without a clear membrane kept "
                           f"on the fit") if row.get('refined') else ''
                lines.append(f"  {row['tsId']} group {row['group']}: {row['model']}, rms {row['rms']} Å, "
                             f"{row['points_used']}/{row['points_total']} points used, "
                             f"{row['crop_points']} cropping points{refined}")
            else:
                lines.append(f"  {row['tsId']} group {row['group']}: FAILED - {row['reason']}")
        return lines + self._failureSummary()

    def _methods(self):
        report = self.getReport()
        if not report:
            return []
        return [f"Oriented cropping points were generated on {sum(r['status'] == 'ok' for r in report)} "
                f"geometries fitted to user points with cryoseg's directional model workflow, at a spacing "
                f"of {self.cropping.get():g} Å, with the particle z-axis along the outward normal (Dynamo "
                f"ZXZ convention)"
                + (", after refining each model against the tomogram's density (membrane found along the "
                   "normals, regularised by spherical harmonics, thin-plate surfaces or penalised splines)."
                   if self.doRefine.get() else ".")]

    def _citations(self):
        return ['CastanoDiez2017Catalogue']
