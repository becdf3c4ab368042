"""Viewer of the directional model workflow: per tomogram, an xy slice through the cropping points with
their normals drawn as arrows (projected) and, when the models were refined against the density, the
fitted and refined surfaces where they cross the slice; a 3-D view of the points and normals coloured by
geometry; and the histogram of the per-point shift from the fitted to the refined surface."""
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


def surfaces_on_slice(ax, z, fitted, refined):
    """Fitted and refined surface points within a few voxels of slice ``z`` (xy), drawn over it."""
    for points, colour, label in ((fitted, 'magenta', 'fitted model'), (refined, 'lime', 'refined surface')):
        points = np.asarray(points, float).reshape(-1, 3)
        near = np.abs(points[:, 2] - z) <= 1.0
        if near.any():
            ax.scatter(points[near, 0], points[near, 1], s=5, c=colour, label=label, linewidths=0)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, loc='upper right', markerscale=4)


def shift_histogram(ax, shifts, unit, title):
    """Histogram of the per-cropping-point shifts from the fitted to the refined surface."""
    shifts = np.asarray(shifts, float)
    shifts = shifts[np.isfinite(shifts)]
    if len(shifts):
        ax.hist(shifts, bins=30, color='tab:green')
        ax.axvline(np.median(shifts), color='k', linestyle='--', label=f'median {np.median(shifts):.1f} {unit}')
        ax.legend(fontsize=7)
    else:
        ax.text(0.5, 0.5, 'not refined against the density', ha='center', va='center', transform=ax.transAxes)
    ax.set_xlabel(f'shift along the normal, fitted → refined ({unit})')
    ax.set_ylabel('cropping points')
    ax.set_title(title, fontsize=9)


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


def model_workflow_figure(entries, arrow_length=6.0, shift_unit='Å'):
    """Per ``(title, volume[z, y, x], xyz, normals, group ids[, shifts, fitted surface, refined surface])``
    entry: a slice through the middle of the points with their normals and (refined) the two surfaces,
    the 3-D view, and the histogram of the shifts when the models were refined."""
    refined_any = any(len(entry) > 5 and np.isfinite(np.asarray(entry[5], float)).any() for entry in entries)
    columns = 3 if refined_any else 2
    fig = plots.plt.figure(figsize=(5 * columns, 4.8 * max(len(entries), 1)))
    for row, entry in enumerate(entries):
        title, volume, xyz, normals, group_ids = entry[:5]
        shifts, fitted, refined = entry[5:8] if len(entry) > 5 else (np.zeros(0), np.zeros((0, 3)), np.zeros((0, 3)))
        xyz, normals = np.asarray(xyz, float).reshape(-1, 3), np.asarray(normals, float).reshape(-1, 3)
        z = int(np.median(xyz[:, 2])) if len(xyz) else volume.shape[0] // 2
        image = plots.orthogonal_slices(volume, (z, 0, 0))[0]
        ax = fig.add_subplot(len(entries), columns, columns * row + 1)
        normals_slice(ax, image, z, xyz, normals, arrow_length, title)
        surfaces_on_slice(ax, z, fitted, refined)
        normals_3d(fig.add_subplot(len(entries), columns, columns * row + 2, projection='3d'), xyz, normals,
                   np.asarray(group_ids), arrow_length, f'{title}: {len(xyz)} cropping points')
        if refined_any:
            shift_histogram(fig.add_subplot(len(entries), columns, columns * row + 3), shifts, shift_unit,
                            f'{title}: refined against the density')
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
            saved = np.load(protocol._resultPath(tsId))
            shifts = saved['shifts'] if 'shifts' in saved else np.zeros(0)
            fitted = saved['fitted_surface'] if 'fitted_surface' in saved else np.zeros((0, 3))
            refined = saved['refined_surface'] if 'refined_surface' in saved else np.zeros((0, 3))
            entries.append((tsId, volume, table.xyz, table.matrices[:, 2, :3], table.group_ids, shifts, fitted,
                            refined))
        return model_workflow_figure(entries)


class CryoSegModelWorkflowViewer(Viewer):
    """Cropping points with their orientations (particle z-axis = outward normal or filament axis)."""
    _label = 'viewer directional model workflow'
    _targets = [ProtCryoSegModelWorkflow]
    _environments = [DESKTOP_TKINTER, WEB_DJANGO]

    def _visualize(self, obj, **kwargs):
        return [Plotter(figure=protocol_figure(obj))]
