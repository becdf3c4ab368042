"""The learned particle detector: blob candidates scored by small networks, trained from partial
annotations with spatial cross-validation (torch; imported only when needed).

Training (:func:`train_detector`): tomograms are binned to the particle's scale and normalised
(:mod:`cryoseg.learn.candidates`); the annotations are cut into spatial folds; for each fold a
:class:`~cryoseg.learn.networks.CandidateNet` learns positives from negatives (self-training labels,
:func:`~cryoseg.learn.candidates.training_labels`) on the other folds' regions, is scored on its own
held-back fold every few iterations and stops when that score stops improving, keeping its best
state. The held-back scores of every annotation (out of fold) set the score threshold, and the
detector averages the fold networks. Detection (:func:`detect_particles`) scores the candidates of
a new tomogram and keeps one pick per particle above the threshold.

References
----------
C. Elkan, K. Noto, "Learning classifiers from only positive and unlabeled data", KDD (2008).
T. Bepler et al., "Positive-unlabeled convolutional neural networks for particle picking in
cryo-electron micrographs", Nat. Methods 16:1153 (2019).
"""
import csv
import logging
import os
import time
from dataclasses import asdict, dataclass

import numpy as np
from scipy.spatial import cKDTree

from . import require_ml
from ..core.errors import CryoSegInputError
from ..core.evaluation import score_points
from .candidates import (annotated_strength, bin_volume, extract_patches, find_candidates, particles_are_dark,
                         patch_side, robust_normalise, spatial_folds, suppress_neighbours, training_labels,
                         working_binning)
from .settings import DetectorSettings

require_ml()

import torch  # noqa: E402

from .networks import build, device  # noqa: E402

logger = logging.getLogger(__name__)
LOG_COLUMNS = ['fold', 'iteration', 'loss', 'val_ap', 'val_recall', 'val_precision', 'val_f1']


@dataclass
class WorkingTomogram:
    """One tomogram at the detector's scale: ``signal`` (normalised, particles bright), its
    candidates with their patches (cut once, used by every fold), and the annotations in working
    voxels ([z, y, x])."""
    signal: np.ndarray
    candidates: object
    patches: np.ndarray
    annotations: np.ndarray


def _to_working(positions_zyx, factor):
    return (np.asarray(positions_zyx, float) + 0.5) / factor - 0.5


def _to_original(positions_zyx, factor):
    return (np.asarray(positions_zyx, float) + 0.5) * factor - 0.5


def _prepare(volume, factor, dark, diameter, min_strength):
    signal = robust_normalise(bin_volume(volume, factor), dark)
    return signal, find_candidates(signal, diameter, min_strength)


def _logits(net, patches, where, chunk=512):
    net.eval()
    out = np.zeros(len(patches), np.float32)
    with torch.no_grad():
        for start in range(0, len(patches), chunk):
            out[start:start + chunk] = net(torch.from_numpy(patches[start:start + chunk]).to(where))[:, 0].cpu().numpy()
    return out


def _score(networks, patches, where, standardisation=None):
    """Scores in (0, 1) of float32 patches [n, 1, s, s, s]: the sigmoid of the networks' mean logit,
    each logit first standardised by its network's ``(mean, std)`` over the training candidates
    when ``standardisation`` is given. Fold networks stop at different iterations and are confident
    to different degrees; on one scale, a threshold set on one network's held-back particles holds
    for their average."""
    total = np.zeros(len(patches), np.float32)
    for index, net in enumerate(networks):
        logits = _logits(net, patches, where)
        if standardisation is not None:
            mean, std = standardisation[index]
            logits = (logits - mean) / std
        total += logits
    return 1 / (1 + np.exp(-total / max(len(networks), 1)))


def _standardisation(net, tomograms, where):
    """``(mean, std)`` of a network's logits over the candidates of the training tomograms."""
    logits = np.concatenate([_logits(net, t.patches, where) for t in tomograms])
    return float(logits.mean()), float(logits.std()) or 1.0


def _flip_each(patches, rng):
    """Independent random flips of z, y and x per patch (they keep the missing wedge about z)."""
    out = patches.copy()
    for axis in (2, 3, 4):
        chosen = rng.random(len(out)) < 0.5
        out[chosen] = np.flip(out[chosen], axis=axis)
    return np.ascontiguousarray(out)


