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
from cryoseg.learn.scale import bin_volume, unbin_map, working_binning
from cryoseg.learn.settings import DetectorSettings
from cryoseg.learn.split import spatial_split
from cryoseg.learn.tiling import predict_tiled, zscore


# A test-sized detection problem: 20 particles of 160 Å in a 80 x 80 x 40 volume at 20 Å/px (8-voxel
# particles) in faint texture and moderate noise; no vesicles, filament or gold.
DETECTOR_PHANTOM = dict(shape_zyx=(40, 80, 80), voxel_size=20.0, particle_diameters=(160.0,),
                        particles_per_class=(20,), sphere_vesicle_radii=(), ellipsoid_vesicle_radii=(),
                        filament=False, gold_beads=0, contamination=False, noise_std=0.3,
                        texture_amplitude=0.1)
DETECTOR_TRAINING = dict(iterations=120, batch=4, patch=16, channels=(8, 12, 16), threads=2, learning_rate=2e-3,
                         positive_prior=1.0, validate_every=20, patience=3)


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


# ------------------------------------------------------------------------------------------- working scale, split
def test_working_binning_keeps_the_particle_a_few_voxels_wide():
    # tomo9's ribosomes: 270 Å at 31.36 Å/px = 8.6 voxels -> binned by 2 to 4.3 voxels
    assert working_binning(270 / 31.36, 4) == 2
    assert working_binning(3.9, 4) == 1 and working_binning(16, 4) == 4 and working_binning(40, 0) == 1
    with pytest.raises(CryoSegInputError, match='positive'):
        working_binning(0, 4)


def test_binning_and_back_preserve_a_smooth_map():
    z, y, x = np.mgrid[:21, :30, :33].astype(np.float32)
    ramp = 0.5 * x - 0.25 * y + z  # linear: block means and linear interpolation reproduce it exactly
    binned = bin_volume(ramp, 3)
    assert binned.shape == (7, 10, 11)
    assert binned[2, 3, 4] == pytest.approx(ramp[6:9, 9:12, 12:15].mean())
    back = unbin_map(binned, 3, ramp.shape)
    assert back.shape == ramp.shape
    inner = (slice(1, -2),) * 3  # interpolation is exact between the outermost block centres
    assert np.allclose(back[inner], ramp[inner], atol=1e-4)
    assert unbin_map(np.stack([binned, -binned]), 3, ramp.shape)[1, 5, 5, 5] == pytest.approx(-back[5, 5, 5])
    assert bin_volume(ramp[:4, :5, :7], 2).shape == (2, 3, 4)  # edges padded to whole blocks


def test_spatial_split_holds_back_a_slab_and_masks_it_with_a_gap():
    rng = np.random.default_rng(5)
    centres = np.column_stack([rng.uniform(0, 100, 40), rng.uniform(0, 60, 40), rng.uniform(0, 20, 40)])
    split = spatial_split(centres, (20, 60, 100), 0.25)  # x (100) is the longer in-plane axis
    assert (split.axis, len(split.validation), len(split.training)) == (0, 10, 30)
    assert split.validation[:, 0].min() > split.boundary > split.training[:, 0].max()
    weights = split.training_weights((20, 60, 100), gap=8)
    ignored = np.flatnonzero(weights[0, 0] == 0)
    assert ignored[0] == int(np.floor(split.boundary - 8)) and ignored[-1] == 99 and np.all(weights[..., :ignored[0]] == 1)
    assert spatial_split(centres[:5], (20, 60, 100), 0.2).validation.shape == (0, 3)  # too few to hold back
    assert spatial_split(centres, (20, 60, 100), 0.0).validation.shape == (0, 3)
    assert spatial_split(centres[:, [1, 0, 2]], (20, 100, 60), 0.25).axis == 1


def test_detector_settings_are_checked():
    DetectorSettings().check()
    for bad in (dict(positive_prior=0.5), dict(validation_fraction=1.0), dict(patience=0), dict(patch=30),
                dict(channels=(8, 8))):
        with pytest.raises(CryoSegInputError):
            DetectorSettings(**bad).check()


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
    both = SeedUNet((4, 6, 8), ('sigmoid', 'relu'))
    with torch.no_grad():
        out, raw = both(x), both.raw(x)
    assert out.shape == (2, 2, 24, 24, 24)
    assert torch.allclose(out[:, 0], torch.sigmoid(raw[:, 0])) and torch.allclose(out[:, 1], torch.relu(raw[:, 1]))


