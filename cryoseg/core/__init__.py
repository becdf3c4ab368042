"""cryoseg's algorithms as plain numpy/scipy functions.

Nothing under this package imports pyworkflow, pwem or tomo (a test enforces it), so every
algorithm can be read, tested and reused without Scipion.
"""