def average_precision(scores, is_positive, positives_total):
    """Average precision of a ranking: mean, over the ``positives_total`` positives, of the precision
    at each positive's rank (a positive never ranked counts 0).

    >>> average_precision(np.array([0.9, 0.8, 0.1]), np.array([True, False, True]), 2)
    0.8333333333333333
    """
    if not positives_total:
        return 0.0
    order = np.argsort(-np.asarray(scores), kind='stable')
    hits = np.asarray(is_positive, bool)[order]
    precision_at = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    return float(precision_at[hits].sum() / positives_total)


def _pick(centres, scores, threshold, radius):
    chosen = np.flatnonzero(scores >= threshold)
    kept = chosen[suppress_neighbours(centres[chosen], scores[chosen], radius)]
    return kept


class _FoldData:
    """Training examples and validation candidates of one fold."""

    def __init__(self, tomograms, folds, k, radius, side, margin, complete):
        train_positive, train_negative, strengths = [], [], []
        for tomogram, split in zip(tomograms, folds):
            own = split.fold != k
            strengths.append(annotated_strength(tomogram.candidates, tomogram.annotations[own], radius))
        strengths = np.concatenate(strengths)
        self.validation = []  # per tomogram: (candidate indices in the region, held-back annotations)
        for tomogram, split in zip(tomograms, folds):
            candidates = tomogram.candidates
            outside = ~split.near_region(candidates.centres, k, margin)
            labels = training_labels(candidates, tomogram.annotations, radius, strengths, complete).candidate_labels
            own = (split.fold != k) & ~split.near_region(tomogram.annotations, k, margin)
            train_positive += [tomogram.patches[outside & (labels == 1)],
                               extract_patches(tomogram.signal, tomogram.annotations[own], side)]
            train_negative.append(tomogram.patches[outside & (labels == 0)])
            self.validation.append((np.flatnonzero(split.region(candidates.centres, k)),
                                    tomogram.annotations[split.fold == k]))
        self.positive = np.concatenate(train_positive)
        self.negative = np.concatenate(train_negative)
        if not len(self.positive) or not len(self.negative):
            raise CryoSegInputError('not enough candidates to learn from: the tomograms hold no blob clearly weaker '
                                    'than the annotated particles (check the particle diameter)')


def _validate(networks, tomograms, fold_data, patches, radius, where):
    """``(scores per tomogram of its region's candidates, AP, Score at probability 0.5)``."""
    all_scores, hits, positives, total = [], [], 0, None
    for tomogram, (region, held), tomo_patches in zip(tomograms, fold_data.validation, patches):
        scores = _score(networks, tomo_patches, where)
        all_scores.append(scores)
        centres = tomogram.candidates.centres[region]
        positives += len(held)
        is_hit = np.zeros(len(region), bool)
        if len(held) and len(region):
            # each held-back particle is represented by its best-scoring candidate within reach
            for near in cKDTree(centres).query_ball_point(held, radius):
                if near:
                    is_hit[near[int(np.argmax(scores[near]))]] = True
        hits.append((scores, is_hit))
        kept = _pick(centres, scores, 0.5, radius)
        score = score_points(centres[kept], held, radius)
        total = score if total is None else total + score
    ap = average_precision(np.concatenate([s for s, _ in hits]), np.concatenate([h for _, h in hits]), positives)
    return all_scores, ap, total


def _train_fold(k, data, tomograms, settings, radius, where, writer, started):
    torch.manual_seed(settings.seed + k)
    rng = np.random.default_rng(settings.seed + k)
    net = build(dict(type='candidate_net', channels=list(settings.channels))).to(where)
    optimiser = torch.optim.Adam(net.parameters(), lr=settings.learning_rate, weight_decay=1e-4)
    loss_function = torch.nn.BCEWithLogitsLoss()
    half = settings.batch // 2
    targets = torch.cat([torch.ones(half), torch.zeros(half)])[:, None].to(where)
    region_patches = [t.patches[region] for t, (region, _) in zip(tomograms, data.validation)]
    best = dict(ap=-1.0, state=None, iteration=0, scores=None, score=None)
    waited, running = 0, []
    for iteration in range(1, settings.iterations + 1):
        net.train()
        batch = np.concatenate([data.positive[rng.integers(len(data.positive), size=half)],
                                data.negative[rng.integers(len(data.negative), size=half)]])
        loss = loss_function(net(torch.from_numpy(_flip_each(batch, rng)).to(where)), targets)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        running.append(loss.item())
        if iteration % settings.validate_every and iteration != settings.iterations:
            continue
        scores, ap, score = _validate([net], tomograms, data, region_patches, radius, where)
        writer.writerow([k, iteration, f'{np.mean(running):.5g}', f'{ap:.4f}', f'{score.recall:.4f}',
                         f'{score.precision:.4f}', f'{score.f1:.4f}'])
        running = []
        if ap > best['ap']:
            best.update(ap=ap, iteration=iteration, scores=scores, score=score,
                        state={name: value.detach().cpu().clone() for name, value in net.state_dict().items()})
            waited = 0
        else:
            waited += 1
        if waited >= settings.patience:
            break
    net.load_state_dict(best['state'])
    logger.info('fold %d of %d: kept iteration %d of %d, held-back average precision %.2f, recall %.2f, '
                'precision %.2f at probability 0.5 (%.0f s)', k + 1, settings.folds, best['iteration'], iteration,
                best['ap'], best['score'].recall, best['score'].precision, time.time() - started)
    return net.eval(), best


