"""cryoseg.learn: label targets, tiled inference, wedge-preserving augmentation, networks, model files
and a short real training (algorithms.md §6.1, §6.2, §6.5)."""
import subprocess
import sys

import numpy as np
import pytest
from scipy import ndimage

from cryoseg.core.errors import CryoSegInputError
from cryoseg.core.evaluation import score_points
from cryoseg.core.phantom import apply_missing_wedge
from cryoseg.learn.labels import particle_instances
from cryoseg.learn.patches import PatchSampler, augment
from cryoseg.learn.tiling import predict_tiled, zscore


# A test-sized detection problem: 20 particles of 160 Å in a 80 x 80 x 40 volume at 20 Å/px (8-voxel
# particles) in faint texture and moderate noise; no vesicles, filament or gold.
DETECTOR_PHANTOM = dict(shape_zyx=(40, 80, 80), voxel_size=20.0, particle_diameters=(160.0,),
                        particles_per_class=(20,), sphere_vesicle_radii=(), ellipsoid_vesicle_radii=(),
                        filament=False, gold_beads=0, contamination=False, noise_std=0.3,
                        texture_amplitude=0.1)


# ------------------------------------------------------------------------------------------- labels
def test_one_ball_and_two_touching_balls():
    one = particle_instances((31, 31, 31), [[15, 15, 15]], diameter=20)
    assert np.count_nonzero(one) == pytest.approx(4 / 3 * np.pi * 10 ** 3, rel=0.05)
    two = particle_instances((30, 30, 31), [[10, 15, 15], [20, 15, 15]], diameter=10)  # the balls touch
    assert set(np.unique(two)) == {0, 1, 2}
    assert two[15, 15, 14] == 1 and two[15, 15, 16] == 2  # each voxel to the nearer centre
    assert abs(np.count_nonzero(two == 1) - np.count_nonzero(two == 2)) <= 1  # the contact voxel goes to one


def test_instances_near_the_border_and_outside():
    labels = particle_instances((10, 10, 10), [[0, 0, 0], [50, 50, 50]], diameter=6)
    assert labels[0, 0, 0] == 1 and 2 not in labels


# ------------------------------------------------------------------------------------------- candidates
def test_candidate_and_detector_examples():
    import doctest

    from cryoseg.learn import candidates

    assert doctest.testmod(candidates).failed == 0


def test_candidates_find_dark_balls_in_noise_at_their_scale():
    from cryoseg.learn.candidates import find_candidates, particles_are_dark, robust_normalise, working_binning

    rng = np.random.default_rng(5)
    volume = rng.normal(0, 1, (40, 96, 96)).astype(np.float32)
    centres = np.array([[20, 20 + 18 * i, 20 + 14 * j] for i in range(4) for j in range(5)], float)  # z, y, x
    grid = np.indices(volume.shape).reshape(3, -1).T
    for centre in centres:
        volume.reshape(-1)[np.sum((grid - centre) ** 2, 1) <= 16] -= 3.0  # dark balls of diameter 8
    assert particles_are_dark(robust_normalise(volume, False), centres, 8.0)
    found = find_candidates(robust_normalise(volume, dark=True), 8.0, 3.0)
    assert np.all(np.diff(found.strength) <= 0)  # strongest first
    assert score_points(found.centres[:20], centres, radius=2).tp == 20
    assert working_binning(8.0 * 2.5) == 2


