"""The picking window of "pick points" (Tk and matplotlib) and the tomogram list that opens it.

:class:`PickingWindow` shows one tomogram slice by slice and edits a :class:`cryoseg.core.picks.PickSession`,
saving it after every change; everything it knows about points lives in that session, the window only
draws it and turns mouse and key events into session calls. :func:`open_picking_dialog` shows the
tomograms in scipion-em-tomo's tomogram list dialog; double-clicking one opens its window.
"""
import contextlib
import os
import tkinter as tk
from tkinter import colorchooser, messagebox, simpledialog, ttk

import numpy as np
from matplotlib.backends.backend_tkagg import FigureCanvasTkAgg, NavigationToolbar2Tk
from matplotlib.collections import EllipseCollection
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure
from scipy import ndimage
from tomo.viewers.views_tkinter_tree import TomogramsDialog, TomogramsTreeProvider

from ..convert import tomogram_path
from ..core.errors import CryoSegInputError
from ..core.mrcio import open_volume
from ..core.picks import (MODEL_LABELS, ORIENTATIONS, load_session, save_session, slice_image, view_coordinates,
                          view_shape, voxel_position)
from ..core.segdiam import lowpass_sigma

MODES = ('points', 'marker', 'particles')
PICK_RADIUS = 8  # screen pixels: a click this close to a point selects it instead of adding one
FADE_SLICES = 10  # points of slices this far away are drawn, fading with the distance
SLICE_KEYS = {'up': 1, 'down': -1, 'right': 1, 'left': -1, 'pageup': 10, 'pagedown': -10}
DELETE_KEYS = ('delete', 'backspace')
HELP = ('Click: add a point (mode) · click a point: select · drag: move · Delete: remove\n'
        'Up/Down (or slider): next/previous slice, Page Up/Down: 10 slices · wheel: zoom · toolbar: pan, zoom')


