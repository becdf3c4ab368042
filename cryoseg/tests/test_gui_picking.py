"""Interactive picking on a real (virtual) display, driven by events, feeding the directional model workflow.

The pytest test starts an Xvfb server and runs this module as a script in a subprocess. The script
builds a Scipion project with one phantom tomogram and launches "pick points" the way Scipion does
(``Project.launchProtocol``: a ``pw_protocol_run.py`` subprocess), with ``SCIPION_PYTHON`` pointing at
this module's ``--drive`` entry. That wrapper creates the process's Tk root, schedules a driver on it and
then runs ``pw_protocol_run.py`` unchanged: the protocol's interactive step opens the tomogram list on
that root, and the driver double-clicks the tomogram, clicks at the pixel positions of known phantom
voxels on the real matplotlib canvas (Tk ``event_generate``), steps slices with the keyboard, changes
orientation, group, model and mode, selects and drags a point, deletes one, takes screenshots and
closes the windows, which registers the outputs. A second launch continues: the window must show what
was picked. Then the directional model workflow runs on the picked meshes. The pytest side reads the
project and checks the outputs (voxel positions, groups, models, marker, particles) and the fitted
vesicle (radius within 2 %, normals within 5°) against the phantom's ground truth.
"""
import argparse
import json
import os
import runpy
import subprocess
import sys
import time
import traceback

import numpy as np
import pytest

PROJECT_NAME = 'cryoseg_picking_gui_test'
PHANTOM = dict(shape_zyx=(96, 160, 160), ice_fraction=0.8, particles_per_class=(3, 2, 2), filament=False)
SAMPLING = 10.0
SCENARIO_VARIABLE = 'CRYOSEG_PICKING_SCENARIO'
REPORT_NAME = 'picking_report.json'
LEVELS = (-8, 0, 8)  # z of the clicked slices, from the vesicle centre
CLICKS_PER_LEVEL = 8
TOLERANCE = 0.3  # voxels: a click lands within half a screen pixel of its target (about 4 pixels per voxel)