def test_training_labels_and_spatial_folds():
    from cryoseg.learn.candidates import Candidates, spatial_folds, training_labels

    annotations = np.array([[5, 5, x] for x in (10, 20, 30, 60, 70, 80)], float)
    folds = spatial_folds(annotations, (10, 40, 100), 2)
    assert folds.axis == 0 and folds.fold.tolist() == [0, 0, 0, 1, 1, 1] and folds.edges[1] == 45
    assert folds.region(annotations, 1).tolist() == [False] * 3 + [True] * 3
    assert folds.near_region([[5, 5, 42]], 1, margin=4).tolist() == [True]
    found = Candidates(np.array([[5, 5, 10.5], [5, 5, 50], [5, 5, 90], [5, 5, 95]], float),
                       np.array([10.0, 9.5, 8.5, 1.0], np.float32))
    partial = training_labels(found, annotations, 2, np.array([8.0, 9.0, 10.0, 11.0]))
    assert partial.candidate_labels.tolist() == [1, 1, -1, 0]  # strong unannotated: pseudo-positive
    complete = training_labels(found, annotations, 2, np.array([8.0, 9.0, 10.0, 11.0]), complete=True)
    assert complete.candidate_labels.tolist() == [1, 0, 0, 0]


# ------------------------------------------------------------------------------------------- tiling
@pytest.mark.parametrize('shape', [(37, 41, 29), (5, 7, 3), (20, 64, 65)])
def test_identity_tiling_returns_the_input_exactly(shape):
    volume = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    assert np.array_equal(predict_tiled(volume, lambda patch: patch, patch=16, margin=3, overlap=2), volume)


def test_box_filter_tiling_equals_whole_volume_filter_away_from_border():
    volume = np.random.default_rng(1).normal(size=(33, 47, 25)).astype(np.float32)
    box = lambda patch: ndimage.uniform_filter(patch, 5)  # noqa: E731  needs 2 voxels of context
    tiled = predict_tiled(volume, box, patch=16, margin=2, overlap=3)
    whole = ndimage.uniform_filter(volume, 5)
    inner = (slice(2, -2),) * 3
    assert np.allclose(tiled[inner], whole[inner], atol=1e-5)


def test_multichannel_model_and_bad_tiling():
    volume = np.ones((9, 9, 9), np.float32)
    out = predict_tiled(volume, lambda p: np.stack([p, 2 * p]), patch=8, margin=1)
    assert out.shape == (2, 9, 9, 9) and np.all(out[1] == 2)
    with pytest.raises(CryoSegInputError, match='margin'):
        predict_tiled(volume, lambda p: p, patch=8, margin=4)


def test_zscore():
    volume = np.random.default_rng(2).normal(5, 3, (40, 10, 10))
    normalised = zscore(volume, slab=7)
    assert abs(normalised.mean()) < 1e-5 and abs(normalised.std() - 1) < 1e-5
    with pytest.raises(CryoSegInputError, match='constant'):
        zscore(np.ones((4, 4, 4)))


# ------------------------------------------------------------------------------------------- patches
def _wedge_energy(volume):
    """Fraction of spectral power in the region a ±45° tilt series around y never samples."""
    power = np.abs(np.fft.fftn(volume)) ** 2
    kz, ky, kx = np.meshgrid(*[np.fft.fftfreq(n) for n in volume.shape], indexing='ij')
    missing = np.abs(kz) > np.abs(kx) + 0.02
    return power[missing].sum() / power.sum()


def test_augmentation_keeps_the_missing_wedge():
    rng = np.random.default_rng(3)
    volume = apply_missing_wedge(rng.normal(size=(32, 32, 32)).astype(np.float32), 45)
    assert _wedge_energy(volume) < 1e-6
    for _ in range(8):
        augmented, = augment([volume], rng)
        assert _wedge_energy(augmented) < 1e-6
    turned = np.rot90(volume, 1, axes=(1, 2))  # a quarter turn moves the wedge to the y axis
    assert _wedge_energy(turned) > 0.1


def test_augmentation_transforms_inputs_and_targets_alike():
    rng = np.random.default_rng(4)
    volume = rng.normal(size=(8, 8, 8))
    for _ in range(10):
        a, b = augment([volume, volume[None] * 2], rng, quarter_turns=True)
        assert np.array_equal(b[0], 2 * a)


