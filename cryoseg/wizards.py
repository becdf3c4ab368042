"""cryoseg wizards (form helpers shown as a wand next to a parameter)."""
from pyworkflow.viewer import DESKTOP_TKINTER
from pyworkflow.wizard import Wizard

from . import convert, plots
from .core.errors import CryoSegInputError
from .core.statmask import make_mask, mask_fraction, mask_warnings
from .protocols import ProtCryoSegExtract, ProtCryoSegMakeMask, ProtCryoSegModelWorkflow


def _even(size):
    return max(2, 2 * int(round(size / 2)))


# --------------------------------------------------------------------------------- make mask


def makeMaskPreviewFigure(protocol):
    """Figure of the mask the form's current values give on the first input tomogram (central
    xy, xz and yz slices with the mask outlined). Raises CryoSegInputError with a message to show."""
    tomograms = protocol.inputTomograms.get()
    if tomograms is None or tomograms.getSize() == 0:
        raise CryoSegInputError('Choose the input tomograms first.')
    tomogram = tomograms.getFirstItem().clone()
    settings = protocol.maskSettings(tomogram.getSamplingRate())
    with convert.open_tomogram(tomogram) as (volume, _):
        mask = make_mask(volume, **settings)
        fraction = mask_fraction(mask)
        title = ' — '.join([f'{tomogram.getTsId()}: {100 * fraction:.1f} % kept'] + mask_warnings(fraction))
        return plots.mask_overview_figure([(title, volume, mask)])


class CryoSegMaskPreviewWizard(Wizard):
    """Shows the mask that the current values give on the first tomogram, to tune them before running."""
    _targets = [(ProtCryoSegMakeMask, ['percentile', 'threshold', 'stdPercentile', 'blockSize'])]
    _environments = [DESKTOP_TKINTER]

    def show(self, form, *params):
        from pyworkflow.gui.dialog import showError
        from pyworkflow.gui.plotter import Plotter

        try:
            figure = makeMaskPreviewFigure(form.protocol)
        except CryoSegInputError as err:
            showError('Mask preview', str(err), form.root)
            return
        Plotter(figure=figure).show()


# ------------------------------------------------------------------ extraction box size


class CryoSegExtractBoxSizeWizard(Wizard):
    """Proposes the coordinates' box size, rescaled to the pixel size of the tomograms extracted from."""
    _targets = [(ProtCryoSegExtract, ['boxSize'])]
    _environments = [DESKTOP_TKINTER]

    @staticmethod
    def boxSize(protocol):
        """Coordinates' box × coordinates' sampling / extraction tomograms' sampling, rounded to an
        even size; None when the inputs are not chosen yet."""
        coords = protocol.inputCoordinates.get()
        if coords is None or not coords.getBoxSize():
            return None
        tomos = protocol._sourceTomogramSet()
        if tomos is None:
            return None
        return _even(coords.getBoxSize() * coords.getSamplingRate() / tomos.getSamplingRate())

    def show(self, form, *params):
        size = self.boxSize(form.protocol)
        if size is not None:
            form.setVar('boxSize', size)


# ------------------------------------------------------------------ directional model box size
class CryoSegModelWorkflowBoxSizeWizard(Wizard):
    """Proposes the box size of the input points (the picking's box), made even."""
    _targets = [(ProtCryoSegModelWorkflow, ['boxSize'])]
    _environments = [DESKTOP_TKINTER]

    @staticmethod
    def boxSize(protocol):
        """The input set's box size made even; None when no input or no box is set."""
        points = protocol.inputMeshes.get() if protocol.inputMeshes.hasValue() else None
        if points is None or not points.getBoxSize():
            return None
        return _even(points.getBoxSize())

    def show(self, form, *params):
        size = self.boxSize(form.protocol)
        if size is not None:
            form.setVar('boxSize', size)
