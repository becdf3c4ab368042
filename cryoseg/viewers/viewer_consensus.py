"""Viewer of the picking consensus: how many pickings agreed (vote histogram) and where (slices with
the kept picks coloured by their votes)."""
import numpy as np
from pyworkflow.gui.plotter import Plotter
from pyworkflow.viewer import DESKTOP_TKINTER, WEB_DJANGO, Viewer

from .. import convert, plots
from ..protocols.protocol_consensus import ProtCryoSegPickingConsensus

MAX_TOMOGRAMS_SHOWN = 4
SLAB_HALF_THICKNESS = 2  # voxels averaged on each side of the shown slice


def vote_histogram(ax, vote_counts, n_sets, needed=None):
    """Bars of the number of particles found by 1..n_sets pickings; ``needed`` marks the threshold."""
    counts = np.zeros(n_sets + 1, int)
    for row in vote_counts:
        counts[:len(row)] += np.asarray(row, int)[:n_sets + 1]
    votes = np.arange(1, n_sets + 1)
    colors = plots.plt.get_cmap('viridis')(np.linspace(0, 1, n_sets))
    ax.bar(votes, counts[1:], color=colors)
    if needed is not None:
        ax.axvline(needed - 0.5, color='red', linestyle='--', linewidth=1, label=f'kept: {needed} votes')
        ax.legend(fontsize=8)
    ax.set_xticks(votes)
    ax.set_xlabel('pickings that found the particle (votes)')
    ax.set_ylabel('particles')
    ax.set_title('Votes of all matched particles', fontsize=9)


def picks_by_votes(ax, image, xy, votes, n_sets, title=''):
    """A slice with picks (x, y) as circles coloured by their votes (1..n_sets)."""
    colormap = plots.plt.get_cmap('viridis')
    colors = colormap((np.asarray(votes, float) - 1) / max(n_sets - 1, 1)) if len(votes) else None
    plots.plot_slice_with_points(ax, image, xy, title=title, colors=colors)


def consensus_overview_figure(vote_counts, n_sets, entries, needed=None):
    """The vote histogram and, per entry ``(tsId, slab image [y, x], z, xyz picks, votes)``, the slab
    with its picks. Works headless (Agg)."""
    fig, axes = plots.plt.subplots(1, 1 + len(entries), figsize=(4.5 * (1 + len(entries)), 4.5),
                                   squeeze=False)
    vote_histogram(axes[0, 0], vote_counts, n_sets, needed)
    for ax, (ts_id, image, z, xyz, votes) in zip(axes[0, 1:], entries):
        picks_by_votes(ax, image, np.asarray(xyz, float).reshape(-1, 3)[:, :2], votes, n_sets,
                       title=f'{ts_id}: {len(votes)} kept picks (all z), slice z={z}')
    return fig


def consensus_figure(protocol, max_tomograms=MAX_TOMOGRAMS_SHOWN):
    """Figure of a finished :class:`ProtCryoSegPickingConsensus` run."""
    report = protocol.getReport()
    n_sets = report.get('n_sets', 2)
    output = getattr(protocol, 'consensusCoordinates', None)
    entries = []
    if output is not None and output.getSize():
        tomograms = convert.tomograms_by_tsid(output.getPrecedents())
        for ts_id, table in list(convert.read_coordinates(output).items())[:max_tomograms]:
            with convert.open_tomogram(tomograms[ts_id]) as (volume, _):
                z = int(np.clip(np.median(table.xyz[:, 2]), 0, volume.shape[0] - 1))
                slab = np.asarray(volume[max(z - SLAB_HALF_THICKNESS, 0):z + SLAB_HALF_THICKNESS + 1],
                                  np.float32).mean(0)
            entries.append((ts_id, slab, z, table.xyz, table.scores))
    k = protocol.consensus.get()
    needed = n_sets if k == -1 else k
    return consensus_overview_figure([row['votes'] for row in report.get('tomograms', {}).values()],
                                     n_sets, entries, needed)


class CryoSegConsensusViewer(Viewer):
    """Vote histogram of the picking consensus and, per tomogram, a slice with the kept picks
    coloured by the number of pickings that found them."""
    _label = 'viewer picking consensus'
    _targets = [ProtCryoSegPickingConsensus]
    _environments = [DESKTOP_TKINTER, WEB_DJANGO]

    def _visualize(self, obj, **kwargs):
        return [Plotter(figure=consensus_figure(obj))]