def train_detector(volumes, centres_xyz, diameter, voxel_size, model_path, loss_log, settings=None):
    """Train the candidate detector on tomograms ``volumes`` ([z, y, x]) annotated with particle
    ``centres_xyz`` (per tomogram, (n, 3) voxels; the annotation may be partial) of ``diameter`` Å;
    write the model file and the validation log (CSV, :data:`LOG_COLUMNS`); return the history.

    The history holds per fold the kept iteration and its held-back scores, the score threshold,
    and ``validation``: recall, precision (a lower bound when the annotation is partial) and F1 of
    the out-of-fold picks at that threshold against all annotations.
    """
    settings = settings or DetectorSettings()
    settings.check()
    if diameter <= 0 or voxel_size <= 0:
        raise CryoSegInputError('the particle diameter and the voxel size must be positive')
    if settings.threads:
        torch.set_num_threads(int(settings.threads))
    where = device()
    started = time.time()
    factor = working_binning(diameter / voxel_size, settings.particle_voxels)
    working_diameter = diameter / voxel_size / factor
    radius = working_diameter / 2
    side = patch_side(working_diameter)
    annotations = [_to_working(np.asarray(c, float).reshape(-1, 3)[:, ::-1], factor) for c in centres_xyz]
    total = sum(len(a) for a in annotations)
    if total < 2 * settings.folds:
        raise CryoSegInputError(f'{total} annotated particles are too few for {settings.folds}-fold validation: '
                                f'annotate at least {2 * settings.folds}')
    raw = [robust_normalise(bin_volume(v, factor), dark=False) for v in volumes]
    dark = particles_are_dark(raw[0], annotations[0], working_diameter) if len(annotations[0]) else True
    logger.info('training a particle detector on %s: %d tomogram(s) binned by %d (particles %.1f voxels, %s), '
                '%d annotated particles, %d folds', where, len(volumes), factor, working_diameter,
                'dark' if dark else 'bright', total, settings.folds)
    tomograms = []
    for volume, annotated in zip(raw, annotations):
        signal = -volume if dark else volume
        candidates = find_candidates(signal, working_diameter, settings.min_strength)
        tomograms.append(WorkingTomogram(signal, candidates, extract_patches(signal, candidates.centres, side),
                                         annotated))
    folds = []
    for tomogram in tomograms:
        if len(tomogram.annotations) >= settings.folds:
            folds.append(spatial_folds(tomogram.annotations, tomogram.signal.shape, settings.folds))
        else:  # too few here to split: this tomogram only trains
            folds.append(spatial_folds(np.zeros((settings.folds, 3)), tomogram.signal.shape, settings.folds))
            folds[-1].fold = np.full(len(tomogram.annotations), -1)
    os.makedirs(os.path.dirname(os.path.abspath(loss_log)) or '.', exist_ok=True)
    networks, standardisation, fold_reports, out_of_fold = [], [], [], []
    previous = torch.are_deterministic_algorithms_enabled()
    # reproducible on a CPU; on a GPU some 3-D pooling gradients have no deterministic kernel
    torch.use_deterministic_algorithms(where.type == 'cpu')
    try:
        with open(loss_log, 'w', newline='') as handle:
            writer = csv.writer(handle)
            writer.writerow(LOG_COLUMNS)
            for k in range(settings.folds):
                data = _FoldData(tomograms, folds, k, radius, side, working_diameter, settings.complete_annotation)
                net, best = _train_fold(k, data, tomograms, settings, radius, where, writer, started)
                handle.flush()
                networks.append(net)
                standardisation.append(_standardisation(net, tomograms, where))
                best['scores'] = [_score([net], t.patches[region], where, standardisation[-1:])
                                  for t, (region, _) in zip(tomograms, data.validation)]
                fold_reports.append(dict(fold=k, iteration=best['iteration'], average_precision=best['ap'],
                                         recall=best['score'].recall, precision=best['score'].precision))
                for tomogram, (region, held), scores in zip(tomograms, data.validation, best['scores']):
                    out_of_fold.append((tomogram, region, held, scores))
    finally:
        torch.use_deterministic_algorithms(previous)
    threshold, validation = _choose_threshold(out_of_fold, radius, settings.target_recall)
    logger.info('score threshold %.3f keeps %.0f %% of the held-back particles found as candidates; out of fold: '
                'recall %.2f, precision %.2f (a lower bound where not every particle is annotated), %d picks',
                threshold, 100 * settings.target_recall, validation['recall'], validation['precision'],
                validation['picks'])
    history = dict(folds=fold_reports, threshold=threshold, validation=validation, device=str(where.type),
                   seconds=time.time() - started)
    header = dict(kind='detector', voxel_size=float(voxel_size), diameter=float(diameter),
                  detector=dict(binning=factor, working_diameter=working_diameter, patch=side, dark=dark,
                                min_strength=settings.min_strength, threshold=threshold,
                                standardisation=standardisation),
                  architectures={f'fold{k}': dict(type='candidate_net', channels=list(settings.channels))
                                 for k in range(settings.folds)},
                  settings=asdict(settings), history=history)
    from .training import save_model

    save_model(model_path, header, {f'fold{k}': net for k, net in enumerate(networks)})
    return history