# ------------------------------------------------------------------------------- pytest side
def test_pick_points_window_driven_by_events_then_model_workflow():
    from pyworkflow.project import Manager

    from cryoseg import convert
    from cryoseg.core.model_workflow import vesicle_normals
    from cryoseg.core.phantom import read_truth
    from cryoseg.tests.test_gui import start_xvfb

    server, display = start_xvfb()
    if server is None:
        pytest.skip(f'GUI test needs a virtual X server: {display}')
    try:
        env = dict(os.environ, DISPLAY=display, MPLBACKEND='Agg',
                   SCIPION_PYTHON=f'{sys.executable} -m cryoseg.tests.test_gui_picking --drive')
        run = subprocess.run([sys.executable, '-m', 'cryoseg.tests.test_gui_picking', '--project', PROJECT_NAME],
                             env=env, capture_output=True, text=True, timeout=400)
    finally:
        server.terminate()
        server.wait()
    output = f'--- stdout\n{run.stdout[-4000:]}\n--- stderr\n{run.stderr[-4000:]}'
    project = Manager().loadProject(PROJECT_NAME)
    report_path = os.path.join(project.getPath(), 'report', 'gui', REPORT_NAME)
    assert os.path.exists(report_path), output
    with open(report_path) as handle:
        report = json.load(handle)
    assert report['errors'] == [], '\n'.join(report['errors']) + output
    assert run.returncode == 0, output
    scenario = report['scenario']

    # the driver saw the window react: keyboard stepping, orientation, the reopened window's picks
    first, second = report['runs']
    assert first['slice after keys'] == scenario['key target'], first
    assert first['hidden group selectable'] is False, first
    assert first['groups after delete'] == ['vesicle 1', scenario['filament name']], first
    assert abs(first['zoom'] - 1.25 ** 3) < 0.01, first  # three wheel notches, 1.25 times each
    assert second['loaded counts'] == first['final counts'], (first, second)

    runs = {run.getObjLabel(): run for run in project.getRuns()}
    pick, workflow = runs['pick points'], runs['directional model workflow']
    assert pick.getStatus() == 'interactive', pick.getStatus()  # waits, as Scipion pickers do, to be reopened
    meshes = pick.meshes
    table = convert.read_coordinates(meshes)['TS_01']
    roles, models = convert.read_point_annotations(meshes, meshes.getPrecedentsInvolved()['TS_01'])
    roles, models = np.asarray(roles), np.asarray(models)
    expected = {int(group): np.asarray(points, float) for group, points in scenario['groups'].items()}
    assert sorted(np.unique(table.group_ids)) == sorted(expected)
    for group, points in expected.items():
        mine = (table.group_ids == group) & (roles == 'point')
        assert mine.sum() == len(points), (group, mine.sum(), len(points))
        gaps = np.linalg.norm(table.xyz[mine][:, None] - points[None], axis=2)
        assert gaps.min(axis=1).max() < TOLERANCE and gaps.min(axis=0).max() < TOLERANCE, (group, gaps.min(axis=1))
        assert set(models[table.group_ids == group]) == {scenario['models'][str(group)]}
    markers = table.xyz[roles == 'marker']
    assert len(markers) == 1 and np.linalg.norm(markers[0] - scenario['marker']) < TOLERANCE, markers
    assert not np.any(np.linalg.norm(table.xyz - scenario['deleted'], axis=1) < 2), 'a deleted point came back'
    particles = convert.read_coordinates(pick.coordinates)['TS_01'].xyz
    targets = np.asarray(scenario['particles'], float)
    assert len(particles) == len(targets)
    assert np.linalg.norm(particles[:, None] - targets[None], axis=2).min(axis=1).max() < TOLERANCE
    assert pick.coordinates.getBoxSize() == scenario['box']
    assert f"  TS_01 '{scenario['filament name']}' (filament) -> mesh 2: 3 points" in pick.summary()

    # the directional model workflow recovers the vesicle from the picked points
    truth = read_truth(os.path.join(project.getPath(), 'phantoms', 'TS_01_truth.json'))
    vesicle = next(v for v in truth.vesicles if v['kind'] == 'sphere')
    fit = next(row for row in workflow.getReport() if row['group'] == 1)
    radius = vesicle['radii'][0] / truth.voxel_size
    assert fit['status'] == 'ok' and fit['model'] == 'sphere', fit
    assert abs(np.mean(fit['radii']) - radius) < 0.02 * radius, (fit['radii'], radius)
    crops = convert.read_coordinates(workflow.coordinates)['TS_01']
    inside = crops.group_ids == 1
    normals, _ = vesicle_normals(vesicle, truth.voxel_size, crops.xyz[inside])
    angles = np.degrees(np.arccos(np.clip(np.sum(normals * crops.matrices[inside, 2, :3], axis=1), -1, 1)))
    assert inside.sum() > 50 and angles.max() < 5.0, (inside.sum(), angles.max())

    from PIL import Image
    assert len(report['screenshots']) >= 3
    for path in report['screenshots']:
        with Image.open(path) as image:
            low, high = image.convert('L').getextrema()
            assert image.width >= 600 and image.height >= 400 and high - low > 50, path


# ----------------------------------------------------------------------------- script side
def plan_scenario(truth, report_dir):
    """What the driver clicks (voxel positions from the phantom's ground truth) and what the outputs
    must then hold."""
    vesicle = next(v for v in truth.vesicles if v['kind'] == 'sphere')
    centre = np.asarray(vesicle['centre'], float)
    radius = vesicle['radii'][0] / truth.voxel_size
    centre_slice = int(round(centre[2]))
    levels = []
    for number, step in enumerate(LEVELS):
        z = centre_slice + step
        ring = np.sqrt(radius ** 2 - (z - centre[2]) ** 2)
        angles = np.radians(np.arange(CLICKS_PER_LEVEL) * 360 / CLICKS_PER_LEVEL + 20 * number)
        levels.append([[centre[0] + ring * np.cos(a), centre[1] + ring * np.sin(a), z] for a in angles])
    y_slice = int(round(centre[1]))  # one point clicked in the xz view, on the slice through the centre
    z_side = centre_slice + 4
    ring = np.sqrt(radius ** 2 - (y_slice - centre[1]) ** 2 - (z_side - centre[2]) ** 2)
    side = [centre[0] - ring, y_slice, z_side]
    ring = np.sqrt(radius ** 2 - (centre_slice - centre[2]) ** 2)  # one more on the centre slice, dragged there
    angle = np.radians(222.5)
    dragged = [centre[0] + ring * np.cos(angle), centre[1] + ring * np.sin(angle), centre_slice]
    filament = [[12.0 + 8 * i, 12.0 + 3 * i, centre_slice] for i in range(3)]
    particles = [[float(p['centre'][0]), float(p['centre'][1]), int(round(p['centre'][2]))]
                 for p in truth.particles[:3]]
    return {'report_dir': report_dir, 'levels': levels, 'side': side, 'dragged': dragged,
            'drag_start': [dragged[0] + 4, dragged[1] - 3, centre_slice],
            'deleted': [centre[0] + 6, centre[1] + 5, centre_slice],
            'marker': [centre[0], centre[1], centre_slice], 'filament': filament,
            'particles_first': particles[:2], 'particles': particles, 'centre_slice': centre_slice,
            'groups': {'1': sum(levels, []) + [dragged, side], '2': filament},
            'models': {'1': 'sphere', '2': 'filamentHelix'}, 'filament name': 'actin filament',
            'box': int(2 * np.ceil(250.0 / SAMPLING / 2)),
            'key target': centre_slice + LEVELS[2]}