def test_sampler_patches_centred_on_annotations():
    centres = np.array([[30.0, 20, 12]])
    ball = particle_instances((24, 40, 60), centres, diameter=6) > 0
    sampler = PatchSampler([np.zeros((24, 40, 60))], [ball], [centres], patch=16, jitter=2,
                           background_fraction=0.0, seed=0)
    inputs, labels = sampler.sample(6)
    assert inputs.shape == (6, 1, 16, 16, 16) and labels.shape == (6, 1, 16, 16, 16)
    assert np.all(labels.sum(axis=(1, 2, 3, 4)) == ball.sum())  # the whole ball in every patch
    small = PatchSampler([np.ones((5, 6, 7))], [np.ones((5, 6, 7))], patch=8)  # padded to the patch
    assert small.sample(1)[0].shape == (1, 1, 8, 8, 8)


# ------------------------------------------------------------------------------------------- torch
def test_without_torch_the_package_explains_what_to_install():
    code = ("import sys\n"
            "class Block:\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name.split('.')[0] in ('torch', 'monai'): raise ImportError('blocked ' + name)\n"
            "sys.meta_path.insert(0, Block())\n"
            "from cryoseg.learn import missing_ml_message, require_ml, MissingMLError\n"
            "import cryoseg.learn.labels, cryoseg.learn.tiling, cryoseg.learn.patches\n"
            "print(missing_ml_message())\n"
            "try:\n"
            "    import cryoseg.learn.training\n"
            "except MissingMLError as err:\n"
            "    print('raised', err)\n")
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=True).stdout
    assert "pip install 'scipion-em-cryoseg[ml]'" in out and 'torch and monai' in out
    assert out.count('raised') == 1


torch = pytest.importorskip('torch')


def test_candidate_net_scores_one_logit_per_patch():
    from cryoseg.learn.networks import CandidateNet

    torch.manual_seed(0)
    net = CandidateNet((4, 6, 8)).eval()
    with torch.no_grad():
        assert net(torch.randn(3, 1, 16, 16, 16)).shape == (3, 1)
    assert [m.out_channels for m in net.modules() if isinstance(m, torch.nn.Conv3d)] == [4, 4, 6, 6, 8]


def _small_phantom(seed):
    from cryoseg.core.phantom import make_phantom, phantom_config

    return make_phantom(phantom_config('small', seed=seed, **DETECTOR_PHANTOM))


def test_detector_trained_on_half_the_particles_finds_all_of_another_tomogram(tmp_path):
    """Partial annotation: only every other particle of the training phantom is annotated; the
    detector must still find (nearly) every particle of an unseen phantom, and few else."""
    import doctest

    from cryoseg.learn import detector, read_loss_log
    from cryoseg.learn.detector import LOG_COLUMNS, detect_particles, train_detector

    assert doctest.testmod(detector).failed == 0
    from cryoseg.learn.settings import DetectorSettings
    from cryoseg.learn.training import load_model

    train, test = _small_phantom(1), _small_phantom(2)
    centres = [np.array([p['centre'] for p in ph.truth.particles]) for ph in (train, test)]
    model_path, log_path = tmp_path / 'detector.pt', tmp_path / 'log.csv'
    settings = DetectorSettings(iterations=80, validate_every=20, patience=3, threads=2)
    history = train_detector([train.volume], [centres[0][::2]], 160.0, 20.0, str(model_path), str(log_path),
                             settings)
    log = read_loss_log(log_path)
    assert list(log) == LOG_COLUMNS and set(log['fold']) == {0, 1, 2, 3}
    assert [f['iteration'] for f in history['folds']] == [int(log['iteration'][log['fold'] == k][
        np.argmax(log['val_ap'][log['fold'] == k])]) for k in range(4)]  # the best state is the one kept
    assert history['validation']['recall'] >= 0.8
    model = load_model(str(model_path))
    assert (model.kind, model.voxel_size, model.diameter) == ('detector', 20.0, 160.0)
    assert model.detector['dark'] is True and model.detector['binning'] == 1  # dense is dark, as in real data
    assert len(model.networks) == settings.folds
    found = detect_particles(model, test.volume)
    score = score_points(found.centres, centres[1], radius=4)
    assert score.recall >= 0.85 and score.precision >= 0.8, score
    # the same tomogram with inverted contrast and another scale and offset is a different sample: the
    # detector looks for dark particles only, so it must find (almost) nothing there
    assert len(detect_particles(model, 7.0 - 3.0 * test.volume)) <= 2
    rescaled = detect_particles(model, 100.0 + 5.0 * test.volume)  # robust normalisation: same picks
    assert np.allclose(rescaled.centres, found.centres, atol=1e-3)


