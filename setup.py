"""Packaging of scipion-em-cryoseg, a Scipion plugin for cryo-electron tomography."""
import re
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent
VERSION = re.search(r"^__version__ = '([^']+)'", (HERE / 'cryoseg' / '__init__.py').read_text(), re.M).group(1)

setup(
    name='scipion-em-cryoseg',
    version=VERSION,
    description='Native Python masks, picking, directional models, extraction and consensus '
                'for cryo-electron tomography in Scipion',
    long_description=(HERE / 'README.rst').read_text(),
    long_description_content_type='text/x-rst',
    license='GPLv3',
    python_requires='>=3.8',
    packages=find_packages(exclude=['bench']),
    package_data={'cryoseg': ['protocols.conf', 'icon.png', 'workflows/*.json',
                           'tests/data/*/*']},
    # Ranges follow what scipion-pyworkflow 3.11 and scipion-em 3.11 pin (numpy 1.26, scipy <= 1.10).
    install_requires=[
        'scipion-pyworkflow>=3.11,<3.12',
        'scipion-em>=3.11,<3.12',
        'scipion-em-tomo>=3.12,<3.13',
        'numpy>=1.26,<1.27',
        'scipy>=1.9,<=1.10.0',
        'mrcfile>=1.4',
        'scikit-image>=0.21,<0.25',
        'emtable>=0.0.14',
        'matplotlib>=3.7',
    ],
    extras_require={
        'test': ['pytest>=7', 'hypothesis>=6'],
        # Learned detectors and masks (cryoseg.learn). Install a CPU or CUDA build of torch first
        # (e.g. `pip install torch==2.13.0`) so this range does not pull a different build.
        'ml': ['torch>=2.8', 'monai>=1.5,<1.7'],
    },
    entry_points={
        'pyworkflow.plugin': ['cryoseg = cryoseg'],
        'console_scripts': ['cryoseg = cryoseg.cli:main'],
    },
    classifiers=[
        'Programming Language :: Python :: 3',
        'Topic :: Scientific/Engineering :: Bio-Informatics',
    ],
)
