"""Settings of the learned particle detector, shared by the protocols' forms and the CLI (no torch)."""
from dataclasses import dataclass

from ..core.errors import CryoSegInputError
from .candidates import PARTICLE_VOXELS


@dataclass
class DetectorSettings:
    """Training settings of the candidate detector (:mod:`cryoseg.learn.detector`).

    ``folds``: spatial cross-validation folds of the annotations; one network is trained per fold
    with that fold held back, scored every ``validate_every`` iterations (average precision of the
    held-back particles among the candidates of their region), stopped after ``patience`` scores
    without improvement (the best state is kept), and the detector is the average of the fold
    networks. ``target_recall``: the score threshold keeps this fraction of the held-back annotated
    particles that are candidates. ``min_strength``: candidates are blobs standing at least this
    many robust σ above the background. ``complete_annotation``: every particle of the training
    tomograms is annotated, so unannotated candidates are negatives (otherwise only clearly weaker
    blobs are; see :func:`cryoseg.learn.candidates.training_labels`). ``iterations`` is the most a fold trains; ``batch`` patches
    per iteration, half positive and half negative."""
    iterations: int = 400
    batch: int = 64
    learning_rate: float = 1e-3
    channels: tuple = (8, 16, 32)
    folds: int = 4
    validate_every: int = 25
    patience: int = 6
    target_recall: float = 0.9
    min_strength: float = 3.0
    complete_annotation: bool = False
    particle_voxels: float = PARTICLE_VOXELS
    seed: int = 0
    threads: int = 0  # CPU threads for torch; 0 keeps torch's choice

    def check(self):
        if self.iterations < 1 or self.batch < 2:
            raise CryoSegInputError('iterations must be at least 1 and the batch at least 2 patches')
        if self.learning_rate <= 0:
            raise CryoSegInputError('the learning rate must be positive')
        if len(self.channels) != 3 or min(self.channels) < 1:
            raise CryoSegInputError(f'network channels must be three positive whole numbers; got {self.channels}')
        if self.folds < 2:
            raise CryoSegInputError(f'cross-validation needs at least 2 folds; got {self.folds}')
        if self.validate_every < 1 or self.patience < 1:
            raise CryoSegInputError('the validation interval and the patience must be at least 1')
        if not 0 < self.target_recall <= 1:
            raise CryoSegInputError(f'the target recall must be in (0, 1]; got {self.target_recall}')
        if self.min_strength < 0 or self.particle_voxels <= 0:
            raise CryoSegInputError('the candidate strength must be >= 0 and the working particle size > 0')
