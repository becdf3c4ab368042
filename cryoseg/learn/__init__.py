"""Learned particle detection (MaskNet + CenterNet) and semantic masks (3-D U-Net).

Separate from :mod:`cryoseg.core`: the networks need the optional ``ml`` extra (torch, MONAI), which
is imported only when a network is built, trained or run. Label generation, patch sampling and tiled
inference are numpy and work without it; the post-processing and the scores are in
:mod:`cryoseg.core.detection` and :mod:`cryoseg.core.evaluation`.
"""
import importlib

import numpy as np

from ..core.errors import CryoSegInputError

INSTALL_HINT = "pip install 'scipion-em-cryoseg[ml]'"


class MissingMLError(CryoSegInputError):
    """The optional machine-learning packages are not installed."""


def missing_ml_message():
    """None when torch and MONAI can be imported, else a sentence saying what to install."""
    missing = []
    for module in ('torch', 'monai'):
        try:
            importlib.import_module(module)
        except ImportError:
            missing.append(module)
    if not missing:
        return None
    return (f"The learned protocols need {' and '.join(missing)}, which {'is' if len(missing) == 1 else 'are'} "
            f"not installed in Scipion's Python. Install a torch build for your machine first (CPU or "
            f"CUDA, see pytorch.org), then run: {INSTALL_HINT}")


def require_ml():
    """Raise :class:`MissingMLError` with the install instruction when torch or MONAI is missing."""
    message = missing_ml_message()
    if message:
        raise MissingMLError(message)


def read_loss_log(path):
    """``{column: array}`` of a training loss log (CSV: iteration, then one loss per network)."""
    table = np.genfromtxt(path, delimiter=',', names=True, ndmin=1)
    return {name: np.atleast_1d(table[name]) for name in table.dtype.names}
