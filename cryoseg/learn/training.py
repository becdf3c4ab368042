"""Training and applying cryoseg's learned models (torch; imported only when needed).

A model file (``torch.save`` of a dict) holds its kind ('detector': MaskNet + CenterNet, or 'mask':
a semantic 3-D U-Net), the networks' architectures and weights, the patch size, the voxel size and,
for detectors, the particle diameter it was trained for, plus the training history. Training writes
the model file every ``checkpoint_every`` iterations (so an interrupted run leaves a usable model) and
appends every iteration's losses to a CSV loss log.
"""
import csv
import logging
import os
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from . import require_ml
from ..core.detection import detect
from ..core.errors import CryoSegInputError
from ..core.evaluation import Score, score_points
from .labels import detection_targets
from .patches import PatchSampler
from .scale import bin_volume, unbin_map, working_binning
from .settings import PATCH_MULTIPLE, DetectorSettings, TrainingSettings
from .split import spatial_split
from .tiling import check_tiling, predict_tiled, zscore

require_ml()

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from .networks import build, device  # noqa: E402

logger = logging.getLogger(__name__)
FORMAT = 'cryoseg-model-1'
DETECTOR, MASK = 'detector', 'mask'


def dice_loss(probability, target, eps=1.0):
    """1 − Dice coefficient over the whole batch (soft, on probabilities)."""
    overlap = (probability * target).sum()
    return 1 - (2 * overlap + eps) / (probability.sum() + target.sum() + eps)


def nnpu_loss(logits, positive, weights, prior_factor):
    """Class-balanced non-negative positive–unlabelled risk (Kiryo et al. 2017, Algorithm 1 with
    β = 0, γ = 1; balanced as in Su et al. 2021) of voxel logits, with the logistic loss.
    ``positive``: 1 on voxels of annotated particles, whose logits form the positive sample; all
    voxels of weight 1 (annotated or not) form the unlabelled sample, drawn from the mixture of
    particles and background; voxels of weight 0 are ignored.

    The class prior π (the fraction of voxels inside particles) comes from the batch: if the annotated
    particles are 1 in ``prior_factor`` of those present and the others are spread like them,
    π = ``prior_factor`` × f, f the annotated voxel fraction. Plain cross-entropy teaches every
    unannotated particle as background (a detector trained on 53 of a tomogram's ribosomes finds only
    those); here the unlabelled risk less the particles' share of it (π times the annotated voxels'
    risk as negatives), divided by 1 − π, estimates the background's mean risk, and clipping it at 0
    keeps a flexible network from driving it below zero by memorising the unlabelled set. Particles
    fill a few percent of a tomogram: the particle and background risks are weighted equally, so
    that a probability of 0.5 separates them (with ``prior_factor`` 1 the risk is the class-balanced
    cross-entropy of annotated particles against everything else).

    Returns ``(loss to minimise, clipped risk to report)``.

    References: R. Kiryo, G. Niu, M. C. du Plessis, M. Sugiyama, Positive-unlabeled learning with
    non-negative risk estimator, NeurIPS 2017; G. Su, W. Chen, M. Xu, Positive-unlabeled learning
    from imbalanced data, IJCAI 2021; T. Bepler et al., Positive-unlabeled convolutional neural
    networks for particle picking in cryo-electron micrographs, Nat. Methods 16:1153 (2019).

    >>> import torch
    >>> logits, positive = torch.tensor([2.0, -1.0, 0.5, -3.0]), torch.tensor([1.0, 0.0, 0.0, 0.0])
    >>> loss, risk = nnpu_loss(logits, positive, torch.ones(4), 1.0)
    >>> balanced = 0.5 * F.softplus(-logits[0]) + 0.5 * F.softplus(logits[1:]).mean()
    >>> bool(torch.isclose(risk, balanced))
    True
    """
    labelled = positive * weights
    n_labelled, n_all = labelled.sum().clamp(min=1), weights.sum().clamp(min=1)
    prior = (prior_factor * labelled.sum() / n_all).clamp(max=0.9).detach()
    as_positive, as_negative = F.softplus(-logits), F.softplus(logits)
    risk_positive = (as_positive * labelled).sum() / n_labelled
    risk_negative = ((as_negative * weights).sum() / n_all
                     - prior * (as_negative * labelled).sum() / n_labelled) / (1 - prior)
    if risk_negative.item() < 0:  # overfitting: step back up the negative risk instead
        return -risk_negative, 0.5 * risk_positive
    risk = 0.5 * (risk_positive + risk_negative)
    return risk, risk


