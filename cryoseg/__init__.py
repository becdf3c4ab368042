"""cryoseg: native Python masks, picking, directional models, extraction and picking consensus
for cryo-electron tomography, as a Scipion plugin.

The algorithms live in :mod:`cryoseg.core` (pure numpy/scipy, no Scipion import); the Scipion side
(protocols, viewers, wizards) converts objects to arrays only through :mod:`cryoseg.convert`.
"""
__version__ = '0.1.0'
_logo = 'icon.png'
_references = ['delaRosaTrevin2016', 'JimenezDeLaMorena2022']


def __getattr__(name):
    # Scipion reads cryoseg.Plugin; the CLI never needs it, and importing pwem costs it about
    # half a second of start-up, so the class is imported on first access only.
    if name == 'Plugin':
        from .scipion_plugin import Plugin
        return Plugin
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
