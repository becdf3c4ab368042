"""Viewer of segdiam pick: the diameter histogram with accepted and rejected size clusters, the
accepted [minv, maxv] band, box and mask diameters; an xy slice of each tomogram with its picks drawn
at their diameter."""
import json
from contextlib import ExitStack

import numpy as np
from emtable import Table
from matplotlib.patches import Circle
from pyworkflow.gui.plotter import Plotter
from pyworkflow.viewer import DESKTOP_TKINTER, WEB_DJANGO, Viewer

from .. import convert, plots
from ..protocols.protocol_segdiam_pick import ProtCryoSegSegDiamPick

MAX_TOMOGRAMS_SHOWN = 4


def diameter_histogram(ax, diameters, accepted, estimate):
    """Stacked histogram of all diameters (Å): accepted clusters green, rejected grey; the re-pick
    band [minv, maxv], the box edge (box × pixel) and the mask diameter when there is an estimate."""
    diameters = np.asarray(diameters, float)
    accepted = np.asarray(accepted, bool)
    if not estimate.get('ok'):
        ax.set_title('No size estimate: ' + estimate.get('reason', '')[:80], fontsize=8)
    if not len(diameters):
        ax.text(0.5, 0.5, 'no diameters', ha='center', va='center', transform=ax.transAxes)
        return
    bins = np.histogram_bin_edges(diameters, bins=min(60, max(10, len(diameters) // 3)))
    ax.hist([diameters[accepted], diameters[~accepted]], bins=bins, stacked=True,
            color=['tab:green', 'tab:gray'], label=['accepted clusters', 'rejected clusters'])
    if estimate.get('ok'):
        ax.axvspan(estimate['minv'], estimate['maxv'], color='tab:green', alpha=0.15, label='re-pick range')
        ax.axvline(estimate['mask_diameter'], color='tab:blue', linestyle='--',
                   label=f"mask diameter {estimate['mask_diameter']:.0f} Å")
        ax.axvline(estimate['box'] * estimate['pixel_size'], color='tab:red', linestyle=':',
                   label=f"box {estimate['box']} px = {estimate['box'] * estimate['pixel_size']:.0f} Å")
        ax.set_title(f"Diameters: median {estimate['after']['median']:.0f} Å accepted of "
                     f"{estimate['before']['n']} blobs", fontsize=9)
    ax.set_xlabel('diameter (Å)')
    ax.set_ylabel('blobs')
    ax.legend(fontsize=7)


def picks_slice(ax, volume, xyz, diameters_px, title, z=None):
    """The xy slice at ``z`` (default: the median z of the picks) with each pick that crosses it drawn
    as the circle of its cross-section."""
    xyz = np.asarray(xyz, float).reshape(-1, 3)
    radii = np.asarray(diameters_px, float) / 2
    if z is None:
        z = int(np.median(xyz[:, 2])) if len(xyz) else volume.shape[0] // 2
    plots.plot_slice_with_points(ax, plots.orthogonal_slices(volume, (z, 0, 0))[0], title=f'{title}, z={z}')
    for (x, y, pz), radius in zip(xyz, radii):
        depth = abs(pz - z)
        if depth < radius:
            ax.add_patch(Circle((x, y), np.sqrt(radius ** 2 - depth ** 2), fill=False, color='cyan', lw=0.9))


def segdiam_figure(entries, diameters, accepted, estimate):
    """Histogram, then one slice per ``(title, volume, picks xyz, diameters in px)`` entry."""
    count = 1 + len(entries)
    columns = min(count, 3)
    rows = int(np.ceil(count / columns))
    fig, axes = plots.plt.subplots(rows, columns, figsize=(5 * columns, 4.6 * rows), squeeze=False)
    axes = axes.ravel()
    diameter_histogram(axes[0], diameters, accepted, estimate)
    for ax, (title, volume, xyz, diameters_px) in zip(axes[1:], entries):
        picks_slice(ax, volume, xyz, diameters_px, title)
    for ax in axes[count:]:
        ax.axis('off')
    return fig


def protocol_figure(protocol, max_tomograms=MAX_TOMOGRAMS_SHOWN):
    """:func:`segdiam_figure` of a finished (or partly finished) segdiam pick run."""
    try:
        with open(protocol._estimatePath()) as handle:
            estimate = json.load(handle)
    except (OSError, ValueError):
        estimate = {'ok': False, 'reason': 'the statistics step has not run yet'}
    rows = []
    if estimate.get('before', {}).get('n'):  # emtable cannot read back a table without rows
        rows = list(Table(fileName=protocol._getExtraPath('diameters.star'), tableName='diameters'))
    diameters = np.array([r.cryosegDiameter for r in rows], float)
    accepted = np.array([r.cryosegAccepted for r in rows], bool)
    tomograms = convert.tomograms_by_tsid(protocol.inputTomograms.get())
    sampling = protocol.inputTomograms.get().getSamplingRate()
    with ExitStack() as stack:  # memory maps: only one slice per tomogram is read
        entries = []
        for tsId in list(tomograms)[:max_tomograms]:
            mine = [r for r in rows if r.rlnTomoName == tsId and estimate.get('ok')
                    and estimate['minv'] <= r.cryosegDiameter <= estimate['maxv']]
            volume = stack.enter_context(convert.open_tomogram(tomograms[tsId]))[0]
            entries.append((tsId, volume, [(r.rlnCoordinateX, r.rlnCoordinateY, r.rlnCoordinateZ) for r in mine],
                            [r.cryosegDiameter / sampling for r in mine]))
        return segdiam_figure(entries, diameters, accepted, estimate)


class CryoSegSegDiamViewer(Viewer):
    """Diameter histogram with the accepted size range, box and mask diameters, and slices of the
    tomograms with the picks drawn at their diameter."""
    _label = 'viewer segdiam pick'
    _targets = [ProtCryoSegSegDiamPick]
    _environments = [DESKTOP_TKINTER, WEB_DJANGO]

    def _visualize(self, obj, **kwargs):
        return [Plotter(figure=protocol_figure(obj))]
