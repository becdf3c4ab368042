"""Pick points: click vesicles, membranes, filaments and particles on tomogram slices inside Scipion."""
import json
import os

import numpy as np
from pyworkflow.object import String
from pyworkflow.protocol import params
from tomo.objects import SetOfCoordinates3D, SetOfMeshes
from tomo.protocols import ProtTomoPicking

from .. import convert
from ..core.errors import CryoSegInputError
from ..core.picks import MODEL_LABELS, PickSession, load_session, save_session, session_from_points
from .base import ProtCryoSegBase
from .protocol_import_meshes import append_point_groups

MODELS = list(MODEL_LABELS)


class ProtCryoSegPickPoints(ProtTomoPicking, ProtCryoSegBase):
    """Click the points of vesicles, membranes and filaments, and particles, on slices of your
    tomograms, without leaving Scipion (no MATLAB).

    Running the protocol opens the list of tomograms; double-click one to open its picking window: a
    slice view (xy, xz or yz) with a slice slider, contrast, low-pass, zoom and pan. Click to add a point
    to the selected group, click near a point to select it, drag it to move it, Delete removes it; the
    points of nearby slices are drawn faded. Each group is one geometry (a vesicle, an ellipsoidal
    vesicle, a membrane clicked on several slices, a general surface or a filament) with an optional
    marker point inside it (the normals point away from it); in particles mode clicks place particles,
    drawn as circles of the particle diameter. Every change is saved at once. Closing a picking window
    registers the outputs: *meshes* (one mesh per group, for "directional model workflow") and
    *coordinates* (the particles, for training, extraction or consensus). Running the protocol again
    continues with what was picked.

    With "Open the picking window?" set to No, the starting points are registered as they are (for
    scripts and workflow templates)."""
    _label = 'pick points'
    MESHES, PARTICLES = 'meshes', 'coordinates'
    _possibleOutputs = {MESHES: SetOfMeshes, PARTICLES: SetOfCoordinates3D}

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.pickTable = String('{}')

    # ----------------------------------------------------------------------------------- form
    def _defineParams(self, form):
        ProtTomoPicking._defineParams(self, form)
        form.addParam('particleDiameter', params.FloatParam, default=250.0, validators=[params.Positive],
                      label='Particle diameter (Å)',
                      help='Drawn around each particle in particles mode; the box size of the outputs is '
                           'this diameter in pixels, rounded up to an even number.')
        form.addParam('defaultModel', params.EnumParam, choices=list(MODEL_LABELS.values()), default=0,
                      label='Model of new groups',
                      help='Each group can be given another model in the window. auto: the directional model '
                           'workflow infers the model from the points.')
        form.addParam('inputPoints', params.PointerParam, pointerClass='SetOfMeshes,SetOfCoordinates3D',
                      allowsNull=True, label='Start from points (optional)',
                      help='Points to start from, e.g. from "import user points" or another picking: each '
                           'mesh becomes a group (with its model, else auto, and its marker), coordinates '
                           'without group become particles. Used for tomograms not picked yet in this run.')
        form.addParam('openWindow', params.BooleanParam, default=True,
                      label='Open the picking window?',
                      help='No: register the starting points without opening a window.')

    def _insertAllSteps(self):
        self._insertFunctionStep(self.pickStep, interactive=self.openWindow.get(), needsGPU=False)

    # ----------------------------------------------------------------------------------- steps
    def sessionPath(self, tsId):
        return self._getExtraPath('picks', f'{tsId}.json')

    def _samplingRate(self):
        return self.inputTomograms.get().getSamplingRate()

    def _diameterPx(self):
        return self.particleDiameter.get() / self._samplingRate()

    def _boxSize(self):
        return int(2 * np.ceil(self._diameterPx() / 2))

    def pickStep(self):
        tomograms = convert.tomograms_by_tsid(self.inputTomograms.get())
        self._startSessions(tomograms)
        if self.openWindow.get():
            from ..viewers.picking_window import open_picking_dialog  # Tk only where a window opens

            try:
                open_picking_dialog(tomograms, self.sessionPath, self.registerOutputs,
                                    MODELS[self.defaultModel.get()])
            except CryoSegInputError as err:
                self.setFailed(str(err))  # pyworkflow does not pass an interactive step's error on
                raise
        self.registerOutputs()

    def _startSessions(self, tomograms):
        """A saved session for every tomogram that has none yet (a continued run keeps its picks),
        holding the starting points of that tomogram if any."""
        starting = self.inputPoints.get()
        involved = starting.getPrecedentsInvolved() if starting is not None else {}
        for tsId, tomo in tomograms.items():
            if os.path.exists(self.sessionPath(tsId)):
                continue
            shape = convert.tomogram_info(tomo).shape_xyz
            if tsId in involved:
                table = convert.read_tomogram_coordinates(starting, involved[tsId].clone())
                roles, models = convert.read_point_annotations(starting, involved[tsId].clone())
                scale = starting.getSamplingRate() / self._samplingRate()
                session = session_from_points(tsId, shape, table.xyz * scale, table.group_ids, roles, models,
                                              self._diameterPx())
                self.info(f'{tsId}: starting from {len(table)} points')
            else:
                session = PickSession(tsId, shape, self._diameterPx())
            save_session(session, self.sessionPath(tsId))

    def registerOutputs(self):
        """(Re)define the outputs from the saved sessions: the groups as meshes, the particles as
        coordinates; an output with nothing in it is removed."""
        tomograms = convert.tomograms_by_tsid(self.inputTomograms.get())
        sessions = {tsId: load_session(self.sessionPath(tsId)) for tsId in tomograms
                    if os.path.exists(self.sessionPath(tsId))}
        meshes = self._createSetOfMeshes(self.inputTomograms)
        coords = self._createSetOfCoordinates3D(self.inputTomograms)
        table = []
        for outputSet in (meshes, coords):
            outputSet.setSamplingRate(self._samplingRate())
            outputSet.setBoxSize(self._boxSize())
        for tsId, session in sessions.items():
            xyz, groupIds, roles, models = session.mesh_rows()
            if len(xyz):
                added = append_point_groups(meshes, tomograms[tsId], xyz, [str(g) for g in groupIds], roles,
                                            len(table) + 1, models)
                groups = [session.group(int(row['label'])) for row in added]
                table += [dict(row, name=group.name, model=MODEL_LABELS[group.model])
                          for row, group in zip(added, groups)]
            if session.particles:
                convert.append_coordinates(coords, tomograms[tsId], session.particles)
        meshes.setNumberOfMeshes(len(table))
        particles = {tsId: len(session.particles) for tsId, session in sessions.items()}
        self._replaceOutput(self.MESHES, meshes)
        self._replaceOutput(self.PARTICLES, coords)
        self.pickTable.set(json.dumps(dict(groups=table, particles=particles)))
        self._store(self.pickTable)
        if not self.openWindow.get() and not table and not sum(particles.values()):
            raise CryoSegInputError('there are no points to register: give starting points or open the window')
        self.info(f'registered {len(table)} groups with {sum(r["points"] for r in table)} points and '
                  f'{sum(particles.values())} particles')

    def _replaceOutput(self, name, outputSet):
        old = getattr(self, name, None)
        if old is not None:
            self.deleteOutput(old)
        if outputSet.getSize():
            outputSet.write()
            self._defineOutputs(**{name: outputSet})
            self._defineSourceRelation(self.inputTomograms, outputSet)
        else:
            outputSet.close()
            if os.path.exists(outputSet.getFileName()):
                os.remove(outputSet.getFileName())

    # ----------------------------------------------------------------------------------- info
    def _validate(self):
        errors = []
        starting = self.inputPoints.get()
        if not self.openWindow.get() and (starting is None or not starting.getSize()):
            errors.append('Without the picking window, give starting points.')
        return errors

    def _summary(self):
        picks = json.loads(self.pickTable.get() or '{}')
        if not picks:
            return ['Nothing registered yet: run the protocol and pick on a tomogram.']
        lines = [f"{len(picks['groups'])} groups, {sum(picks['particles'].values())} particles:"]
        lines += [f"  {r['tsId']} '{r['name']}' ({r['model']}) -> mesh {r['groupId']}: {r['points']} points"
                  + (', marker' if r['markers'] else '') for r in picks['groups']]
        lines += [f'  {tsId}: {count} particles' for tsId, count in picks['particles'].items() if count]
        return lines

    def _methods(self):
        picks = json.loads(self.pickTable.get() or '{}')
        if not picks:
            return []
        return [f"{len(picks['groups'])} geometries and {sum(picks['particles'].values())} particles were "
                f"picked by hand on tomogram slices with cryoseg's picking window."]

    def _citations(self):
        return ['JimenezDeLaMorena2022', 'CastanoDiez2017Catalogue']  # ScipionTomo; Dynamo's geometry models

