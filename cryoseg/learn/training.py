"""Training and applying cryoseg's learned models (torch; imported only when needed).

A model file (``torch.save`` of a dict) holds its kind ('detector': candidate networks, see
:mod:`cryoseg.learn.detector`, or 'mask': a semantic 3-D U-Net), the networks' architectures and
weights, the voxel size, for a mask network its patch size, for a detector the particle diameter and
its working scale and threshold, plus the training history. Mask training writes the model file every
``checkpoint_every`` iterations (so an interrupted run leaves a usable model) and appends every
iteration's loss to a CSV loss log.
"""
import csv
import logging
import os
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from . import require_ml
from ..core.errors import CryoSegInputError
from .patches import PatchSampler
from .tiling import check_tiling, predict_tiled, zscore

require_ml()

import torch  # noqa: E402

from .networks import PATCH_MULTIPLE, build, device  # noqa: E402

logger = logging.getLogger(__name__)
FORMAT = 'cryoseg-model-1'
DETECTOR, MASK = 'detector', 'mask'


@dataclass
class TrainingSettings:
    """Settings of the mask network's training; defaults follow the seed (56³ patches, batch 8, Adam
    β = (0.95, 0.99), Dice + cross-entropy at lr 5e-4). The particle detector has its own
    (:class:`cryoseg.learn.settings.DetectorSettings`)."""
    iterations: int = 2000
    batch: int = 8
    patch: int = 56
    learning_rate: float = 5e-4
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
        if self.learning_rate <= 0:
            raise CryoSegInputError('the learning rate must be positive')
        if not 0 <= self.background_fraction <= 1:
            raise CryoSegInputError('the background fraction must be between 0 and 1')


def dice_loss(probability, target, eps=1.0):
    """1 − Dice coefficient over the whole batch (soft, on probabilities)."""
    overlap = (probability * target).sum()
    return 1 - (2 * overlap + eps) / (probability.sum() + target.sum() + eps)


def _set_threads(threads):
    if threads:
        torch.set_num_threads(int(threads))


def _history_writer(path):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    handle = open(path, 'w', newline='')
    writer = csv.writer(handle)
    return handle, writer


def _train(networks, losses, learning_rates, sampler, settings, model_path, loss_log, header):
    """Common loop: every iteration draws a batch, updates each network on its target channel
    (``losses[name](net, inputs, target)``) and logs the losses; the model file is rewritten every ``checkpoint_every`` iterations and at the end."""
    settings.check()
    _set_threads(settings.threads)
    torch.manual_seed(settings.seed)
    where = device()
    for net in networks.values():  # channels-last: oneDNN's 3-D convolutions run about twice as fast on a CPU
        net.to(where, memory_format=torch.channels_last_3d).train()
    optimisers = {name: torch.optim.Adam(net.parameters(), lr=learning_rates[name], betas=(0.95, 0.99))
                  for name, net in networks.items()}
    history = {name: [] for name in networks}
    handle, writer = _history_writer(loss_log)
    writer.writerow(['iteration'] + [f'{name}_loss' for name in networks])
    started = time.time()
    try:
        for iteration in range(1, settings.iterations + 1):
            inputs, targets = sampler.sample(settings.batch)
            inputs = torch.from_numpy(inputs).to(where, memory_format=torch.channels_last_3d)
            targets = torch.from_numpy(targets).to(where)
            row = [iteration]
            for channel, (name, net) in enumerate(networks.items()):
                optimisers[name].zero_grad()
                loss = losses[name](net, inputs, targets[:, channel:channel + 1])
                loss.backward()
                optimisers[name].step()
                history[name].append(loss.item())
                row.append(f'{loss.item():.6g}')
            writer.writerow(row)
            if iteration % settings.checkpoint_every == 0 or iteration == settings.iterations:
                handle.flush()
                header['history'] = dict(history, seconds=time.time() - started, iterations=iteration)
                save_model(model_path, header, networks)
                logger.info('iteration %d of %d: %s (%.0f s); model saved to %s', iteration, settings.iterations,
                            ', '.join(f'{n} loss {history[n][-1]:.4f}' for n in networks), time.time() - started,
                            model_path)
    finally:
        handle.close()
    return header['history']