def test_nnpu_loss_reduces_to_balanced_cross_entropy_and_spares_unlabelled_particles():
    from cryoseg.learn.training import nnpu_loss

    torch.manual_seed(1)
    logits = torch.randn(2, 1, 6, 6, 6)
    positive = (torch.rand(2, 1, 6, 6, 6) < 0.1).float()
    weights = torch.ones_like(logits)
    weights[1] = 0  # ignored voxels change nothing
    loss, risk = nnpu_loss(logits, positive, weights, 1.0)
    inside = positive[0] > 0
    expected = 0.5 * (torch.nn.functional.softplus(-logits[0][inside]).mean()
                      + torch.nn.functional.softplus(logits[0][~inside]).mean())
    assert torch.isclose(risk, expected) and torch.isclose(loss, expected)

    # 10 annotated particle voxels, 90 unannotated ones that look the same (logit a), 900 background
    # voxels (logit -5): the best a under cross-entropy leaves the particles 1 / (1 + 90/990) likely;
    # with the right prior (1 in 10 annotated) particles are particles
    def best_probability(factor):
        grid = torch.linspace(-8, 8, 321)
        risks = []
        for a in grid:
            z = torch.cat([torch.full((100,), float(a)), torch.full((900,), -5.0)])
            marks = torch.cat([torch.ones(10), torch.zeros(990)])
            risks.append(nnpu_loss(z, marks, torch.ones(1000), factor)[1])
        return torch.sigmoid(grid[int(torch.argmin(torch.stack(risks)))]).item()

    assert best_probability(1.0) == pytest.approx(1 / (1 + 90 / 990), abs=0.01)
    assert best_probability(10.0) > 0.999
    # a network that already calls too much of the unlabelled set negative gets the risk back up
    few = torch.zeros(1, 1, 4, 4, 4)
    few[0, 0, 0, 0, :2] = 1
    z = (16 * few - 8).requires_grad_()  # annotated voxels +8, all others -8
    loss, risk = nnpu_loss(z, few, torch.ones_like(z), 20.0)
    loss.backward()
    assert loss.item() > 0 and risk.item() > 0 and z.grad[0, 0, 3, 3, 3].item() < 0


def _small_phantom(seed):
    from cryoseg.core.phantom import make_phantom, phantom_config

    return make_phantom(phantom_config('small', seed=seed, **DETECTOR_PHANTOM))


def test_detector_trained_on_one_phantom_finds_the_particles_of_another(tmp_path):
    from cryoseg.learn import read_loss_log
    from cryoseg.learn.training import load_model, train_detector

    train, test = _small_phantom(1), _small_phantom(2)
    centres = [np.array([p['centre'] for p in ph.truth.particles]) for ph in (train, test)]
    model_path, log_path = tmp_path / 'detector.pt', tmp_path / 'loss.csv'
    history = train_detector([train.volume], [centres[0]], 160.0, 20.0, str(model_path), str(log_path),
                             DetectorSettings(**DETECTOR_TRAINING))
    log = read_loss_log(log_path)
    assert len(log['iteration']) == history['iterations'] <= DETECTOR_TRAINING['iterations']
    assert log['mask_loss'][-20:].mean() < log['mask_loss'][:20].mean()
    scored = np.isfinite(log['val_f1'])
    assert list(log['iteration'][scored]) == history['val_iteration'] and history['val_iteration'][0] == 20
    assert history['best_iteration'] in history['val_iteration']
    model = load_model(str(model_path))
    assert (model.kind, model.patch, model.voxel_size, model.diameter, model.binning) == \
        ('detector', 16, 20.0, 160.0, 2)  # 8-voxel particles binned to 4
    assert model.history['best_iteration'] == history['best_iteration']
    maps = model.predict(test.volume, patch=32, threads=2)
    assert maps['mask'].shape == test.volume.shape
    found = detect(maps['mask'], maps['centre'], mask_threshold=0.5, centre_threshold=0.3, min_size=34,
                   filter_outliers=False)
    score = score_points(found.centres, centres[1], radius=4)
    assert score.f1 >= 0.9, score


@pytest.mark.skipif(not torch.cuda.is_available(), reason='no GPU: the CPU path is tested above')
def test_the_same_defaults_train_and_detect_on_a_gpu(tmp_path):
    from cryoseg.learn.training import load_model, train_detector

    phantom = _small_phantom(1)
    centres = np.array([p['centre'] for p in phantom.truth.particles])
    settings = DetectorSettings(**dict(DETECTOR_TRAINING, iterations=10))
    history = train_detector([phantom.volume], [centres], 160.0, 20.0, str(tmp_path / 'gpu.pt'),
                             str(tmp_path / 'gpu.csv'), settings)
    assert history['device'] == 'cuda'
    model = load_model(str(tmp_path / 'gpu.pt'))
    assert next(model.networks['detector'].parameters()).is_cuda
    maps = model.predict(phantom.volume, patch=32)
    assert maps['mask'].shape == maps['centre'].shape == phantom.volume.shape


def test_model_file_errors(tmp_path):
    from cryoseg.learn.training import load_model

    (tmp_path / 'junk.pt').write_text('not a model')
    with pytest.raises(CryoSegInputError, match='not a cryoseg model'):
        load_model(str(tmp_path / 'junk.pt'))
    with pytest.raises(CryoSegInputError, match='not found'):
        load_model(str(tmp_path / 'missing.pt'))
