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
from cryoseg.learn.labels import centre_target, detection_targets, particle_instances
from cryoseg.learn.patches import PatchSampler, augment
from cryoseg.learn.tiling import predict_tiled, zscore


# A test-sized detection problem: 20 particles of 160 Å in a 80 x 80 x 40 volume at 20 Å/px (8-voxel
# particles) in faint texture and moderate noise; no vesicles, filament or gold.
DETECTOR_PHANTOM = dict(shape_zyx=(40, 80, 80), voxel_size=20.0, particle_diameters=(160.0,),
                        particles_per_class=(20,), sphere_vesicle_radii=(), ellipsoid_vesicle_radii=(),
                        filament=False, gold_beads=0, contamination=False, noise_std=0.3,
                        texture_amplitude=0.1)


# ------------------------------------------------------------------------------------------- labels
def test_centre_target_of_one_ball():
    targets = detection_targets((31, 31, 31), [[15, 15, 15]], diameter=20)
    centre = targets.centre
    assert centre[15, 15, 15] == 1.0 and centre.max() == 1.0
    ball = targets.mask.astype(bool)
    shell = ball & ~ndimage.binary_erosion(ball)  # voxels with a face neighbour outside
    assert np.all(centre[shell] == 0) and np.all(centre[ball & ~shell] > 0)
    assert np.all(centre[~ball] == 0)
    for axis_profile in (centre[15, 15, 15:], centre[15, 15:, 15], centre[15:, 15, 15],
                         np.array([centre[15 + i, 15 + i, 15 + i] for i in range(6)])):
        assert np.all(np.diff(axis_profile) <= 1e-6)  # monotone along radii
    assert np.count_nonzero(ball) == pytest.approx(4 / 3 * np.pi * 10 ** 3, rel=0.05)


def test_two_touching_balls_give_two_maxima():
    centres = [[10, 15, 15], [20, 15, 15]]  # diameter 10: the balls touch
    targets = detection_targets((30, 30, 31), centres, diameter=10)
    assert set(np.unique(targets.labels)) == {0, 1, 2}
    assert targets.centre[15, 15, 10] == 1.0 and targets.centre[15, 15, 20] == 1.0
    peaks = np.argwhere(targets.centre == 1.0)
    assert sorted(map(tuple, peaks)) == [(15, 15, 10), (15, 15, 20)]
    assert targets.centre[15, 15, 15] == 0.0  # the contact plane is a boundary of both


def test_instances_near_the_border_and_outside():
    labels = particle_instances((10, 10, 10), [[0, 0, 0], [50, 50, 50]], diameter=6)
    assert labels[0, 0, 0] == 1 and 2 not in labels
    assert centre_target(labels).max() == 1.0


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
    targets = detection_targets((24, 40, 60), centres, diameter=6)
    sampler = PatchSampler([np.zeros((24, 40, 60))], [targets.mask], [centres], patch=16, jitter=2,
                           background_fraction=0.0, seed=0)
    inputs, labels = sampler.sample(6)
    assert inputs.shape == (6, 1, 16, 16, 16) and labels.shape == (6, 1, 16, 16, 16)
    assert np.all(labels.sum(axis=(1, 2, 3, 4)) == targets.mask.sum())  # the whole ball in every patch
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
    from cryoseg.learn import read_loss_log
    from cryoseg.learn.detector import LOG_COLUMNS, detect_particles, train_detector
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