def build_and_run(project_name):
    """The script: project, phantom, import, two driven runs of pick points, the model workflow."""
    from pyworkflow.project import Manager
    from tomo.protocols import ProtImportTomograms

    from cryoseg.core.phantom import write_sample_data
    from cryoseg.protocols import ProtCryoSegModelWorkflow, ProtCryoSegPickPoints

    manager = Manager()
    if manager.hasProject(project_name):
        manager.deleteProject(project_name)
    project = manager.createProject(project_name)
    os.chdir(project.getPath())
    report_dir = os.path.join(project.getPath(), 'report', 'gui')
    os.makedirs(report_dir, exist_ok=True)
    report = dict(errors=[], screenshots=[], runs=[])
    report_path = os.path.join(report_dir, REPORT_NAME)

    def launch(prot, label, scenario=None):
        prot.setObjLabel(label)
        project.saveProtocol(prot)
        if scenario is not None:
            path = os.path.join(report_dir, f'scenario_{len(report["runs"]) + 1}.json')
            with open(path, 'w') as handle:
                json.dump(scenario, handle)
            os.environ[SCENARIO_VARIABLE] = path
        try:
            project.launchProtocol(prot, wait=True)
        finally:
            os.environ.pop(SCENARIO_VARIABLE, None)
        if scenario is not None:
            with open(path.replace('scenario_', 'driven_')) as handle:
                driven = json.load(handle)
            report['errors'] += driven.pop('errors')
            report['screenshots'] += driven.pop('screenshots')
            report['runs'].append(driven)
        if prot.isFailed():
            report['errors'].append(f'{label} failed: {prot.getErrorMessage()}')
        return prot

    try:
        data_dir = os.path.join(project.getPath(), 'phantoms')
        truth = write_sample_data(data_dir, count=1, seed=1, voxel_size=SAMPLING, **PHANTOM)['TS_01']
        tomograms = launch(project.newProtocol(ProtImportTomograms, filesPath=data_dir, filesPattern='{TS}.mrc',
                                               samplingRate=SAMPLING), 'import tomograms')
        scenario = plan_scenario(truth, report_dir)
        report['scenario'] = scenario
        pick = project.newProtocol(ProtCryoSegPickPoints, particleDiameter=250.0)
        pick.inputTomograms.set(tomograms)
        pick.inputTomograms.setExtended('Tomograms')
        launch(pick, 'pick points', dict(scenario, run=1))
        launch(project.getProtocol(pick.getObjId()), 'pick points', dict(scenario, run=2))
        pick = project.getProtocol(pick.getObjId())
        workflow = project.newProtocol(ProtCryoSegModelWorkflow, cropping=40.0, numberOfThreads=1)
        workflow.inputMeshes.set(pick)
        workflow.inputMeshes.setExtended('meshes')
        launch(workflow, 'directional model workflow')
    except Exception:
        report['errors'].append(traceback.format_exc())
    with open(report_path, 'w') as handle:
        json.dump(report, handle, indent=1)
    return 1 if report['errors'] else 0


