"""Looking at extracted and aligned subtomograms: a gallery of central slices of the first ones, and
the xy, xz and yz slices through the centre of the average. The figure functions take plain arrays,
so they run headless (Agg) in tests and in the demo report."""
import numpy as np
from pwem.viewers import EmPlotter
from pyworkflow.viewer import DESKTOP_TKINTER, WEB_DJANGO, Viewer

from .. import plots
from ..convert import tomogram_path
from ..core.mrcio import read_volume
from ..protocols import ProtCryoSegApplyAlignment, ProtCryoSegExtract

GALLERY_SIZE = 24
GALLERY_COLUMNS = 6


def draw_gallery(fig, volumes, titles=None, columns=GALLERY_COLUMNS):
    """Central xy slice of each volume ([z, y, x] arrays), one panel each, on ``columns`` columns."""
    titles = titles or [str(i + 1) for i in range(len(volumes))]
    rows = max(1, int(np.ceil(len(volumes) / columns)))
    for index, (volume, title) in enumerate(zip(volumes, titles)):
        ax = fig.add_subplot(rows, columns, index + 1)
        plots.plot_slice_with_points(ax, plots.orthogonal_slices(volume, smooth=0)[0], title=title)
    return fig


def draw_orthogonal_slices(fig, volume, title=''):
    """The xy, xz and yz slices through the centre of ``volume`` side by side."""
    for index, (image, name) in enumerate(zip(plots.orthogonal_slices(volume, smooth=0), ('xy', 'xz', 'yz'))):
        ax = fig.add_subplot(1, 3, index + 1)
        plots.plot_slice_with_points(ax, image, title=f'{title} {name}'.strip())
    return fig


def gallery_figure(volumes, titles=None, columns=GALLERY_COLUMNS):
    rows = max(1, int(np.ceil(len(volumes) / columns)))
    return draw_gallery(plots.plt.figure(figsize=(1.8 * columns, 1.9 * rows)), volumes, titles, columns)


def average_figure(volume, title='average'):
    return draw_orthogonal_slices(plots.plt.figure(figsize=(9, 3.4)), volume, title)


class CryoSegSubtomogramViewer(Viewer):
    """Gallery of the first subtomograms of an extraction or an alignment, and the average."""
    _label = 'subtomogram gallery and average'
    _targets = [ProtCryoSegExtract, ProtCryoSegApplyAlignment]
    _environments = [DESKTOP_TKINTER, WEB_DJANGO]

    def _visualize(self, obj, **kwargs):
        views = []
        subtomos = getattr(obj, 'subtomograms', None)
        if subtomos is not None and subtomos.getSize():
            items = [(s.getObjId(), tomogram_path(s)) for s in subtomos.iterItems(limit=GALLERY_SIZE)]
            volumes = [read_volume(path)[0] for _, path in items]
            rows = max(1, int(np.ceil(len(volumes) / GALLERY_COLUMNS)))
            plotter = EmPlotter(figsize=(1.8 * GALLERY_COLUMNS, 1.9 * rows),
                                windowTitle=f'First {len(volumes)} of {subtomos.getSize()} subtomograms')
            draw_gallery(plotter.getFigure(), volumes, [f'id {objId}' for objId, _ in items])
            views.append(plotter)
        average = getattr(obj, 'average', None)
        if average is not None:
            plotter = EmPlotter(figsize=(9, 3.4), windowTitle='Average')
            draw_orthogonal_slices(plotter.getFigure(), read_volume(tomogram_path(average))[0], 'average')
            views.append(plotter)
        return views
