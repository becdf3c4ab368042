"""Viewer of the directional model workflow: per tomogram, an xy slice through the cropping points with
their normals drawn as arrows (projected), and a 3-D view of the points and normals coloured by
geometry."""
from contextlib import ExitStack

import numpy as np
from pyworkflow.gui.plotter import Plotter
from pyworkflow.viewer import DESKTOP_TKINTER, WEB_DJANGO, Viewer

from .. import convert, plots
from ..protocols.protocol_model_workflow import ProtCryoSegModelWorkflow

MAX_TOMOGRAMS_SHOWN = 3
SLAB_HALF_WIDTH = 3  # px: points this close to the slice are drawn on it


def normals_slice(ax, image, z, xyz, normals, arrow_length, title):
    """xy slice at ``z`` with the points within a few voxels of it and their normals' xy components."""
    plots.plot_slice_with_points(ax, image, title=f'{title}, z={z}')
    near = np.abs(xyz[:, 2] - z) <= SLAB_HALF_WIDTH
    if near.any():
        ax.quiver(xyz[near, 0], xyz[near, 1], normals[near, 0], normals[near, 1], color='orange',
                  angles='xy', scale_units='xy', scale=1.0 / arrow_length, width=0.004)
        ax.scatter(xyz[near, 0], xyz[near, 1], s=6, c='cyan')


def normals_3d(ax, xyz, normals, group_ids, arrow_length, title):
    """3-D quiver of the cropping points and their normals, one colour per geometry."""
    colours = plots.plt.get_cmap('tab10')
    for index, group in enumerate(np.unique(group_ids)):
        mine = group_ids == group
        ax.quiver(*xyz[mine].T, *normals[mine].T, length=arrow_length, color=colours(index % 10),
                  linewidth=0.6, label=f'group {group}')
    if len(xyz):
        ax.set_box_aspect(np.maximum(np.ptp(xyz, axis=0), 1))  # true proportions, not a cube
    ax.set_title(title, fontsize=9)
    ax.set_xlabel('x')
    ax.set_ylabel('y')
    ax.set_zlabel('z')
    if len(group_ids):
        ax.legend(fontsize=7)


def model_workflow_figure(entries, arrow_length=6.0):
    """Two panels per ``(title, volume[z, y, x], xyz, normals, group ids)`` entry: a slice through the
    middle of the points with their normals, and the 3-D view."""
    fig = plots.plt.figure(figsize=(10, 4.8 * max(len(entries), 1)))
    for row, (title, volume, xyz, normals, group_ids) in enumerate(entries):
        xyz, normals = np.asarray(xyz, float).reshape(-1, 3), np.asarray(normals, float).reshape(-1, 3)
        z = int(np.median(xyz[:, 2])) if len(xyz) else volume.shape[0] // 2
        image = plots.orthogonal_slices(volume, (z, 0, 0))[0]
        normals_slice(fig.add_subplot(len(entries), 2, 2 * row + 1), image, z, xyz, normals, arrow_length,
                      title)
        normals_3d(fig.add_subplot(len(entries), 2, 2 * row + 2, projection='3d'), xyz, normals,
                   np.asarray(group_ids), arrow_length, f'{title}: {len(xyz)} cropping points')
    return fig


def protocol_figure(protocol, max_tomograms=MAX_TOMOGRAMS_SHOWN):
    """:func:`model_workflow_figure` of a finished model workflow run."""
    coords = getattr(protocol, protocol.OUTPUT_NAME, None)
    tables = convert.read_coordinates(coords) if coords is not None else {}
    with ExitStack() as stack:  # memory maps: only one slice per tomogram is read
        entries = []
        for tsId in sorted(tables)[:max_tomograms]:
            table = tables[tsId]
            tomo = coords.getPrecedentsInvolved()[tsId]
            volume = stack.enter_context(convert.open_tomogram(tomo))[0]
            entries.append((tsId, volume, table.xyz, table.matrices[:, 2, :3], table.group_ids))
        return model_workflow_figure(entries)


class CryoSegModelWorkflowViewer(Viewer):
    """Cropping points with their orientations (particle z-axis = outward normal or filament axis)."""
    _label = 'viewer directional model workflow'
    _targets = [ProtCryoSegModelWorkflow]
    _environments = [DESKTOP_TKINTER, WEB_DJANGO]

    def _visualize(self, obj, **kwargs):
        return [Plotter(figure=protocol_figure(obj))]
