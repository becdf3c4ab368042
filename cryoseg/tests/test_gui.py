"""The Scipion GUI on a real (virtual) display: project window, every cryoseg protocol form, every
wizard and every viewer, with screenshots.

The pytest test starts an Xvfb server and runs this module as a script (``python -O -m
cryoseg.tests.test_gui``) in a subprocess, so that no Tk state leaks into other tests. The script
builds a small project from the demo workflow template (one small phantom tomogram), opens
pyworkflow's ProjectWindow on it, then the FormWindow of every cryoseg protocol (the finished run of
the chain, or a new protocol with its inputs filled), runs every cryoseg wizard on such a form and
every cryoseg viewer on the finished runs, saving a screenshot of each window into the project's
``report/gui`` folder. Any Tk callback exception, uncaught exception or error dialog fails the test.
Without Xvfb the test is skipped with the reason.
"""
import argparse
import json
import os
import select
import shutil
import subprocess
import sys
import time
import traceback
import warnings

import pytest

PROJECT_NAME = 'cryoseg_gui_test'
SCREEN = '1400x1000x24'
REPORT_NAME = 'gui_report.json'
# one small phantom: enough for every step of the workflow, quick to process
GUI_PHANTOM = dict(shape_zyx=(96, 160, 160), ice_fraction=0.8, particles_per_class=(4, 3, 2), filament=False)
SETTLE_SECONDS = 0.3  # Tk event processing before a screenshot


