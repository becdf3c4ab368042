"""Viewer of the make-mask protocol: central slices with the mask outline, and the kept fractions."""
from contextlib import ExitStack

from pyworkflow.gui.plotter import Plotter
from pyworkflow.viewer import DESKTOP_TKINTER, WEB_DJANGO, Viewer

from .. import convert, plots
from ..core.statmask import mask_warnings
from ..protocols.protocol_make_mask import ProtCryoSegMakeMask

MAX_TOMOGRAMS_SHOWN = 4
TABLE_HEADER = ('tomogram', 'voxels kept (%)', 'coordinates inside', 'note')


def fraction_table(protocol):
    """Rows of :data:`TABLE_HEADER`, one per masked or failed tomogram."""
    rows = []
    for tsId, stats in protocol.getMaskStats().items():
        inside = f"{stats['inside']} / {stats['total']}" if 'total' in stats else '-'
        rows.append((tsId, f"{100 * stats['fraction']:.2f}", inside, '; '.join(mask_warnings(stats['fraction']))))
    rows += [(tsId, '-', '-', f'failed: {message}') for tsId, message in protocol.getFailures().items()]
    return rows


def mask_figure(protocol, max_tomograms=MAX_TOMOGRAMS_SHOWN):
    """Matplotlib figure of the protocol's output (first ``max_tomograms`` tomograms) and its fraction table."""
    masks = getattr(protocol, ProtCryoSegMakeMask.OUTPUT_NAME, None)
    maskFiles = {} if masks is None else convert.tomograms_by_tsid(masks)
    tomograms = convert.tomograms_by_tsid(protocol.inputTomograms.get())
    shown = [tsId for tsId in tomograms if tsId in maskFiles][:max_tomograms]
    with ExitStack() as stack:  # memory maps: only the three slices of each volume are read
        entries = [(tsId, stack.enter_context(convert.open_tomogram(tomograms[tsId]))[0],
                    stack.enter_context(convert.open_tomogram(maskFiles[tsId]))[0]) for tsId in shown]
        return plots.mask_overview_figure(entries, TABLE_HEADER, fraction_table(protocol))


class CryoSegMakeMaskViewer(Viewer):
    """Central xy, xz and yz slices of each tomogram with its mask outlined, and the fraction of
    voxels each mask keeps (with the coordinates inside when the protocol was given coordinates)."""
    _label = 'viewer make mask'
    _targets = [ProtCryoSegMakeMask]
    _environments = [DESKTOP_TKINTER, WEB_DJANGO]

    def _visualize(self, obj, **kwargs):
        return [Plotter(figure=mask_figure(obj))]