class PickingWindow(tk.Toplevel):
    """Slice view of one tomogram where the points of a session are added, selected, moved and deleted.

    ``session_path`` is where every change is saved; ``on_closed()`` is called after the window
    closed (the protocol registers its outputs then)."""

    def __init__(self, master, session, session_path, volume_path, pixel_size, default_model='sphere',
                 on_closed=None):
        super().__init__(master)
        self.session, self.session_path, self.pixel_size = session, session_path, pixel_size
        self.on_closed = on_closed
        self._files = contextlib.ExitStack()
        self.volume = self._files.enter_context(open_volume(volume_path))[0]
        self.orientation = 'xy'
        self.index = view_shape(session.shape_xyz, 'xy')[2] // 2
        self.selected = None
        self.dragging = False
        self.moved = False
        self.current_group = session.groups[0].group_id if session.groups else None
        self.title(f'pick points: {session.ts_id}')
        self.protocol('WM_DELETE_WINDOW', self.close)
        self._build(default_model)
        self.show_slice()

    # ------------------------------------------------------------------------------------ layout
    def _build(self, default_model):
        self.columnconfigure(0, weight=1)
        self.rowconfigure(0, weight=1)
        view = tk.Frame(self)
        view.grid(row=0, column=0, sticky='news')
        view.columnconfigure(0, weight=1)
        view.rowconfigure(1, weight=1)
        self.figure = Figure(figsize=(7.5, 7), dpi=100)
        self.figure.subplots_adjust(0.07, 0.07, 0.99, 0.98)
        self.ax = self.figure.add_subplot(111)
        self.canvas = FigureCanvasTkAgg(self.figure, master=view)
        self.toolbar = NavigationToolbar2Tk(self.canvas, view, pack_toolbar=False)
        self.toolbar.grid(row=0, column=0, sticky='w')
        self.canvas.get_tk_widget().grid(row=1, column=0, sticky='news')
        self.slice_var = tk.IntVar(value=self.index)
        self.slider = tk.Scale(view, orient=tk.HORIZONTAL, variable=self.slice_var, showvalue=True,
                               label='slice', command=lambda value: self.set_slice(int(value)))
        self.slider.grid(row=2, column=0, sticky='ew')
        self.status = tk.Label(view, anchor='w', justify=tk.LEFT)
        self.status.grid(row=3, column=0, sticky='ew')
        tk.Label(view, text=HELP, anchor='w', justify=tk.LEFT, fg='#555555').grid(row=4, column=0, sticky='ew')
        for name, handler in (('button_press_event', self.on_press), ('motion_notify_event', self.on_motion),
                              ('button_release_event', self.on_release), ('key_press_event', self.on_key),
                              ('scroll_event', self.on_scroll)):
            self.canvas.mpl_connect(name, handler)
        self._build_controls(tk.Frame(self, padx=6), default_model).grid(row=0, column=1, sticky='ns')

    def _build_controls(self, panel, default_model):
        row = 0

        def place(widget, **options):
            nonlocal row
            widget.grid(row=row, column=0, columnspan=2, sticky='ew', **options)
            row += 1
            return widget

        place(tk.Label(panel, text='Mode', font='TkHeadingFont'), pady=(6, 0))
        self.mode_var = tk.StringVar(value='points')
        self.mode_buttons = {mode: place(tk.Radiobutton(panel, text=mode, value=mode, variable=self.mode_var,
                                                        anchor='w', command=self.draw_points))
                             for mode in MODES}
        place(tk.Label(panel, text='Groups (vesicles, membranes, filaments)', font='TkHeadingFont'), pady=(8, 0))
        self.group_list = place(tk.Listbox(panel, height=10, exportselection=False, width=32))
        self.group_list.bind('<<ListboxSelect>>', self._on_group_selected)
        buttons = tk.Frame(panel)
        self.group_buttons = {}
        for column, (text, command) in enumerate((('New', self.new_group), ('Rename', self.rename_group),
                                                  ('Hide/show', self.toggle_group), ('Delete', self.delete_group),
                                                  ('Colour', self.recolour_group))):
            self.group_buttons[text] = tk.Button(buttons, text=text, command=command, padx=2)
            self.group_buttons[text].grid(row=column // 3, column=column % 3, sticky='ew')
        place(buttons)
        place(tk.Label(panel, text='Model of the group', anchor='w'))
        self.model_var = tk.StringVar(value=MODEL_LABELS[default_model])
        self.model_box = place(ttk.Combobox(panel, textvariable=self.model_var, state='readonly',
                                            values=list(MODEL_LABELS.values())))
        self.model_box.bind('<<ComboboxSelected>>', self._on_model_selected)
        place(tk.Label(panel, text='View', font='TkHeadingFont'), pady=(8, 0))
        self.orientation_var = tk.StringVar(value=self.orientation)
        orientations = tk.Frame(panel)
        self.orientation_buttons = {}
        for column, name in enumerate(ORIENTATIONS):
            self.orientation_buttons[name] = tk.Radiobutton(
                orientations, text=name, value=name, variable=self.orientation_var,
                command=lambda: self.set_orientation(self.orientation_var.get()))
            self.orientation_buttons[name].grid(row=0, column=column)
        place(orientations)
        self.contrast_var = tk.DoubleVar(value=1.0)
        place(tk.Scale(panel, orient=tk.HORIZONTAL, from_=0.0, to=10.0, resolution=0.1, variable=self.contrast_var,
                       label='contrast (% saturated)', command=lambda value: self.show_slice()))
        self.lowpass_var = tk.DoubleVar(value=round(4 * self.pixel_size))
        place(tk.Scale(panel, orient=tk.HORIZONTAL, from_=0.0, to=round(40 * self.pixel_size),
                       resolution=max(1, round(self.pixel_size / 2)), variable=self.lowpass_var,
                       label='low-pass (Å, 0: off)', command=lambda value: self.show_slice()))
        self.particle_label = place(tk.Label(panel, anchor='w', justify=tk.LEFT))
        self.refresh_groups()
        return panel

    # ------------------------------------------------------------------------------------ drawing
    def show_slice(self):
        """Draw the current slice (contrast and low-pass applied) and the points."""
        width, height, depth = view_shape(self.session.shape_xyz, self.orientation)
        self.index = int(np.clip(self.index, 0, depth - 1))
        image = np.asarray(slice_image(self.volume, self.orientation, self.index), np.float32)
        if self.lowpass_var.get() > 0:
            image = ndimage.gaussian_filter(image, lowpass_sigma(self.lowpass_var.get(), self.pixel_size))
        saturated = self.contrast_var.get()
        low, high = np.percentile(image, [saturated, 100 - saturated]) if saturated > 0 else (image.min(), image.max())
        extent = (-0.5, width - 0.5, -0.5, height - 0.5)
        if getattr(self, 'image', None) is None or self.image.get_extent() != list(extent):
            self.ax.clear()
            self.image = self.ax.imshow(image, cmap='gray', origin='lower', extent=extent, interpolation='nearest')
            self.ax.set_xlabel(self.orientation[0])
            self.ax.set_ylabel(self.orientation[1])
            self.overlay = []
            self.toolbar.update()  # the home view is this orientation's whole slice
        else:
            self.image.set_data(image)
        self.image.set_clim(low, max(high, low + 1e-6))
        self.slider.configure(to=depth - 1)
        self.slice_var.set(self.index)
        self.draw_points()

    def draw_points(self):
        for artist in self.overlay:
            artist.remove()
        self.overlay = []
        groups = {g.group_id: g for g in self.session.groups}
        radius = self.session.particle_diameter / 2
        dots, crosses, circles = [], [], []
        for ref, u, v, distance in self.session.near_slice(self.orientation, self.index, max(FADE_SLICES, radius)):
            if ref.kind == 'particle':
                if distance < radius:  # the particle's cross-section with this slice
                    alpha = 1.0 if distance <= 0.5 else 0.45
                    circles.append((u, v, 2 * np.sqrt(radius ** 2 - distance ** 2), to_rgba('#ffd700', alpha)))
                continue
            if distance > FADE_SLICES:
                continue
            alpha = 1.0 if distance <= 0.5 else 0.1 + 0.5 * (1 - distance / (FADE_SLICES + 1))
            colour = to_rgba(groups[ref.group_id].colour, alpha)
            (crosses if ref.kind == 'marker' else dots).append((u, v, colour))
        if dots:
            u, v, colours = zip(*dots)
            self.overlay.append(self.ax.scatter(u, v, s=36, c=colours, edgecolors='none', zorder=3))
        if crosses:
            u, v, colours = zip(*crosses)
            self.overlay.append(self.ax.scatter(u, v, s=90, c=colours, marker='X', linewidths=0.5,
                                                edgecolors='white', zorder=3))
        if circles:
            u, v, size, colours = zip(*circles)
            collection = EllipseCollection(size, size, np.zeros(len(size)), units='xy', offsets=np.column_stack([u, v]),
                                           offset_transform=self.ax.transData, facecolors='none',
                                           edgecolors=colours, linewidths=1.5, zorder=3)
            self.overlay.append(self.ax.add_collection(collection))
            self.overlay.append(self.ax.scatter(u, v, s=10, c=colours, marker='+', zorder=3))
        if self.selected is not None:
            u, v, distance = view_coordinates([self.session.position(self.selected)], self.orientation)[0]
            if distance <= FADE_SLICES:
                self.overlay.append(self.ax.scatter([u], [v], s=160, facecolors='none', edgecolors='white',
                                                    linewidths=1.5, zorder=4))
        self.canvas.draw_idle()
        self.update_status()

    def update_status(self, cursor=None):
        groups, points, particles = self.session.counts()
        depth = view_shape(self.session.shape_xyz, self.orientation)[2]
        where = 'x {:.1f}  y {:.1f}  z {:.1f}   '.format(*cursor) if cursor is not None else ''
        self.status.configure(text=f'{where}{self.orientation} slice {self.index} of {depth - 1}   ·   '
                                   f'{groups} groups, {points} points, {particles} particles')
        self.particle_label.configure(
            text=f'particles: {particles}, diameter {self.session.particle_diameter * self.pixel_size:.0f} Å')

    # ------------------------------------------------------------------------------------ view changes
    def set_slice(self, index):
        depth = view_shape(self.session.shape_xyz, self.orientation)[2]
        index = int(np.clip(index, 0, depth - 1))
        if index != self.index:
            self.index = index
            self.show_slice()

    def set_orientation(self, orientation):
        """Switch to the ``orientation`` view, on the slice through the selected point (else the middle)."""
        self.orientation = orientation
        self.orientation_var.set(orientation)
        if self.selected is not None:
            self.index = int(round(view_coordinates([self.session.position(self.selected)], orientation)[0, 2]))
        else:
            self.index = view_shape(self.session.shape_xyz, orientation)[2] // 2
        self.show_slice()

    def on_scroll(self, event):
        if event.inaxes is not self.ax:
            return
        self.toolbar.push_current()  # the toolbar's home and back buttons undo wheel zooms too
        factor = 0.8 ** event.step
        for get, set_, centre in ((self.ax.get_xlim, self.ax.set_xlim, event.xdata),
                                  (self.ax.get_ylim, self.ax.set_ylim, event.ydata)):
            low, high = get()
            set_(centre + (low - centre) * factor, centre + (high - centre) * factor)
        self.canvas.draw_idle()

    # ------------------------------------------------------------------------------------ editing
    def _pick_radius(self):
        """PICK_RADIUS screen pixels in voxels of the current zoom (in particles mode, at least half
        the particle radius, so that a click inside a circle selects its particle)."""
        origin, step = self.ax.transData.inverted().transform([[0, 0], [PICK_RADIUS, 0]])
        radius = abs(step[0] - origin[0])
        if self.mode_var.get() == 'particles':
            radius = max(radius, self.session.particle_diameter / 4)
        return radius

    def on_press(self, event):
        if event.inaxes is not self.ax or event.button != 1 or self.toolbar.mode:
            return
        self.canvas.get_tk_widget().focus_set()
        ref = self.session.nearest(self.orientation, self.index, event.xdata, event.ydata, self._pick_radius())
        if ref is None:
            ref = self._add(voxel_position(self.orientation, event.xdata, event.ydata, self.index))
            if ref is None:
                return
            self.save()
        elif ref.kind != 'particle':
            self.select_group(ref.group_id)
        self.selected, self.dragging, self.moved = ref, True, False
        self.draw_points()

    def _add(self, xyz):
        mode = self.mode_var.get()
        if mode == 'particles':
            return self.session.add_particle(xyz)
        if self.current_group is None:
            self.new_group()
        if mode == 'marker':
            return self.session.set_marker(self.current_group, xyz)
        return self.session.add_point(self.current_group, xyz)

    def on_motion(self, event):
        if event.inaxes is not self.ax:
            return
        cursor = voxel_position(self.orientation, event.xdata, event.ydata, self.index)
        if self.dragging and self.selected is not None:
            self.session.move(self.selected, cursor)
            self.moved = True
            self.draw_points()
        self.update_status(cursor)

    def on_release(self, event):
        if self.dragging and self.moved:
            self.save()
        self.dragging = False

    def on_key(self, event):
        if event.key in SLICE_KEYS:
            self.set_slice(self.index + SLICE_KEYS[event.key])
        elif event.key in DELETE_KEYS:
            self.delete_selected()

    def delete_selected(self):
        if self.selected is None:
            return
        self.session.delete(self.selected)
        self.selected = None
        self.save()
        self.draw_points()

    # ------------------------------------------------------------------------------------ groups
    def refresh_groups(self):
        self.group_list.delete(0, tk.END)
        for position, group in enumerate(self.session.groups):
            marker = ', marker' if group.marker is not None else ''
            hidden = ' (hidden)' if group.hidden else ''
            self.group_list.insert(tk.END, f'{group.name}: {len(group.points)} points{marker}{hidden}')
            self.group_list.itemconfigure(position, foreground=group.colour if not group.hidden else '#999999')
            if group.group_id == self.current_group:
                self.group_list.selection_set(position)
                self.model_var.set(MODEL_LABELS[group.model])

    def select_group(self, group_id):
        self.current_group = group_id
        self.refresh_groups()

    def _on_group_selected(self, event=None):
        chosen = self.group_list.curselection()
        if chosen:
            self.select_group(self.session.groups[chosen[0]].group_id)
            if self.mode_var.get() == 'particles':
                self.mode_var.set('points')

    def _model_chosen(self):
        return next(model for model, label in MODEL_LABELS.items() if label == self.model_var.get())

    def _on_model_selected(self, event=None):
        if self.current_group is not None:
            self.session.set_model(self.current_group, self._model_chosen())
            self.save()

    def new_group(self):
        """A new group of the model chosen in the model list becomes the current group."""
        self.current_group = self.session.new_group(self._model_chosen()).group_id
        if self.mode_var.get() == 'particles':
            self.mode_var.set('points')
        self.save()

    def rename_group(self, name=None):
        if self.current_group is None:
            return
        group = self.session.group(self.current_group)
        name = name or simpledialog.askstring('Rename group', 'Name:', initialvalue=group.name, parent=self)
        if name:
            group.name = name.strip()
            self.save()

    def toggle_group(self):
        if self.current_group is not None:
            group = self.session.group(self.current_group)
            group.hidden = not group.hidden
            if self.selected is not None and self.selected.group_id == group.group_id:
                self.selected = None
            self.save()
            self.draw_points()

    def delete_group(self):
        if self.current_group is None:
            return
        group = self.session.group(self.current_group)
        if group.points and not messagebox.askyesno(
                'Delete group', f'Delete {group.name} and its {len(group.points)} points?', parent=self):
            return
        self.session.delete_group(group.group_id)
        if self.selected is not None and self.selected.group_id == group.group_id:
            self.selected = None
        self.current_group = self.session.groups[-1].group_id if self.session.groups else None
        self.save()
        self.draw_points()

    def recolour_group(self):
        if self.current_group is None:
            return
        group = self.session.group(self.current_group)
        colour = colorchooser.askcolor(group.colour, parent=self, title=f'Colour of {group.name}')[1]
        if colour:
            group.colour = colour
            self.save()
            self.draw_points()

    # ------------------------------------------------------------------------------------ saving
    def save(self):
        """Save the session (atomically) and show the new counts."""
        save_session(self.session, self.session_path)
        self.refresh_groups()
        self.update_status()

    def close(self):
        self.save()
        self._files.close()
        self.destroy()
        if self.on_closed is not None:
            self.on_closed()


# ---------------------------------------------------------------------------------- tomogram list
class PickingTomogramsProvider(TomogramsTreeProvider):
    """The tomograms with what was picked on each (from their saved sessions)."""

    def __init__(self, tomograms, session_path):
        super().__init__(list(tomograms.values()), None, 'json')
        self.session_path = session_path

    def getColumns(self):
        return [('Tomogram', 220), ('groups', 70), ('points', 70), ('particles', 80), ('status', 90)]

    def getObjectInfo(self, tomo):
        tsId = tomo.getTsId()
        path = self.session_path(tsId)
        groups, points, particles = load_session(path).counts() if os.path.exists(path) else (0, 0, 0)
        picked = points + particles > 0
        return {'key': tsId, 'parent': None, 'text': tsId,
                'values': (groups, points, particles, 'picked' if picked else 'to pick'),
                'tags': ('done' if picked else 'pending',)}


class PickingDialog(TomogramsDialog):
    """scipion-em-tomo's tomogram list; a double click opens the tomogram's picking window."""

    def __init__(self, parent, provider, open_window):
        self.open_window = open_window  # before the base class, whose constructor waits for the dialog to close
        self.windows = {}
        TomogramsDialog.__init__(self, parent, False, provider=provider)

    def doubleClickOnTomogram(self, tomo=None):
        window = self.windows.get(tomo.getTsId())
        if window is not None and window.winfo_exists():
            window.lift()
        else:
            self.windows[tomo.getTsId()] = self.open_window(self, tomo)

    def destroy(self):
        for window in self.windows.values():  # save and register what the open windows hold
            if window.winfo_exists():
                window.close()
        TomogramsDialog.destroy(self)


def application_root():
    """The Tk root of this process (that of a Scipion window or a test that runs the step), or a new
    hidden one: a protocol run has none."""
    import pyworkflow.gui as pwgui

    root = tk._default_root
    if root is None:
        try:
            root = tk.Tk()
        except tk.TclError as err:
            raise CryoSegInputError(f'the picking window cannot open ({err}): run the protocol from Scipion on a '
                                    'display, or set "Open the picking window?" to No') from None
        root.withdraw()
    pwgui.setCommonFonts()
    return root


def open_picking_dialog(tomograms, session_path, on_closed, default_model='sphere'):
    """Show the tomogram list of ``{tsId: Tomogram}``; returns when it is closed. A double click opens
    the picking window of a tomogram on its session (``session_path(tsId)``); ``on_closed()`` is
    called whenever a picking window closes."""
    def open_window(dialog, tomo):
        path = session_path(tomo.getTsId())

        def closed():
            on_closed()
            if dialog.winfo_exists():
                dialog.tree.update()
        return PickingWindow(dialog, load_session(path), path, tomogram_path(tomo), tomo.getSamplingRate(),
                             default_model, closed)

    PickingDialog(application_root(), PickingTomogramsProvider(tomograms, session_path), open_window)
