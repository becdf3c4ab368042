"""Training settings of the learned models, shared by the protocols' forms and the CLI (no torch).

The detector's defaults work at the particle's scale, so that training with them takes minutes on a
2-core CPU: the tomogram is binned until a particle is about ``particle_voxels`` voxels across (the
factor is derived from the diameter and the pixel size), one small U-Net predicts both the particle
mask and the centre map, and training stops early when the scores on held-back annotations stop
improving. A GPU runs the same settings faster.
"""
from dataclasses import dataclass

from ..core.errors import CryoSegInputError

PATCH_MULTIPLE = 4  # two poolings by 2


@dataclass
class TrainingSettings:
    """Settings of a training run (the mask network's defaults; :class:`DetectorSettings` holds the
    detector's). Adam β = (0.95, 0.99) as in the seed."""
    iterations: int = 1000
    batch: int = 4
    patch: int = 48
    learning_rate: float = 1e-3
    centre_learning_rate: float = 1e-3
    channels: tuple = (16, 32, 64)
    jitter: int = 5
    background_fraction: float = 0.25
    quarter_turns: bool = False
    checkpoint_every: int = 200
    seed: int = 0
    threads: int = 0  # CPU threads for torch; 0 keeps torch's choice

    def check(self):
        if self.iterations < 1 or self.batch < 1:
            raise CryoSegInputError('iterations and batch size must be at least 1')
        if self.patch < 2 * PATCH_MULTIPLE or self.patch % PATCH_MULTIPLE:
            raise CryoSegInputError(f'the training patch must be a multiple of {PATCH_MULTIPLE} voxels, at least '
                                    f'{2 * PATCH_MULTIPLE}; got {self.patch}')
        if self.learning_rate <= 0 or self.centre_learning_rate <= 0:
            raise CryoSegInputError('learning rates must be positive')
        if not 0 <= self.background_fraction <= 1:
            raise CryoSegInputError('the background fraction must be between 0 and 1')
        if len(self.channels) != 3 or min(self.channels) < 1:
            raise CryoSegInputError(f'network channels must be three positive whole numbers; got {self.channels}')


@dataclass
class DetectorSettings(TrainingSettings):
    """The particle detector's settings. ``patch`` and ``jitter`` are in voxels of the working
    (binned) scale; ``particle_voxels``: the particle diameter there (the binning factor is the
    largest whole number that keeps the particle at least this wide; 0 = never bin);
    ``positive_prior``: about 1 in how many particles is annotated (1: all); the class prior of the
    positive-unlabelled loss is this times the annotated voxel fraction (see
    :func:`cryoseg.learn.training.nnpu_loss`); ``validation_fraction`` of the annotations (a
    spatial slab of each tomogram) is held back and scored every ``validate_every`` iterations;
    training stops after ``patience`` validations without a better F1, and the best model is kept."""
    iterations: int = 600
    batch: int = 8
    patch: int = 24
    learning_rate: float = 2e-3
    centre_learning_rate: float = 2e-3
    channels: tuple = (16, 24, 32)
    jitter: int = 3
    particle_voxels: float = 4.0
    positive_prior: float = 3.0
    validation_fraction: float = 0.2
    validate_every: int = 25
    patience: int = 8
    checkpoint_every: int = 100

    def check(self):
        super().check()
        if self.particle_voxels < 0:
            raise CryoSegInputError(f'the working particle size must be >= 0 voxels; got {self.particle_voxels}')
        if self.positive_prior < 1:
            raise CryoSegInputError(f'the positive prior factor must be at least 1 (1 = every particle is '
                                    f'annotated); got {self.positive_prior}')
        if not 0 <= self.validation_fraction < 1:
            raise CryoSegInputError('the validation fraction must be at least 0 and below 1')
        if self.validate_every < 1 or self.patience < 1:
            raise CryoSegInputError('the validation interval and the patience must be at least 1')
