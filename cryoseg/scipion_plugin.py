"""The Scipion plugin class of cryoseg (exposed as ``cryoseg.Plugin``)."""
import pwem
import pyworkflow

from . import __version__


class Plugin(pwem.Plugin):
    """cryoseg runs in Scipion's own Python: it needs no external binary, so it declares no
    path variables and protocol validation passes on a pip-only installation."""
    _url = 'https://github.com/cryoseg/scipion-em-cryoseg'
    _processingField = [pyworkflow.TOMO]
    _pathVars = []
    _supportedVersions = [__version__]

    @classmethod
    def _defineVariables(cls):
        """No variables: everything cryoseg needs is installed with the package."""