def save_model(path, header, networks):
    """Write the model file atomically (a reader never sees half a file)."""
    state = dict(header, format=FORMAT, weights={name: {k: v.detach().cpu() for k, v in net.state_dict().items()}
                                                  for name, net in networks.items()})
    temporary = f'{path}.partial'
    torch.save(state, temporary)
    os.replace(temporary, path)


def train_mask(volumes, masks, voxel_size, model_path, loss_log, settings=None, channels=(16, 32, 64)):
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
    architecture = dict(type='monai_unet', channels=list(channels))
    header = dict(kind=MASK, patch=settings.patch, voxel_size=float(voxel_size), diameter=None,
                  architectures={'mask': architecture}, settings=asdict(settings))
    bce = torch.nn.BCEWithLogitsLoss()

    def loss(net, x, target):
        logits = net(x)
        return dice_loss(torch.sigmoid(logits), target) + bce(logits, target)

    logger.info('training a mask network (%d iterations, batch %d, %d³ patches)', settings.iterations,
                settings.batch, settings.patch)
    return _train({'mask': build(architecture)}, {'mask': loss}, {'mask': settings.learning_rate}, sampler,
                  settings, model_path, loss_log, header)


@dataclass
class LoadedModel:
    """A model file ready for inference (networks in evaluation mode on the GPU when present)."""
    kind: str
    patch: int
    voxel_size: float
    diameter: float
    networks: dict
    history: dict = field(default_factory=dict)
    detector: dict = field(default_factory=dict)  # a detector's working scale, polarity and threshold

    def patch_model(self, name):
        """The named network as a callable on one float32 [P, P, P] numpy patch (probabilities for
        a semantic mask network, whose raw output is a logit)."""
        net = self.networks[name]
        where = next(net.parameters()).device
        logits = self.kind == MASK

        def run(patch):
            with torch.no_grad():
                batch = torch.from_numpy(np.ascontiguousarray(patch))[None, None]
                out = net(batch.to(where, memory_format=torch.channels_last_3d))
                out = torch.sigmoid(out) if logits else out
                return out[0, 0].cpu().numpy()

        return run

    def predict(self, volume, patch=None, margin=None, threads=0):
        """``{network name: float32 map [z, y, x]}`` of a tomogram (z-scored first), by tiles of
        ``patch`` voxels (default: the training patch; the networks are fully convolutional, so
        any multiple of 4 works, larger ones waste less on margins) cropped by ``margin`` (default:
        a sixth of the patch)."""
        _set_threads(threads)
        patch = self.patch if patch is None else int(patch)
        if patch % PATCH_MULTIPLE:
            raise CryoSegInputError(f'the inference patch must be a multiple of {PATCH_MULTIPLE}; got {patch}')
        margin = patch // 6 if margin is None else margin
        check_tiling(patch, margin)
        normalised = zscore(volume)
        return {name: predict_tiled(normalised, self.patch_model(name), patch, margin)
                for name in self.networks}


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
    if state['kind'] == DETECTOR and 'detector' not in state:
        raise CryoSegInputError(f'{path}: a particle detector of an older cryoseg (MaskNet + CenterNet); train it '
                                f'again with this version')
    where = device()
    networks = {}
    for name, architecture in state['architectures'].items():
        net = build(architecture)
        net.load_state_dict(state['weights'][name])
        networks[name] = net.to(where, memory_format=torch.channels_last_3d).eval()
    return LoadedModel(state['kind'], int(state.get('patch') or 0), float(state['voxel_size']), state.get('diameter'),
                       networks, state.get('history', {}), state.get('detector', {}))

