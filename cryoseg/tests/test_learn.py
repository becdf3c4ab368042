"""cryoseg.learn: label targets, tiled inference, wedge-preserving augmentation, networks, model files
and a short real training (algorithms.md §6.1, §6.2, §6.5)."""
import subprocess
import sys

import numpy as np
import pytest
from scipy import ndimage

from cryoseg.core.detection import detect
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
DETECTOR_TRAINING = dict(iterations=120, batch=4, patch=24, channels=(8, 12, 16), threads=2, learning_rate=2e-3,
                         centre_learning_rate=2e-3, checkpoint_every=50)


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


def test_seed_unet_shapes_and_heads():
    from cryoseg.learn.networks import SeedUNet

    torch.manual_seed(0)
    x = torch.randn(2, 1, 24, 24, 24)
    mask, centre = SeedUNet((4, 6, 8), 'sigmoid'), SeedUNet((4, 6, 8), 'relu')
    with torch.no_grad():
        p, c = mask(x), centre(x)
    assert p.shape == c.shape == (2, 1, 24, 24, 24)
    assert 0 <= p.min() and p.max() <= 1 and c.min() >= 0
    default = SeedUNet()
    assert [m.out_channels for m in default.modules() if isinstance(m, torch.nn.Conv3d)] == \
        [32, 32, 48, 48, 64, 64, 64, 64, 64, 48, 48, 48, 32, 32, 1]


def _small_phantom(seed):
    from cryoseg.core.phantom import make_phantom, phantom_config

    return make_phantom(phantom_config('small', seed=seed, **DETECTOR_PHANTOM))


def test_detector_trained_on_one_phantom_finds_the_particles_of_another(tmp_path):
    from cryoseg.learn import read_loss_log
    from cryoseg.learn.training import TrainingSettings, load_model, train_detector

    train, test = _small_phantom(1), _small_phantom(2)
    centres = [np.array([p['centre'] for p in ph.truth.particles]) for ph in (train, test)]
    model_path, log_path = tmp_path / 'detector.pt', tmp_path / 'loss.csv'
    history = train_detector([train.volume], [centres[0]], 160.0, 20.0, str(model_path), str(log_path),
                             TrainingSettings(**DETECTOR_TRAINING))
    log = read_loss_log(log_path)
    assert len(log['iteration']) == DETECTOR_TRAINING['iterations'] == history['iterations']
    assert log['mask_loss'][-20:].mean() < log['mask_loss'][:20].mean()
    model = load_model(str(model_path))
    assert (model.kind, model.patch, model.voxel_size, model.diameter) == ('detector', 24, 20.0, 160.0)
    maps = model.predict(test.volume, patch=48, threads=2)
    found = detect(maps['mask'], maps['centre'], mask_threshold=0.5, centre_threshold=0.3, min_size=34,
                   filter_outliers=False)
    score = score_points(found.centres, centres[1], radius=4)
    assert score.f1 >= 0.9, score


def test_model_file_errors(tmp_path):
    from cryoseg.learn.training import load_model

    (tmp_path / 'junk.pt').write_text('not a model')
    with pytest.raises(CryoSegInputError, match='not a cryoseg model'):
        load_model(str(tmp_path / 'junk.pt'))
    with pytest.raises(CryoSegInputError, match='not found'):
        load_model(str(tmp_path / 'missing.pt'))