def _set_threads(threads):
    if threads:
        torch.set_num_threads(int(threads))


def device_description(where):
    """Which device training or inference runs on, for the log."""
    if where.type == 'cuda':
        return f'GPU {torch.cuda.get_device_name(where)}'
    return f'CPU ({torch.get_num_threads()} threads)'


class _LossLog:
    """The CSV loss log: one row per iteration, one column per loss term, then the validation
    scores (empty except on validation iterations)."""

    def __init__(self, path, loss_names, scored):
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        self.handle = open(path, 'w', newline='')
        self.writer = csv.writer(self.handle)
        self.scored = scored
        self.writer.writerow(['iteration'] + [f'{name}_loss' for name in loss_names]
                             + (list(VALIDATION_COLUMNS) if scored else []))

    def write(self, iteration, losses, score=None):
        row = [iteration] + [f'{value:.6g}' for value in losses]
        if self.scored:
            row += ([f'{score.recall:.4f}', f'{score.precision:.4f}', f'{score.f1:.4f}'] if score else ['', '', ''])
        self.writer.writerow(row)

    def close(self):
        self.handle.close()


VALIDATION_COLUMNS = ('val_recall', 'val_precision', 'val_f1')


def _train(net, step, sampler, settings, model_path, loss_log, header, validate=None):
    """Common loop: every iteration draws a batch and updates ``net`` on the sum of the loss terms
    ``step(net, inputs, targets)`` returns (``{name: (loss to minimise, value to log)}``). Without
    ``validate`` the model file is rewritten every ``checkpoint_every`` iterations and at the end;
    with it (a callable returning the validation :class:`Score` of ``net``), every
    ``validate_every`` iterations the net is scored, the model file keeps the best-scoring weights
    (F1, then recall, then the later iteration) and training stops after ``patience`` validations
    without a better score."""
    settings.check()
    _set_threads(settings.threads)
    torch.manual_seed(settings.seed)
    where = device()
    logger.info('training on %s', device_description(where))
    # channels-last: oneDNN's 3-D convolutions run about twice as fast on a CPU
    net.to(where, memory_format=torch.channels_last_3d).train()
    optimiser = torch.optim.Adam(net.parameters(), lr=settings.learning_rate, betas=(0.95, 0.99))
    history, validation = {}, {column: [] for column in ('val_iteration',) + VALIDATION_COLUMNS}
    log = None
    started = time.time()
    best, stale = None, 0

    def save(iteration):
        header["history"] = dict(**history, **validation, seconds=time.time() - started, iterations=iteration,
                                 device=where.type)
        save_model(model_path, header, net)

    try:
        for iteration in range(1, settings.iterations + 1):
            inputs, targets = sampler.sample(settings.batch)
            inputs = torch.from_numpy(inputs).to(where, memory_format=torch.channels_last_3d)
            terms = step(net, inputs, torch.from_numpy(targets).to(where))
            if log is None:
                log = _LossLog(loss_log, list(terms), validate is not None)
            optimiser.zero_grad()
            sum(minimised for minimised, _ in terms.values()).backward()
            optimiser.step()
            for name, (_, value) in terms.items():
                history.setdefault(name, []).append(value.item())
            score = None
            if validate is not None and (iteration % settings.validate_every == 0 or iteration == settings.iterations):
                net.eval()
                score = validate(net)
                net.train()
                for column, value in zip(validation, (iteration, score.recall, score.precision, score.f1)):
                    validation[column].append(value)
            log.write(iteration, [values[-1] for values in history.values()], score)
            losses = ', '.join(f'{name} loss {values[-1]:.4f}' for name, values in history.items())
            if score is not None:
                key = (score.f1, score.recall)
                improved = best is None or key > best[0]
                if best is None or key >= best[0]:
                    best = (key, iteration)
                    header['best_iteration'] = iteration
                    save(iteration)
                stale = 0 if improved else stale + 1
                logger.info('iteration %d of %d: %s; held-back annotations: recall %.2f, precision %.2f, F1 %.2f '
                            '(best F1 %.2f at iteration %d) (%.0f s)', iteration, settings.iterations, losses,
                            score.recall, score.precision, score.f1, best[0][0], best[1], time.time() - started)
                if stale >= settings.patience:
                    logger.info('stopping: no better F1 on the held-back annotations in %d validations', stale)
                    break
            elif validate is None and (iteration % settings.checkpoint_every == 0
                                       or iteration == settings.iterations):
                save(iteration)
                logger.info('iteration %d of %d: %s (%.0f s); model saved to %s', iteration, settings.iterations,
                            losses, time.time() - started, model_path)
    finally:
        if log is not None:
            log.close()
    if validate is not None:  # the file holds the best weights; record the whole run's history in it
        state = torch.load(model_path, map_location='cpu', weights_only=True)
        state["history"] = dict(**history, **validation, seconds=time.time() - started, iterations=iteration,
                                device=where.type, best_iteration=best[1])
        _write_atomically(state, model_path)
        logger.info('kept the model of iteration %d (F1 %.2f on the held-back annotations)', best[1], best[0][0])
    return header['history'] if validate is None else state['history']


