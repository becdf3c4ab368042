"""cryoseg: native Python masks, picking, directional models, extraction and picking consensus
for cryo-electron tomography, as a Scipion plugin.

The algorithms live in :mod:`cryoseg.core` (pure numpy/scipy, no Scipion import); the Scipion side
(protocols, viewers, wizards) converts objects to arrays only through :mod:`cryoseg.convert`.
"""
import pwem
import pyworkflow

__version__ = '0.1.0'
_logo = 'icon.png'
_references = ['delaRosaTrevin2016', 'JimenezDeLaMorena2022']


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
