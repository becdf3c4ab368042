"""Extraction, transforms and averaging against analytic ground truth (algorithms.md §4.4)."""
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from cryoseg.core.errors import CryoSegInputError
from cryoseg.core.extract import (ExtractionSettings, Extractor, downsampled_box, extract, fourier_crop,
                                  rescale_positions, sphere_mask)
from cryoseg.core.mrcio import open_volume, write_volume
from cryoseg.core.transform import (RunningAverage, align, average_aligned, extraction_matrix, resample)

SHAPE = (40, 48, 56)  # z, y, x
# an asymmetric object: blobs of different weights at different distances on different axes
OBJECT_BLOBS = np.array([[0, 0, 0], [6, 0, 0], [0, 3.5, 0], [-2, -2, 4.5]], float)
OBJECT_WEIGHTS = np.array([1.0, 0.8, 0.6, 1.2])


def gaussian_blobs(shape_zyx, centres_xyz, weights, sigma):
    z, y, x = np.meshgrid(*(np.arange(n, dtype=float) for n in shape_zyx), indexing='ij', sparse=True)
    volume = np.zeros(shape_zyx)
    for (cx, cy, cz), weight in zip(centres_xyz, weights):
        volume += weight * np.exp(-((x - cx) ** 2 + (y - cy) ** 2 + (z - cz) ** 2) / (2 * sigma ** 2))
    return volume.astype(np.float32)


def object_in_box(size, matrix=np.eye(4), sigma=1.5):
    """f'(r) = f(M·r) of the asymmetric object f, analytically: its blobs a_k lie at Rᵀ(a_k − t)."""
    rotation, shift = matrix[:3, :3], matrix[:3, 3]
    centres = (OBJECT_BLOBS - shift) @ rotation + size // 2  # rows: Rᵀ(a − t)
    return gaussian_blobs((size,) * 3, centres, OBJECT_WEIGHTS, sigma)


def correlation(a, b):
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


def random_matrix(rng, max_shift=2.0):
    matrix = np.eye(4)
    matrix[:3, :3] = Rotation.random(random_state=rng).as_matrix()
    matrix[:3, 3] = rng.uniform(-max_shift, max_shift, 3)
    return matrix


@pytest.fixture
def noise_volume():
    return np.random.default_rng(3).standard_normal(SHAPE).astype(np.float32)


# ------------------------------------------------------------------------------------------ cropping
def test_box_reproduces_the_exact_voxels_around_integer_positions(tmp_path, noise_volume):
    path = write_volume(tmp_path / 'tomo.mrc', noise_volume, 10.0)
    positions = [(20, 24, 18), (8, 8, 8), (47, 39, 31), (30, 10, 25)]
    with open_volume(path) as (data, _):  # through the memory map, as the protocol reads
        stack, kept, skipped = extract(data, positions, ExtractionSettings(box=16))
    assert list(kept) == [0, 1, 2, 3] and len(skipped) == 0
    for (x, y, z), box in zip(positions, stack):
        np.testing.assert_array_equal(box, noise_volume[z - 8:z + 8, y - 8:y + 8, x - 8:x + 8])
    odd, _, _ = extract(noise_volume, [(20, 24, 18)], ExtractionSettings(box=15))
    np.testing.assert_array_equal(odd[0], noise_volume[18 - 7:18 + 8, 24 - 7:24 + 8, 20 - 7:20 + 8])


def test_half_voxel_positions_round_up_and_report_the_residual(noise_volume):
    extractor = Extractor(noise_volume, [(20.5, 24.4, 17.6)], ExtractionSettings(box=16))
    np.testing.assert_array_equal(extractor.plan.centres[0], [21, 24, 18])
    np.testing.assert_allclose(extractor.plan.residuals[0], [-0.5, 0.4, -0.4], atol=1e-12)
    np.testing.assert_array_equal(extractor.box(0), noise_volume[10:26, 16:32, 13:29])