# ------------------------------------------------------------------------------- pytest side
def start_xvfb():
    """``(process, ':N')`` of a new Xvfb server on a free display, or ``(None, reason)``."""
    xvfb = shutil.which('Xvfb')
    if xvfb is None:
        return None, 'Xvfb is not installed (Debian/Ubuntu: apt-get install xvfb)'
    read_end, write_end = os.pipe()
    process = subprocess.Popen([xvfb, '-displayfd', str(write_end), '-screen', '0', SCREEN, '-nolisten', 'tcp'],
                               pass_fds=(write_end,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(write_end)
    answer, deadline = b'', time.time() + 20
    while not answer.endswith(b'\n') and time.time() < deadline:  # the whole line: closing the pipe
        if select.select([read_end], [], [], 1)[0]:               # early would kill Xvfb (SIGPIPE)
            chunk = os.read(read_end, 64)
            if not chunk:
                break
            answer += chunk
    os.close(read_end)
    number = answer.decode().strip()
    if not number.isdigit():
        process.kill()
        process.wait()
        return None, f'Xvfb did not start (exit code {process.poll()})'
    return process, f':{number}'


def test_project_window_forms_wizards_and_viewers_on_a_virtual_display():
    from pyworkflow.project import Manager

    from cryoseg.demo import TEMPLATE
    from cryoseg.protocols import __dict__ as protocol_module
    from cryoseg.viewers import __dict__ as viewer_module
    from cryoseg.wizards import __dict__ as wizard_module

    server, display = start_xvfb()
    if server is None:
        pytest.skip(f'GUI test needs a virtual X server: {display}')
    try:
        env = dict(os.environ, DISPLAY=display, MPLBACKEND='TkAgg')
        run = subprocess.run([sys.executable, '-O', '-m', 'cryoseg.tests.test_gui', '--project', PROJECT_NAME,
                              '--build'], env=env, capture_output=True, text=True, timeout=600)
    finally:
        server.terminate()
        server.wait()
    output = f'--- stdout\n{run.stdout[-4000:]}\n--- stderr\n{run.stderr[-4000:]}'
    report_path = os.path.join(Manager().getProjectPath(PROJECT_NAME), 'report', 'gui', REPORT_NAME)
    assert os.path.exists(report_path), output
    with open(report_path) as handle:
        report = json.load(handle)
    assert report['errors'] == [], '\n'.join(e['where'] + ':\n' + e['error'] for e in report['errors'])
    assert run.returncode == 0, output

    protocols = {name for name in protocol_module if name.startswith('ProtCryoSeg')}
    # every viewer of a protocol of the workflow is shown on its run; others are listed
    with open(TEMPLATE) as handle:
        chain = {entry['object.className'] for entry in json.load(handle)}
    viewers = {name for name, cls in viewer_module.items() if name.startswith('CryoSeg')
               and any(target.__name__ in chain for target in cls._targets)}
    for name in report['viewers without a run']:
        warnings.warn(f'{name} not shown: no protocol it views ran in the GUI test project')
    shots = report['screenshots']
    assert 'project window' in shots
    assert protocols <= {key.split(':', 1)[1] for key in shots if key.startswith('form:')}
    assert viewers <= {key.split(':', 1)[1].split('/')[0] for key in shots if key.startswith('viewer:')}
    wizards = {name for name, obj in wizard_module.items() if name.startswith('CryoSeg') and name.endswith('Wizard')}
    assert wizards <= {key.split(' on ')[0] for key in report['wizards']}
    assert all(w['ok'] for w in report['wizards'].values()), report['wizards']
    from PIL import Image
    for key, path in shots.items():  # each window really drew something
        with Image.open(path) as image:
            assert image.width >= 300 and image.height >= 200, (key, image.size)
            low, high = image.convert('L').getextrema()
            assert high - low > 50, f'{key}: blank screenshot {path}'


# ------------------------------------------------------------------------ script (GUI) side
class GuiSession:
    """Opens windows one after the other, pumping Tk events, and records screenshots and errors."""

    def __init__(self, project_path, report_dir, display):
        self.project_path = project_path
        self.report_dir = report_dir
        self.display = display
        self.screenshots = {}
        self.wizards = {}
        self.viewers_without_run = []
        self.errors = []
        self.where = 'start-up'

    def record_error(self, kind, exc_type, exc, tb):
        self.errors.append({'where': f'{self.where} ({kind})',
                            'error': ''.join(traceback.format_exception(exc_type, exc, tb))})

    def install_hooks(self):
        """Every Tk callback exception, uncaught exception and error/warning dialog is an error."""
        import tkinter

        import pyworkflow.gui.dialog as dialog

        session = self
        tkinter.Tk.report_callback_exception = lambda tk, *info: session.record_error('Tk callback', *info)
        sys.excepthook = lambda *info: session.record_error('uncaught', *info)

        def dialog_error(kind):
            def show(title, msg, parent, *args, **kwargs):
                session.errors.append({'where': f'{session.where} ({kind} dialog)', 'error': f'{title}: {msg}'})
            return show
        dialog.showError = dialog_error('error')
        dialog.showWarning = dialog_error('warning')

    def pump(self, seconds=SETTLE_SECONDS):
        end = time.time() + seconds
        while time.time() < end:
            self.root.update()
            time.sleep(0.02)

    def screenshot(self, key, widget):
        """Grabs ``widget``'s toplevel window from the X display into ``NN_key.png``."""
        from PIL import ImageGrab

        top = widget.winfo_toplevel()
        top.lift()
        self.pump()
        x, y = top.winfo_rootx(), top.winfo_rooty()
        box = (x, y, x + top.winfo_width(), y + top.winfo_height())
        name = f"{len(self.screenshots) + 1:02d}_{''.join(c if c.isalnum() else '_' for c in key)}.png"
        path = os.path.join(self.report_dir, name)
        ImageGrab.grab(bbox=box, xdisplay=self.display).save(path)
        self.screenshots[key] = path

    def step(self, where, action):
        self.where = where
        try:
            action()
        except Exception:
            self.record_error('exception', *sys.exc_info())

    # --------------------------------------------------------------------------- windows
    def open_project_window(self):
        import pyworkflow.gui.project  # noqa: F401  (before pyworkflow.gui.form: circular import)
        from pyworkflow.gui.project import ProjectWindow

        self.window = ProjectWindow(self.project_path)
        self.root = self.window.root
        self.project = self.window.project
        self.root.geometry(SCREEN.rsplit('x', 1)[0] + '+0+0')  # no window manager to maximise it
        self.root.deiconify()
        self.pump(1.5)
        # select each run as a click does: its summary, methods and logs fill the lower panel
        for run in self.project.getRuns():
            self.where = f'project window, run {run.getObjLabel()} selected'
            self.window.viewWidget._selectItemProtocol(run)
            self.pump(0.2)
        self.screenshot('project window', self.root)

    def runs_by_class(self):
        runs = {}
        for run in self.project.getRuns():
            if run.isFinished():
                runs.setdefault(run.getClassName(), run)
        return runs

    def protocol_for_form(self, cls):
        """The finished run of ``cls`` (the form a double click opens), else a new protocol whose
        pointer inputs are filled with the first finished output of a matching class."""
        from pyworkflow.protocol.params import MultiPointerParam, PointerParam

        run = self.runs_by_class().get(cls.__name__)
        if run is not None:
            return run
        prot = self.project.newProtocol(cls)
        for name, param in prot.iterDefinitionAttributes():
            definition = prot.getParam(name)
            if not isinstance(definition, PointerParam) or isinstance(definition, MultiPointerParam):
                continue
            wanted = [c.strip() for c in definition.pointerClass.get().split(',')]
            for other in self.project.getRuns():
                outputs = [key for key, out in other.iterOutputAttributes()
                           if other.isFinished() and out.getClassName() in wanted]
                if outputs:
                    getattr(prot, name).set(other)
                    getattr(prot, name).setExtended(outputs[0])
                    break
        return prot

    def open_form(self, prot):
        from pyworkflow.gui.form import FormWindow

        form = FormWindow(f'Protocol Run: {prot.getClassName()}', prot, lambda *args, **kwargs: None,
                          self.window, updateProtocolCallback=lambda *args: None)
        form.adjustSize()
        form.root.deiconify()
        self.pump()
        return form

    def check_forms(self, protocol_classes):
        for cls in protocol_classes:
            def action(cls=cls):
                form = self.open_form(self.protocol_for_form(cls))
                self.screenshot(f'form:{cls.__name__}', form.root)
                form.root.destroy()
            self.step(f'form of {cls.__name__}', action)

    def new_figures(self, before):
        from matplotlib import pyplot

        return [pyplot.figure(n) for n in pyplot.get_fignums() if n not in before]

    def capture_figures(self, key, before):
        """Screenshots of the matplotlib windows opened since ``before``; then closes them."""
        from matplotlib import pyplot

        figures = self.new_figures(before)
        self.pump()
        for index, figure in enumerate(figures):
            self.screenshot(f'{key}/{index + 1}', figure.canvas.get_tk_widget())
            pyplot.close(figure)
        return len(figures)

    def check_wizards(self, wizard_classes):
        """Each wizard on a form of each protocol it targets: it must either open a preview window
        or fill in its parameter (checked after emptying the field)."""
        from matplotlib import pyplot

        for cls in wizard_classes:
            for protocol_class, params in cls._targets:
                key = f'{cls.__name__} on {protocol_class.__name__}'

                def action(cls=cls, protocol_class=protocol_class, params=params, key=key):
                    form = self.open_form(self.protocol_for_form(protocol_class))
                    variable = form.widgetDict[params[0]]
                    form.wizParamName = params[0]
                    before = set(pyplot.get_fignums())
                    cls().show(form, *params)
                    self.pump()
                    shown = self.capture_figures(f'wizard:{cls.__name__}', before)
                    if not shown:
                        variable.set('')
                        cls().show(form, *params)
                        self.pump()
                    self.screenshot(f'wizard form:{cls.__name__}', form.root)
                    value = variable.get()
                    self.wizards[key] = {'ok': bool(shown) or value not in ('', None),
                                         'result': f'{shown} preview window(s)' if shown
                                         else f'{params[0]} = {value!r}'}
                    form.root.destroy()
                self.wizards[key] = {'ok': False, 'result': 'not run'}
                self.step(f'wizard {key}', action)

    def check_viewers(self, viewer_classes):
        """Each viewer on each finished run it targets, called as "Analyze results" does."""
        from matplotlib import pyplot

        runs = [run for run in self.project.getRuns() if run.isFinished()]
        for cls in viewer_classes:
            targeted = [r for r in runs if any(isinstance(r, target) for target in cls._targets)]
            if not targeted:
                self.viewers_without_run.append(cls.__name__)
            for run in targeted:
                def action(cls=cls, run=run):
                    before = set(pyplot.get_fignums())
                    cls(project=self.project, protocol=run, parent=self.window).visualize(run)
                    if not self.capture_figures(f'viewer:{cls.__name__}/{run.getObjLabel()}', before):
                        raise RuntimeError(f'{cls.__name__} showed no window for {run.getObjLabel()}')
                self.step(f'viewer {cls.__name__} on {run.getObjLabel()}', action)

    def write_report(self):
        path = os.path.join(self.report_dir, REPORT_NAME)
        with open(path, 'w') as handle:
            json.dump({'screenshots': self.screenshots, 'wizards': self.wizards, 'errors': self.errors,
                       'viewers without a run': self.viewers_without_run}, handle, indent=1)
        return path


def cryoseg_classes(module, base):
    return [obj for name, obj in sorted(vars(module).items())
            if isinstance(obj, type) and issubclass(obj, base) and obj.__module__.startswith('cryoseg')]


def main(argv=None):
    parser = argparse.ArgumentParser(description='Opens the Scipion GUI of a cryoseg project on $DISPLAY.')
    parser.add_argument('--project', default=PROJECT_NAME)
    parser.add_argument('--build', action='store_true',
                        help='(re)build the project from the demo workflow on a small phantom first')
    args = parser.parse_args(argv)

    import matplotlib
    matplotlib.use('TkAgg')
    from pyworkflow.project import Manager
    from pyworkflow.protocol import Protocol
    from pyworkflow.viewer import Viewer
    from pyworkflow.wizard import Wizard

    from cryoseg import protocols, viewers, wizards

    start = time.time()
    if args.build:
        from cryoseg.demo import Demo

        demo = Demo(args.project, 1, phantom=GUI_PHANTOM)
        demo.run_workflow(threads=1)
        project = demo.project
    else:
        project = Manager().loadProject(args.project)
    project.getSettings().setProtocolView('Tomography')  # cryoseg's protocols are in this view
    project.saveSettings()
    report_dir = os.path.join(project.getPath(), 'report', 'gui')
    os.makedirs(report_dir, exist_ok=True)

    print(f"project ready in {time.time() - start:.0f} s", flush=True)
    session = GuiSession(project.getPath(), report_dir, os.environ['DISPLAY'])
    session.install_hooks()
    session.step('project window', session.open_project_window)
    if hasattr(session, 'root'):
        session.check_forms(cryoseg_classes(protocols, Protocol))
        session.check_wizards(cryoseg_classes(wizards, Wizard))
        session.check_viewers(cryoseg_classes(viewers, Viewer))
    path = session.write_report()
    print(f"GUI report: {path} ({len(session.screenshots)} screenshots, {len(session.errors)} errors, "
          f"{time.time() - start:.0f} s)")
    for error in session.errors:
        print(f"ERROR in {error['where']}:\n{error['error']}")
    sys.stdout.flush()
    # the project window keeps a socket-server thread: leave without waiting for it
    os._exit(1 if session.errors else 0)


if __name__ == '__main__':
    main()