def _write_atomically(state, path):
    temporary = f'{path}.partial'
    torch.save(state, temporary)
    os.replace(temporary, path)


def save_model(path, header, net):
    """Write the model file atomically (a reader never sees half a file); ``net`` is the network of
    the header's single architecture."""
    name, = header['architectures']
    _write_atomically(dict(header, format=FORMAT,
                           weights={name: {k: v.detach().cpu() for k, v in net.state_dict().items()}}), path)


@dataclass
class DetectorData:
    """Training data of the detector at its working scale: z-scored binned volumes, their targets
    [positive, centre, weight] and training annotations, and per tomogram the held-back annotations
    and the split (voxels of the working scale)."""
    binning: int
    diameter: float  # working voxels
    volumes: list
    targets: list
    training: list
    splits: list


def detector_data(volumes, centres_xyz, diameter_px, settings):
    """:class:`DetectorData` of tomograms ``volumes`` annotated with ``centres_xyz`` (original
    voxels) for particles of ``diameter_px`` original voxels."""
    binning = working_binning(diameter_px, settings.particle_voxels)
    diameter = diameter_px / binning
    data = DetectorData(binning, diameter, [], [], [], [])
    for volume, centres in zip(volumes, centres_xyz):
        working = zscore(bin_volume(volume, binning))
        centres = np.asarray(centres, float).reshape(-1, 3)
        # a block mean of b voxels is centred at b i + (b - 1) / 2 original voxels
        centres = (centres - (binning - 1) / 2) / binning
        split = spatial_split(centres, working.shape, settings.validation_fraction)
        labels = detection_targets(working.shape, split.training, diameter)
        data.volumes.append(working)
        data.targets.append(np.stack([labels.mask.astype(np.float32), labels.centre,
                                      split.training_weights(working.shape, diameter)]))
        data.training.append(split.training)
        data.splits.append(split)
    return data