def _choose_threshold(out_of_fold, radius, target_recall):
    """The score threshold that keeps ``target_recall`` of the held-back particles that have a
    candidate, from their out-of-fold scores, and the out-of-fold picks' scores at it."""
    particle_scores = []
    for tomogram, region, held, scores in out_of_fold:
        centres = tomogram.candidates.centres[region]
        if not len(held) or not len(centres):
            continue
        for near in cKDTree(centres).query_ball_point(held, radius):
            if near:
                particle_scores.append(float(np.max(scores[near])))
    if not particle_scores:
        raise CryoSegInputError('no held-back particle lies on a candidate blob: check the diameter and that the '
                                'coordinates belong to these tomograms')
    threshold = float(np.quantile(particle_scores, 1 - target_recall, method='lower'))
    total, picks = None, 0
    for tomogram, region, held, scores in out_of_fold:
        centres = tomogram.candidates.centres[region]
        kept = _pick(centres, scores, threshold, radius)
        picks += len(kept)
        score = score_points(centres[kept], held, radius)
        total = score if total is None else total + score
    return threshold, dict(recall=total.recall, precision=total.precision, f1=total.f1, picks=picks)


@dataclass
class DetectedParticles:
    """Picks of one tomogram: ``centres`` (n, 3) x, y, z voxels of the input, ``scores`` (n,) in (0, 1)
    (see :func:`_score`), ``strength`` (n,) the blob strength in robust σ."""
    centres: np.ndarray
    scores: np.ndarray
    strength: np.ndarray

    def __len__(self):
        return len(self.scores)


def detect_particles(model, volume, threshold=None):
    """:class:`DetectedParticles` of a tomogram ([z, y, x], the model's voxel size) with a detector
    model (:func:`cryoseg.learn.training.load_model`): one pick per particle (non-maximum suppression
    within a particle radius) among the candidates scoring at least ``threshold`` (default: the
    threshold chosen in training)."""
    spec = model.detector
    threshold = spec['threshold'] if threshold is None else float(threshold)
    factor, diameter = int(spec['binning']), float(spec['working_diameter'])
    signal, candidates = _prepare(volume, factor, spec['dark'], diameter, spec['min_strength'])
    where = next(next(iter(model.networks.values())).parameters()).device
    scores = _score(list(model.networks.values()), extract_patches(signal, candidates.centres, spec['patch']), where,
                    spec['standardisation'])
    kept = _pick(candidates.centres, scores, threshold, diameter / 2)
    logger.info('%d candidates, %d picks scoring at least %.3f', len(candidates), len(kept), threshold)
    centres = _to_original(candidates.centres[kept], factor)[:, ::-1]
    return DetectedParticles(centres, scores[kept], candidates.strength[kept])