def test_picks_at_bin1_cut_from_the_bin2_tomogram_equal_the_binned_bin1_crops():
    rng = np.random.default_rng(5)
    bin1 = rng.standard_normal((48, 64, 80)).astype(np.float32)

    def bin2(volume):
        z, y, x = (n // 2 for n in volume.shape)
        return volume.reshape(z, 2, y, 2, x, 2).mean(axis=(1, 3, 5))

    picks_bin1 = np.array([(40, 32, 24), (18, 20, 16), (62, 46, 30)])
    crops_bin1, _, _ = extract(bin1, picks_bin1, ExtractionSettings(box=32))
    picks_bin2 = rescale_positions(picks_bin1, 5.0, 10.0)
    crops_bin2, kept, _ = extract(bin2(bin1), picks_bin2, ExtractionSettings(box=16))
    assert len(kept) == 3
    for crop_bin1, crop_bin2 in zip(crops_bin1, crops_bin2):
        np.testing.assert_allclose(crop_bin2, bin2(crop_bin1), rtol=1e-6, atol=1e-6)


FACES = {'x low': (3, 24, 20), 'x high': (52, 24, 20), 'y low': (28, 3, 20), 'y high': (28, 44, 20),
         'z low': (28, 24, 3), 'z high': (28, 24, 36)}


def test_boxes_leaving_any_of_the_six_faces_are_skipped_and_reported(noise_volume):
    positions = [(28, 24, 20)] + list(FACES.values()) + [(8, 8, 8), (47, 39, 31)]  # last two just fit
    stack, kept, skipped = extract(noise_volume, positions, ExtractionSettings(box=16, border='skip'))
    assert list(skipped) == [1, 2, 3, 4, 5, 6]
    assert list(kept) == [0, 7, 8] and stack.shape == (3, 16, 16, 16)


@pytest.mark.parametrize('face', sorted(FACES))
def test_boxes_leaving_a_face_are_padded_with_the_inside_mean(noise_volume, face):
    x, y, z = FACES[face]
    stack, kept, skipped = extract(noise_volume, [FACES[face]], ExtractionSettings(box=16, border='pad'))
    assert list(kept) == [0] and len(skipped) == 0
    box = stack[0]
    lower = np.array([z, y, x]) - 8
    index = np.stack(np.meshgrid(*(np.arange(16),) * 3, indexing='ij')) + lower[:, None, None, None]
    inside = np.all((index >= 0) & (index < np.array(SHAPE)[:, None, None, None]), axis=0)
    assert 0 < inside.sum() < 16 ** 3
    lo = np.maximum(lower, 0)
    hi = np.minimum(lower + 16, SHAPE)
    inside_voxels = noise_volume[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]
    np.testing.assert_array_equal(box[inside].reshape(inside_voxels.shape), inside_voxels)
    np.testing.assert_allclose(box[~inside], inside_voxels.mean(), rtol=1e-5)


def test_a_box_entirely_outside_the_volume_is_skipped_even_when_padding(noise_volume):
    _, kept, skipped = extract(noise_volume, [(-20, 24, 20), (28, 24, 20)],
                               ExtractionSettings(box=16, border='pad'))
    assert list(kept) == [1] and list(skipped) == [0]


# ------------------------------------------------------------------------------------ preprocessing
def test_invert_gives_the_exact_negative(noise_volume):
    positions = [(20, 24, 18), (3, 24, 20)]
    plain, _, _ = extract(noise_volume, positions, ExtractionSettings(box=16, border='pad'))
    inverted, _, _ = extract(noise_volume, positions, ExtractionSettings(box=16, border='pad', invert=True))
    np.testing.assert_array_equal(inverted, -plain)


def test_normalise_gives_mean_0_and_std_1(noise_volume):
    volume = noise_volume * 7.0 + 3.0
    stack, _, _ = extract(volume, [(20, 24, 18), (30, 30, 20)], ExtractionSettings(box=16, normalize='box'))
    for box in stack:
        assert abs(box.mean(dtype=np.float64)) < 1e-5 and box.std(dtype=np.float64) == pytest.approx(1, abs=1e-5)
    settings = ExtractionSettings(box=16, normalize='outside_sphere', sphere_radius=6)
    stack, _, _ = extract(volume, [(20, 24, 18)], settings)
    background = stack[0][~sphere_mask(16, 6)]
    assert abs(background.mean(dtype=np.float64)) < 1e-5
    assert background.std(dtype=np.float64) == pytest.approx(1, abs=1e-5)
    assert stack[0].std() != pytest.approx(1, abs=1e-3)  # the whole box is not what was normalised


def test_downsampling_by_2_halves_the_box_and_doubles_the_sampling():
    sigma = 3.0  # a smooth blob survives Fourier cropping as the same blob at the new sampling
    volume = gaussian_blobs(SHAPE, [(28, 24, 20)], [1.0], sigma)
    settings = ExtractionSettings(box=32, down_factor=2)
    assert settings.output_box == 16 and settings.output_sampling(4.5) == pytest.approx(9.0)
    stack, _, _ = extract(volume, [(28, 24, 20)], settings)
    expected = gaussian_blobs((16, 16, 16), [(8, 8, 8)], [1.0], sigma / 2)
    assert stack.shape == (1, 16, 16, 16)
    np.testing.assert_allclose(stack[0], expected, atol=2e-3)
    assert np.unravel_index(np.argmax(stack[0]), stack[0].shape) == (8, 8, 8)


def test_non_integer_downsampling_keeps_an_even_box_and_the_exact_sampling():
    settings = ExtractionSettings(box=32, down_factor=1.5)
    assert downsampled_box(32, 1.5) == 22 and settings.output_box == 22
    assert settings.output_sampling(10.0) == pytest.approx(10.0 * 32 / 22)
    volume = np.random.default_rng(1).standard_normal((32, 32, 32)).astype(np.float32)
    assert fourier_crop(volume, 22).mean() == pytest.approx(volume.mean(), abs=1e-5)


@pytest.mark.parametrize('kwargs', [dict(box=1), dict(box=16.5), dict(box=16, down_factor=0.5),
                                    dict(box=16, border='wrap'), dict(box=16, normalize='edges'),
                                    dict(box=16, normalize='outside_sphere', sphere_radius=20)])
def test_bad_settings_are_refused_with_a_message(kwargs):
    with pytest.raises(CryoSegInputError):
        ExtractionSettings(**kwargs)


def test_non_finite_positions_are_refused(noise_volume):
    with pytest.raises(CryoSegInputError, match='finite'):
        extract(noise_volume, [(np.nan, 1, 2)], ExtractionSettings(box=8))


# --------------------------------------------------------------------------------------- transforms
def test_transform_convention_on_a_quarter_turn():
    """f'(r) = f(M·r): with R = Rz(90°) a blob of f at +x appears in f' at −y."""
    reference = np.zeros((16, 16, 16), np.float32)
    reference[8, 8, 8 + 5] = 1.0  # [z, y, x]: x = +5 from the centre
    matrix = np.eye(4)
    matrix[:3, :3] = [[0, -1, 0], [1, 0, 0], [0, 0, 1]]
    moved = resample(reference, matrix, order=1)
    assert np.unravel_index(np.argmax(moved), moved.shape) == (8, 8 - 5, 8)
    np.testing.assert_allclose(align(moved, matrix, order=1), reference, atol=1e-6)
    shifted = np.eye(4)
    shifted[:3, 3] = (2, 0, 0)  # f'(r) = f(r + t): the particle sits at −t
    assert np.unravel_index(np.argmax(resample(reference, shifted, order=1)), (16,) * 3) == (8, 8, 8 + 3)


def test_the_subtomogram_transform_is_the_coordinate_matrix():
    rng = np.random.default_rng(8)
    matrix = random_matrix(rng)
    np.testing.assert_array_equal(extraction_matrix(matrix), matrix)
    scaled = extraction_matrix(matrix, shift_scale=0.5)
    np.testing.assert_allclose(scaled[:3, :3], matrix[:3, :3])
    np.testing.assert_allclose(scaled[:3, 3], matrix[:3, 3] * 0.5)


@pytest.mark.parametrize('subvoxel', ['shift', 'interpolate'])
def test_a_rotated_particle_at_a_sub_voxel_position_aligns_back(subvoxel):
    """The object placed at a fractional position with rotation R (tomogram = f(R·(x − p))) comes
    back to f after extraction and alignment with the extracted transform, in both sub-voxel modes."""
    rng = np.random.default_rng(11)
    matrix = random_matrix(rng, max_shift=0)
    position = np.array([27.3, 22.6, 19.45])
    tomogram = gaussian_blobs(SHAPE, OBJECT_BLOBS @ matrix[:3, :3] + position, OBJECT_WEIGHTS, 1.5)
    extractor = Extractor(tomogram, [position], ExtractionSettings(box=24, subvoxel=subvoxel))
    box = extractor.box(0)
    subtomo_matrix = extraction_matrix(matrix, 1.0, extractor.residuals_out(0))
    aligned = align(box, subtomo_matrix)
    assert correlation(aligned, object_in_box(24)) > 0.99
    assert correlation(box, object_in_box(24)) < 0.7


def test_copies_under_known_transforms_average_back_to_the_object():
    rng = np.random.default_rng(2)
    matrices = [random_matrix(rng) for _ in range(24)]
    particles = [object_in_box(32, matrix) for matrix in matrices]
    reference = object_in_box(32)
    for index in (9, 19):  # the 10th and 20th items, which upstream pairs with the wrong transform
        assert correlation(align(particles[index], matrices[index]), reference) > 0.99
        assert correlation(align(particles[index], matrices[0]), reference) < 0.8
    average = average_aligned(particles, matrices)
    assert correlation(average, reference) > 0.99
    unaligned = RunningAverage()
    for particle in particles:
        unaligned.add(particle)
    assert correlation(unaligned.mean(), reference) < 0.8


def test_averaging_refuses_mixed_box_sizes_and_empty_input():
    average = RunningAverage()
    average.add(np.zeros((8, 8, 8), np.float32))
    with pytest.raises(CryoSegInputError, match='different sizes'):
        average.add(np.zeros((6, 6, 6), np.float32))
    with pytest.raises(CryoSegInputError, match='no subtomograms'):
        RunningAverage().mean()


def test_rescaling_between_samplings():
    np.testing.assert_allclose(rescale_positions([[10, 20, 30]], 5.0, 10.0), [[5, 10, 15]])
    np.testing.assert_allclose(rescale_positions([[10, 20, 30]], 15.0, 10.0), [[15, 30, 45]])
    with pytest.raises(CryoSegInputError):
        rescale_positions([[1, 2, 3]], 0.0, 10.0)