def validation_score(net, data, patch):
    """:class:`Score` of ``net``'s detections (default thresholds) in the held-back slabs against the
    held-back annotations, matched within half a diameter; None when nothing is held back."""
    if not any(len(split.validation) for split in data.splits):
        return None
    where = next(net.parameters()).device
    total = Score(0, 0, 0)
    for volume, split in zip(data.volumes, data.splits):
        if not len(split.validation):
            continue
        start, stop = split.validation_slab(volume.shape, margin=patch // 4)
        index = [slice(None)] * 3
        index[2 - split.axis] = slice(start, stop)
        maps = predict_tiled(volume[tuple(index)], _patch_function(net, where, False), patch, patch // 6)
        found = detect(maps[0], maps[1], min_size=_min_size(data.diameter), filter_outliers=False,
                       **DETECTION_THRESHOLDS)
        centres = found.centres.copy()
        centres[:, split.axis] += start
        total = total + score_points(centres[centres[:, split.axis] >= split.boundary], split.validation,
                                     data.diameter / 2)
    return total


DETECTION_THRESHOLDS = dict(mask_threshold=0.5, centre_threshold=0.3)


def _min_size(diameter_px):
    """Voxels of a ball of half the particle diameter: smaller mask components are specks."""
    return int(round(4 / 3 * np.pi * (diameter_px / 4) ** 3))


def train_detector(volumes, centres_xyz, diameter, voxel_size, model_path, loss_log, settings=None):
    """Train the particle detector (one U-Net with a mask head and a centre head) on tomograms
    ``volumes`` ([z, y, x]) annotated with particle ``centres_xyz`` (per tomogram, (n, 3) voxels) of
    ``diameter`` Å, at the working scale of :class:`DetectorSettings`; returns the training history.

    The mask head learns by :func:`nnpu_loss` (annotated particles positive, the rest unlabelled);
    the centre head regresses the normalised depth inside annotated particles (balanced squared
    error, on annotated particles only: elsewhere nobody knows). The held-back annotations of
    :func:`cryoseg.learn.split.spatial_split` select the kept weights and stop training."""
    settings = settings or DetectorSettings()
    settings.check()
    if diameter <= 0 or voxel_size <= 0:
        raise CryoSegInputError('the particle diameter and the voxel size must be positive')
    diameter_px = diameter / voxel_size
    data = detector_data(volumes, centres_xyz, diameter_px, settings)
    if data.diameter > settings.patch:
        raise CryoSegInputError(f'particles of {diameter:.0f} Å ({data.diameter:.1f} working voxels) do not fit in '
                                f'training patches of {settings.patch} voxels: use larger patches')
    sampler = PatchSampler(data.volumes, data.targets, data.training, settings.patch, settings.jitter,
                           settings.background_fraction, settings.quarter_turns, settings.seed)
    channels = list(settings.channels)
    architecture = dict(type='seed_unet', channels=channels, heads=['sigmoid', 'relu'])
    header = dict(kind=DETECTOR, patch=settings.patch, voxel_size=float(voxel_size), diameter=float(diameter),
                  binning=data.binning, architectures={DETECTOR: architecture}, outputs={DETECTOR: ['mask', 'centre']},
                  settings=asdict(settings))
    held = sum(len(split.validation) for split in data.splits)
    logger.info('training a particle detector: %d iterations at most, batch %d, %d³ patches; tomograms binned by %d '
                '(%.1f-voxel particles); %d annotations for training, %d held back for validation',
                settings.iterations, settings.batch, settings.patch, data.binning, data.diameter,
                sum(len(t) for t in data.training), held)

    def step(net, inputs, targets):
        raw = net.raw(inputs)
        positive, centre, weights = targets[:, 0:1], targets[:, 1:2], targets[:, 2:3]
        inside = (positive * weights) > 0
        error = (raw[:, 1:2] - centre) ** 2
        centre_loss = error[inside].mean() if inside.any() else error.sum() * 0
        return {'mask': nnpu_loss(raw[:, 0:1], positive, weights, settings.positive_prior),
                'centre': (centre_loss, centre_loss)}

    validate = (lambda net: validation_score(net, data, 2 * settings.patch)) if held else None
    return _train(build(architecture), step, sampler, settings, model_path, loss_log, header, validate)


def train_mask(volumes, masks, voxel_size, model_path, loss_log, settings=None):
    """Train a semantic 3-D U-Net (MONAI) on tomograms and their binary masks; returns the history.
    Patches are drawn uniformly (no annotations); the loss is Dice + binary cross-entropy."""
    settings = settings or TrainingSettings()
    settings.check()
    inputs = [zscore(volume) for volume in volumes]
    targets = [(np.asarray(mask) > 0).astype(np.float32) for mask in masks]
    for volume, mask in zip(inputs, targets):
        if volume.shape != mask.shape:
            raise CryoSegInputError(f'a mask of shape {mask.shape[::-1]} (x, y, z) does not match its tomogram '
                                    f'{volume.shape[::-1]}')
    sampler = PatchSampler(inputs, targets, None, settings.patch, 0, 1.0, settings.quarter_turns, settings.seed)
    architecture = dict(type='monai_unet', channels=list(settings.channels))
    header = dict(kind=MASK, patch=settings.patch, voxel_size=float(voxel_size), diameter=None, binning=1,
                  architectures={MASK: architecture}, outputs={MASK: ['mask']}, settings=asdict(settings))
    bce = torch.nn.BCEWithLogitsLoss()

    def step(net, x, target):
        logits = net(x)
        loss = dice_loss(torch.sigmoid(logits), target) + bce(logits, target)
        return {'mask': (loss, loss)}

    logger.info('training a mask network (%d iterations, batch %d, %d³ patches)', settings.iterations,
                settings.batch, settings.patch)
    return _train(build(architecture), step, sampler, settings, model_path, loss_log, header)


def _patch_function(net, where, logits):
    """``net`` as a callable on one float32 [P, P, P] numpy patch returning [C, P, P, P] (sigmoid
    applied to a network whose output is a logit)."""

    def run(patch):
        with torch.no_grad():
            batch = torch.from_numpy(np.ascontiguousarray(patch))[None, None]
            out = net(batch.to(where, memory_format=torch.channels_last_3d))
            out = torch.sigmoid(out) if logits else out
            return out[0].float().cpu().numpy()

    return run


@dataclass
class LoadedModel:
    """A model file ready for inference (networks in evaluation mode on the GPU when present).
    ``outputs``: per network, the names of its output channels; ``binning``: the factor the
    tomograms are binned by before the networks see them (1 for mask networks and older files)."""
    kind: str
    patch: int
    voxel_size: float
    diameter: float
    networks: dict
    outputs: dict
    binning: int = 1
    history: dict = field(default_factory=dict)

    def predict(self, volume, patch=None, margin=None, threads=0):
        """``{output name: float32 map [z, y, x]}`` of a tomogram, on its own voxels. The tomogram is
        binned to the working scale and z-scored, then processed by tiles of ``patch`` working voxels
        (default: the training patch; the networks are fully convolutional, so any multiple of 4
        works, larger ones waste less on margins) cropped by ``margin`` (default: a sixth of the
        patch); the maps are interpolated back onto the tomogram's voxels."""
        _set_threads(threads)
        patch = self.patch if patch is None else int(patch)
        if patch % PATCH_MULTIPLE:
            raise CryoSegInputError(f'the inference patch must be a multiple of {PATCH_MULTIPLE}; got {patch}')
        margin = patch // 6 if margin is None else margin
        check_tiling(patch, margin)
        working = zscore(bin_volume(volume, self.binning))
        logger.info('inference on %s, tomogram binned by %d to %s voxels', device_description(self._device()),
                    self.binning, working.shape[::-1])
        maps = {}
        for name, net in self.networks.items():
            out = predict_tiled(working, _patch_function(net, self._device(), self.kind == MASK), patch, margin)
            for channel, output in enumerate(self.outputs[name]):
                maps[output] = unbin_map(out[channel], self.binning, np.shape(volume))
        return maps

    def _device(self):
        return next(next(iter(self.networks.values())).parameters()).device


def load_model(path):
    """The :class:`LoadedModel` of a model file; a clear error for anything else."""
    try:
        state = torch.load(path, map_location='cpu', weights_only=True)
    except FileNotFoundError:
        raise CryoSegInputError(f'{path}: model file not found') from None
    except Exception as err:  # torch raises many kinds for a file that is not a checkpoint
        raise CryoSegInputError(f'{path}: not a cryoseg model file ({err})') from None
    if not isinstance(state, dict) or state.get('format') != FORMAT:
        raise CryoSegInputError(f'{path}: not a cryoseg model file')
    where = device()
    architectures = state['architectures']
    networks = {}
    for name, architecture in architectures.items():
        net = build(architecture)
        net.load_state_dict(state['weights'][name])
        networks[name] = net.to(where, memory_format=torch.channels_last_3d).eval()
    outputs = state.get('outputs') or {name: [name] for name in networks}
    return LoadedModel(state['kind'], int(state['patch']), float(state['voxel_size']), state.get('diameter'),
                       networks, outputs, int(state.get('binning', 1)), state.get('history', {}))
