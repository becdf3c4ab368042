"""cryoseg wizards (form helpers shown as a wand next to a parameter)."""


# ------------------------------------------------------------------ extraction box size
from pyworkflow.viewer import DESKTOP_TKINTER  # noqa: E402,F811
from pyworkflow.wizard import Wizard  # noqa: E402,F811

from .protocols import ProtCryoSegExtract  # noqa: E402


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
        size = coords.getBoxSize() * coords.getSamplingRate() / tomos.getSamplingRate()
        return max(2, 2 * int(round(size / 2)))

    def show(self, form, *params):
        size = self.boxSize(form.protocol)
        if size is not None:
            form.setVar('boxSize', size)