# ------------------------------------------------------------------- driver (protocol process)
class PickingDriver:
    """Runs in the protocol's process: acts on the picking dialog and window through Tk events."""

    def __init__(self, root, scenario):
        self.root, self.scenario = root, scenario
        self.run = scenario['run']
        self.result = dict(errors=[], screenshots=[])
        self.actions = self.script()

    def start(self):
        self.root.after(200, self.next)

    def next(self):
        try:
            delay = next(self.actions)
        except StopIteration:
            return self.write()
        except Exception:
            self.result['errors'].append(f'driver, run {self.run}:\n{traceback.format_exc()}')
            self.write()
            for window in list(self.root.children.values()):  # let the protocol step end
                window.destroy()
            return
        self.root.after(int(delay * 1000), self.next)

    def write(self):
        path = os.path.join(self.scenario['report_dir'], f'driven_{self.run}.json')
        with open(path, 'w') as handle:
            json.dump(self.result, handle, indent=1)

    # ------------------------------------------------------------------------------ helpers
    def wait_for(self, find, what, timeout=60):
        """Yield delays until ``find()`` returns something; that is the generator's value."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            found = find()
            if found is not None:
                return found
            yield 0.2
        raise RuntimeError(f'timed out waiting for {what}')

    def dialog(self):
        from cryoseg.viewers.picking_window import PickingDialog

        return next((w for w in self.root.children.values() if isinstance(w, PickingDialog)), None)

    def canvas_point(self, window, xyz):
        """Tk pixel position on the canvas of a voxel position on the current slice and view."""
        from cryoseg.core.picks import view_coordinates

        u, v, depth = view_coordinates([xyz], window.orientation)[0]
        assert abs(depth - window.index) < 0.5, f'{xyz} is not on slice {window.index} of {window.orientation}'
        x, y = window.ax.transData.transform((u, v))
        widget = window.canvas.get_tk_widget()
        return int(round(x)), int(round(widget.winfo_height() - y))

    def press(self, window, xyz, release_at=None):
        """Button press at ``xyz``, optional drag to ``release_at``, release."""
        widget = window.canvas.get_tk_widget()
        x, y = self.canvas_point(window, xyz)
        widget.event_generate('<Motion>', x=x, y=y)
        widget.event_generate('<ButtonPress-1>', x=x, y=y)
        if release_at is not None:
            x1, y1 = self.canvas_point(window, release_at)
            for fraction in (0.3, 0.6, 1.0):
                widget.event_generate('<Motion>', x=int(round(x + (x1 - x) * fraction)),
                                      y=int(round(y + (y1 - y) * fraction)), state=0x100)
            x, y = x1, y1
        widget.event_generate('<ButtonRelease-1>', x=x, y=y)

    def key(self, window, keysym):
        widget = window.canvas.get_tk_widget()
        widget.focus_force()
        widget.event_generate('<KeyPress>', keysym=keysym)
        widget.event_generate('<KeyRelease>', keysym=keysym)

    def go_to_slice(self, window, index):
        window.slider.set(index)  # the slider's command redraws, as when it is dragged
        self.root.update()
        assert window.index == index, (window.index, index)

    def click_list_row(self, listbox, row):
        x, y, width, height = listbox.bbox(row)
        listbox.event_generate('<ButtonPress-1>', x=x + 5, y=y + height // 2)
        listbox.event_generate('<ButtonRelease-1>', x=x + 5, y=y + height // 2)

    def screenshot(self, window, name):
        from PIL import ImageGrab

        window.lift()
        window.update()
        x, y = window.winfo_rootx(), window.winfo_rooty()
        path = os.path.join(self.scenario['report_dir'], f'picking_{self.run}_{name}.png')
        ImageGrab.grab(bbox=(x, y, x + window.winfo_width(), y + window.winfo_height()),
                       xdisplay=os.environ['DISPLAY']).save(path)
        self.result['screenshots'].append(path)

    # ------------------------------------------------------------------------------- script
    def open_window(self):
        dialog = yield from self.wait_for(self.dialog, 'the tomogram list')
        yield 0.5
        tree = dialog.tree
        item = next(i for i in tree.get_children() if tree.item(i)['text'] == 'TS_01')
        tree.selection_set(item)
        tree.focus(item)
        x, y, width, height = tree.bbox(item)
        for _ in range(2):  # a double click, as the X server sends it
            tree.event_generate('<ButtonPress-1>', x=x + 10, y=y + height // 2)
            tree.event_generate('<ButtonRelease-1>', x=x + 10, y=y + height // 2)
        window = yield from self.wait_for(lambda: dialog.windows.get('TS_01'), 'the picking window')
        yield 1.0
        return dialog, window

    def close(self, dialog, window):
        window.close()  # as the window manager's close button does (WM_DELETE_WINDOW)
        yield 0.5
        self.write()  # closing the list ends the step and this process
        dialog.cancel()
        yield 0.2

    def script(self):
        from tkinter import simpledialog

        dialog, window = yield from self.open_window()
        s = self.scenario
        if self.run == 2:
            self.result['loaded counts'] = list(window.session.counts())
            window.mode_buttons['particles'].invoke()
            particle = s['particles'][2]
            self.go_to_slice(window, particle[2])
            self.press(window, particle)
            yield 0.3
            self.screenshot(window, 'continued')
            yield from self.close(dialog, window)
            return
        levels = s['levels']
        self.go_to_slice(window, s['centre_slice'] + LEVELS[0])
        for point in levels[0]:
            self.press(window, point)
            yield 0.05
        for _ in range(LEVELS[1] - LEVELS[0]):  # keyboard stepping to the centre slice
            self.key(window, 'Up')
        yield 0.2
        for point in levels[1]:
            self.press(window, point)
        self.press(window, s['deleted'])  # a wrong click ...
        yield 0.1
        self.key(window, 'Delete')  # ... removed with the Delete key
        self.press(window, s['drag_start'])  # a click off the membrane ...
        yield 0.1
        self.press(window, s['drag_start'], release_at=s['dragged'])  # ... selected and dragged onto it
        window.mode_buttons['marker'].invoke()
        self.press(window, s['marker'])
        window.mode_buttons['points'].invoke()
        # a second group: a filament
        window.group_buttons['New'].invoke()
        window.model_box.set('filament')
        window.model_box.event_generate('<<ComboboxSelected>>')
        for point in s['filament']:
            self.press(window, point)
        # renamed in the Rename button's dialog, which is modal: invoked apart, answered on the next tick
        window.after(10, window.group_buttons['Rename'].invoke)
        query = yield from self.wait_for(
            lambda: next((w for w in window.children.values() if isinstance(w, simpledialog.Dialog)), None),
            'the rename dialog')
        query.entry.delete(0, 'end')
        query.entry.insert(0, s['filament name'])
        query.ok()
        yield 0.2
        window.group_buttons['Hide/show'].invoke()
        self.result['hidden group selectable'] = window.session.nearest('xy', window.index, *s['filament'][0][:2],
                                                                        2.0) is not None
        window.group_buttons['Hide/show'].invoke()
        window.group_buttons['New'].invoke()  # a third group, deleted while still empty (no question asked)
        window.group_buttons['Delete'].invoke()
        self.result['groups after delete'] = [g.name for g in window.session.groups]
        yield 0.3
        self.screenshot(window, 'groups')
        self.click_list_row(window.group_list, 0)  # back to the vesicle
        yield 0.2
        assert window.current_group == 1, window.current_group
        for _ in range(LEVELS[2] - LEVELS[1]):
            self.key(window, 'Up')
        yield 0.2
        self.result['slice after keys'] = window.index
        for point in levels[2]:
            self.press(window, point)
        yield 0.3
        self.screenshot(window, 'faded_neighbours')
        window.orientation_buttons['xz'].invoke()
        self.go_to_slice(window, int(s['side'][1]))
        self.press(window, s['side'])
        yield 0.3
        self.screenshot(window, 'xz_view')
        window.orientation_buttons['xy'].invoke()
        window.mode_buttons['particles'].invoke()
        for number, particle in enumerate(s['particles_first']):
            self.go_to_slice(window, particle[2])
            if number == 0:  # the first one clicked zoomed in with the mouse wheel
                width = np.diff(window.ax.get_xlim())[0]
                widget = window.canvas.get_tk_widget()
                for _ in range(3):
                    widget.event_generate('<Button-4>', x=self.canvas_point(window, particle)[0],
                                          y=self.canvas_point(window, particle)[1])
                self.result['zoom'] = float(width / np.diff(window.ax.get_xlim())[0])
            self.press(window, particle)
            window.toolbar.home()
            yield 0.1
        yield 0.3
        self.screenshot(window, 'particles')
        self.result['final counts'] = list(window.session.counts())
        yield from self.close(dialog, window)


def drive(argv):
    """``--drive pw_protocol_run.py ARGS``: run a protocol as Scipion does, with the driver of the
    scenario named by $CRYOSEG_PICKING_SCENARIO (if any) acting on its Tk root."""
    path = os.environ.get(SCENARIO_VARIABLE)
    if path:
        import tkinter

        with open(path) as handle:
            scenario = json.load(handle)
        root = tkinter.Tk()
        root.withdraw()
        PickingDriver(root, scenario).start()
    sys.argv = argv
    runpy.run_path(argv[0], run_name='__main__')


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == '--drive':
        return drive(argv[1:])
    parser = argparse.ArgumentParser(description='Builds a project and drives "pick points" on $DISPLAY.')
    parser.add_argument('--project', default=PROJECT_NAME)
    args = parser.parse_args(argv)
    code = build_and_run(args.project)
    sys.stdout.flush()
    os._exit(code)


if __name__ == '__main__':
    main()