def test_training_is_reproducible(tmp_path):
    from cryoseg.learn.detector import train_detector
    from cryoseg.learn.settings import DetectorSettings

    phantom = _small_phantom(1)
    centres = np.array([p['centre'] for p in phantom.truth.particles])
    settings = DetectorSettings(iterations=20, validate_every=10, patience=2, threads=2, channels=(4, 6, 8))
    first, second = (train_detector([phantom.volume], [centres], 160.0, 20.0, str(tmp_path / f'{n}.pt'),
                                    str(tmp_path / f'{n}.csv'), settings) for n in 'ab')
    assert first['threshold'] == second['threshold'] and first['folds'] == second['folds']
    assert (tmp_path / 'a.csv').read_text() == (tmp_path / 'b.csv').read_text()


def test_detector_refuses_too_few_annotations_and_blobless_coordinates(tmp_path):
    from cryoseg.learn.detector import train_detector

    phantom = _small_phantom(1)
    centres = np.array([p['centre'] for p in phantom.truth.particles])
    with pytest.raises(CryoSegInputError, match='too few'):
        train_detector([phantom.volume], [centres[:5]], 160.0, 20.0, str(tmp_path / 'm.pt'), str(tmp_path / 'l.csv'))
    empty_corner = np.array([[2.0 + i % 3, 2.0 + i // 3, 2.0] for i in range(9)])  # nothing there
    with pytest.raises(CryoSegInputError, match='blob'):
        train_detector([np.zeros((40, 80, 80), np.float32) + phantom.volume.mean()], [empty_corner], 160.0, 20.0,
                       str(tmp_path / 'm.pt'), str(tmp_path / 'l.csv'))
    assert not (tmp_path / 'm.pt').exists()


def test_model_file_errors(tmp_path):
    from cryoseg.learn.training import load_model

    (tmp_path / 'junk.pt').write_text('not a model')
    with pytest.raises(CryoSegInputError, match='not a cryoseg model'):
        load_model(str(tmp_path / 'junk.pt'))
    with pytest.raises(CryoSegInputError, match='not found'):
        load_model(str(tmp_path / 'missing.pt'))


@pytest.mark.skipif(not torch.cuda.is_available(), reason='no CUDA device')
def test_detector_trains_and_detects_on_cuda(tmp_path):
    from cryoseg.learn.detector import detect_particles, train_detector
    from cryoseg.learn.settings import DetectorSettings
    from cryoseg.learn.training import load_model

    train, test = _small_phantom(1), _small_phantom(2)
    centres = [np.array([p['centre'] for p in ph.truth.particles]) for ph in (train, test)]
    history = train_detector([train.volume], [centres[0]], 160.0, 20.0, str(tmp_path / 'm.pt'), str(tmp_path / 'l.csv'),
                             DetectorSettings(iterations=80, validate_every=20, patience=3, complete_annotation=True))
    assert history['device'] == 'cuda'
    model = load_model(str(tmp_path / 'm.pt'))
    assert next(model.networks['fold0'].parameters()).is_cuda
    score = score_points(detect_particles(model, test.volume).centres, centres[1], radius=4)
    assert score.recall >= 0.85 and score.precision >= 0.8, score
