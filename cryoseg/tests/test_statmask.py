"""Statistics mask (algorithms.md §1.3, tests of §1.6) against analytic ground truth."""
import tracemalloc

import mrcfile
import numpy as np
import pytest
from scipy import ndimage
from skimage.transform import resize

from cryoseg.core import statmask
from cryoseg.core.checks import check_volume_values
from cryoseg.core.errors import CryoSegInputError
from cryoseg.core.mrcio import read_volume, write_volume
from cryoseg.core.phantom import make_phantom, phantom_config
from cryoseg.tests.isonet_reference import isonet_mask


@pytest.fixture(scope='module')
def noise():
    return np.random.default_rng(1).standard_normal((40, 50, 60)).astype(np.float32)


def sparse_phantom(seed=3, shape=(100, 200, 200), count=60, radius=6, depth=3.0):
    """N(0, 1) noise with ``count`` dark balls (−depth σ) only in the half x < 100."""
    rng = np.random.default_rng(seed)
    volume = rng.standard_normal(shape).astype(np.float32)
    centres = []
    while len(centres) < count:
        centre = rng.uniform([radius + 2] * 3, [shape[0] - radius - 2, shape[1] - radius - 2,
                                                shape[2] / 2 - radius - 2])
        if all(np.linalg.norm(centre - other) > 2 * radius + 2 for other in centres):
            centres.append(centre)
    balls = np.zeros(shape, bool)
    grid = np.indices((2 * radius + 3,) * 3) - (radius + 1)
    for centre in centres:
        corner = np.round(centre).astype(int) - (radius + 1)
        inside = ((grid + (np.round(centre) - centre)[:, None, None, None]) ** 2).sum(0) <= radius ** 2
        balls[tuple(slice(c, c + 2 * radius + 3) for c in corner)] |= inside
    volume[balls] -= depth
    return volume, balls


def cellular_phantom(seed=5, shape=(100, 128, 128), slab=(30, 70)):
    """A unit-std correlated texture in z ∈ [30, 70) between margins of N(0, 0.2) noise."""
    rng = np.random.default_rng(seed)
    volume = (0.2 * rng.standard_normal(shape)).astype(np.float32)
    texture = ndimage.gaussian_filter(rng.standard_normal((slab[1] - slab[0],) + shape[1:]), 2)
    volume[slab[0]:slab[1]] = texture / texture.std()
    return volume


# ------------------------------------------------------------------------------------ filters
def test_binning_equals_skimage_resize_for_even_shapes(noise):
    expected = resize(noise, np.array(noise.shape) // 2, anti_aliasing=True)
    np.testing.assert_allclose(statmask.bin2(noise, slab=7, binning='gaussian'), expected, atol=1e-6)


@pytest.mark.parametrize('shape', [(9, 10, 11), (4, 5, 7), (3, 2, 6)])
@pytest.mark.parametrize('binning', statmask.BINNINGS)
def test_binning_of_odd_and_short_shapes_replicates_the_edge(shape, binning):
    volume = np.random.default_rng(2).standard_normal(shape).astype(np.float32)
    smoothed = volume.astype(np.float64)
    if binning == 'gaussian':
        smoothed = ndimage.gaussian_filter(smoothed, 0.5, mode='mirror')
    padded = np.pad(smoothed, [(0, n % 2) for n in shape], mode='edge')
    z, y, x = (n // 2 for n in padded.shape)
    expected = padded.reshape(z, 2, y, 2, x, 2).mean(axis=(1, 3, 5))
    binned = statmask.bin2(volume, slab=1, binning=binning)
    assert binned.shape == tuple((n + 1) // 2 for n in shape)
    np.testing.assert_allclose(binned, expected, atol=1e-6)


def test_local_std_equals_the_explicit_window(noise):
    side = 3
    smoothed = statmask.smooth(statmask.bin2(noise), side)
    deviation = statmask.local_std(smoothed, side)
    rng = np.random.default_rng(0)
    interior = [rng.integers(side, n - side, 5) for n in smoothed.shape]
    corners = [(0, 0, 0), (19, 24, 29), (0, 24, 1), (2, 0, 29)]  # windows truncated by the faces
    for z, y, x in list(zip(*interior)) + corners:
        window = smoothed[max(z - side, 0):z + side + 1, max(y - side, 0):y + side + 1,
                          max(x - side, 0):x + side + 1]
        assert deviation[z, y, x] == pytest.approx(np.std(window.astype(np.float64)), rel=1e-5)


def test_corner_counts_equal_brute_force():
    counts = statmask._box_counts(7, 2)
    brute = [sum(0 <= j < 7 for j in range(i - 2, i + 3)) for i in range(7)]
    assert counts.tolist() == brute


def test_percentile_equals_numpy_exactly():
    rng = np.random.default_rng(3)
    for values in (rng.standard_normal(300_000).astype(np.float32),
                   np.round(rng.standard_normal(200_001), 1).astype(np.float32),  # many ties
                   rng.standard_normal(7).astype(np.float32), np.ones(1, np.float32)):
        for q in (0, 0.3, 20, 50, 77.7, 99.9, 100):
            assert statmask._percentile(values, q) == np.percentile(values, q)


@pytest.mark.parametrize('slab', [7, 16, 64])
def test_slabs_give_the_whole_volume_result(noise, slab):
    whole = len(noise)
    side = 3
    binned = statmask.bin2(noise, slab=whole)
    smoothed = statmask.smooth(binned, side, slab=whole)
    np.testing.assert_array_equal(statmask.bin2(noise, slab=slab), binned)
    np.testing.assert_array_equal(statmask.bin2(noise, slab=slab, binning='gaussian'),
                                  statmask.bin2(noise, slab=whole, binning='gaussian'))
    np.testing.assert_array_equal(statmask.smooth(binned, side, slab=slab), smoothed)
    np.testing.assert_array_equal(statmask.local_max_of_negated(smoothed, side, slab=slab),
                                  statmask.local_max_of_negated(smoothed, side, slab=whole))
    np.testing.assert_allclose(statmask.local_std(smoothed, side, slab=slab),
                               statmask.local_std(smoothed, side, slab=whole), atol=1e-6)
    for std_mode in statmask.STD_MODES:
        np.testing.assert_array_equal(
            statmask.statistics_mask(noise, side=side, std_mode=std_mode, slab=slab),
            statmask.statistics_mask(noise, side=side, std_mode=std_mode, slab=whole))


@pytest.mark.parametrize('slab', [2, 5, 64])  # slabs thinner and thicker than the filters' reach
def test_filters_in_place_equal_the_filters_into_a_new_array(noise, slab):
    side = 3
    binned = statmask.bin2(noise)
    smoothed = statmask.smooth(binned, side)
    np.testing.assert_array_equal(statmask.smooth(binned.copy(), side, slab, out=binned), smoothed)
    np.testing.assert_array_equal(binned, smoothed)
    maximum, deviation = statmask._local_filters(smoothed.copy(), side, slab)
    filtered, in_place = statmask._local_filters(smoothed, side, slab, in_place=True)
    assert in_place is smoothed
    np.testing.assert_array_equal(in_place, deviation)
    np.testing.assert_array_equal(filtered, maximum)


# ------------------------------------------------------------------------------------ mask rules
@pytest.mark.parametrize('density, spread', [(30, 40), (70, 60), (50, 50)])
def test_percentile_mode_keeps_the_requested_fractions(noise, density, spread):
    max_mask, std_mask, mask = statmask.statistics_mask_binned(
        noise, side=2, percentile=density, std_mode='percentile', std_percentile=spread)
    assert 100 * max_mask.mean() == pytest.approx(density, abs=0.5)
    assert 100 * std_mask.mean() == pytest.approx(spread, abs=0.5)
    assert max(0, density + spread - 100) - 0.5 <= 100 * mask.mean() <= min(density, spread) + 0.5


def test_disabled_masks(noise):
    max_mask, std_mask, mask = statmask.statistics_mask_binned(noise, side=2, percentile=100, std_mode='global_factor',
                                                               threshold=0.5)
    assert max_mask.all() and not std_mask.all()
    np.testing.assert_array_equal(mask, std_mask)
    max_mask, std_mask, mask = statmask.statistics_mask_binned(noise, side=2, percentile=40, std_mode='global_factor',
                                                               threshold=0)
    assert std_mask.all() and not max_mask.all()
    np.testing.assert_array_equal(mask, max_mask)  # threshold 0 keeps everything the max mask keeps
    _, std_mask, _ = statmask.statistics_mask_binned(noise, side=2, std_mode='percentile', std_percentile=100)
    assert std_mask.all()


def test_sparse_particles_are_kept_and_the_empty_half_dropped():
    volume, balls = sparse_phantom()
    for percentile in (50, 30):  # the default and a sparse-sample setting
        mask = statmask.statistics_mask(volume, side=4, percentile=percentile).astype(bool)
        assert balls[mask].sum() / balls.sum() >= 0.95
        assert mask[:, :, :100].sum() / mask.sum() > 0.8
        assert 0.05 < mask.mean() < 0.5


def test_std_mask_excludes_the_empty_margins_of_a_cellular_slab():
    volume = cellular_phantom()
    side = 4
    fractions = []
    for threshold in (0.25, 0.5, 1.0, 1.5):
        _, _, mask = statmask.statistics_mask_binned(volume, side=side, percentile=100, std_mode='global_factor',
                                                     threshold=threshold)
        fractions.append(mask.mean())
        if threshold == 0.5:
            per_slice = mask.mean(axis=(1, 2))  # binned slab: z 15..35
            assert per_slice[15 + 2 * side:35 - 2 * side].min() >= 0.99
            assert per_slice[:15 - 2 * side].max() == 0 and per_slice[35 + 2 * side:].max() == 0
    assert all(a > b for a, b in zip(fractions, fractions[1:]))


def test_robust_overall_std_is_the_std_of_gaussian_data_and_ignores_a_few_extreme_voxels():
    values = np.random.default_rng(8).normal(0, 0.3, 10 ** 6).astype(np.float32)
    assert statmask.overall_std(values) == pytest.approx(0.3, rel=0.01)
    assert statmask.overall_std(values, 'plain') == pytest.approx(0.3, rel=0.01)
    values[:5000] = -15  # 0.5 % of gold-bead voxels, 50 std dark
    assert statmask.overall_std(values) == pytest.approx(0.3, rel=0.02)
    assert statmask.overall_std(values, 'plain') > 3 * 0.3


def test_default_threshold_keeps_the_particles_and_drops_the_empty_margins_despite_gold():
    """The default phantom carries gold beads, contamination and vesicles; its ice slab lies between
    empty margins in z. The default std criterion (Otsu's split of log local std) keeps every particle
    and drops the margins; threshold 1 of the plain overall std (IsoNet's documented rule) drops about a
    third of the particles."""
    phantom = make_phantom(phantom_config('small', seed=1))
    assert phantom.truth.gold
    x, y, z = np.round([p['centre'] for p in phantom.truth.particles]).astype(int).T
    low, high = phantom.truth.ice_z
    reach = 2 * 2 * 4  # 2·side binned voxels: the filter boxes straddle the ice surfaces

    mask = statmask.statistics_mask(phantom.volume)
    assert mask[z, y, x].mean() >= 0.95
    assert np.concatenate([mask[:low].ravel(), mask[high:].ravel()]).mean() < 0.05
    assert np.concatenate([mask[:low - reach].ravel(), mask[high + reach:].ravel()]).mean() < 0.03
    assert 0.3 < mask[low:high].mean() < 0.9

    plain = statmask.statistics_mask(phantom.volume, std_mode='global_factor', std_estimate='plain')
    assert plain[z, y, x].mean() < 0.8


@pytest.mark.parametrize('mode, removed', [('isonet1', 5), ('isonet2', 2)])
def test_z_crop_removes_whole_binned_slices(mode, removed):
    volume = np.random.default_rng(4).standard_normal((106, 20, 20)).astype(np.float32)  # 53 binned slices
    f = 0.1
    assert removed == (int(f * 53) if mode == 'isonet1' else int(f / 2 * 53))
    _, _, mask = statmask.statistics_mask_binned(volume, side=2, percentile=100, std_mode='global_factor', threshold=0,
                                                 z_crop=f,
                                                 z_crop_mode=mode)
    empty = ~mask.any(axis=(1, 2))
    assert empty[:removed].all() and empty[53 - removed:].all() and not empty[removed:53 - removed].any()


def test_isonet_compatible_options_match_a_direct_implementation():
    volume, _ = sparse_phantom(seed=7, shape=(40, 64, 80), count=8, radius=4)
    expected = isonet_mask(volume, side=3, density_percentage=40, std_percentage=60, z_crop=0.1)
    result = statmask.statistics_mask(volume, side=3, percentile=40, std_mode='percentile', std_percentile=60,
                                      z_crop=0.1, binning='gaussian', slab=7)
    assert result.dtype == np.uint8
    assert np.mean(result != expected) < 1e-3  # only threshold ties from float rounding may differ
    assert 0.1 < expected.mean() < 0.5


def test_unbinning_replicates_blocks_and_odd_edges():
    binned = np.random.default_rng(0).random((3, 4, 5)) > 0.5
    full = statmask.unbin2(binned, (5, 8, 9), slab=2)
    assert full.dtype == np.uint8 and full.shape == (5, 8, 9)
    np.testing.assert_array_equal(full[::2, ::2, ::2], binned[:, :, :5])
    np.testing.assert_array_equal(full[1::2, 1::2, 1::2], binned[:2, :, :4])
    np.testing.assert_array_equal(full[:, :, 8], binned.repeat(2, 0).repeat(2, 1)[:5, :8, 4])
    compat = statmask.unbin2(binned, (5, 8, 9), isonet_odd_edge=True)
    assert not compat[4].any() and not compat[:, :, 8].any()
    np.testing.assert_array_equal(compat[:4, :, :8], full[:4, :, :8])


def test_memory_beyond_the_mapped_input_stays_below_one_and_a_half_copies(tmp_path):
    volume = cellular_phantom(shape=(96, 128, 128))
    path = tmp_path / 'tomo.mrc'
    write_volume(path, volume, 10.0)
    tracemalloc.start()
    with mrcfile.mmap(path, mode='r') as mrc:
        statmask.statistics_mask(mrc.data, side=4, std_mode='global_factor', threshold=0.5, slab=8)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 1.5 * volume.nbytes


# ------------------------------------------------------------------------------------ files and errors
def test_mask_file_is_uint8_with_the_input_geometry(tmp_path):
    volume = cellular_phantom(shape=(61, 47, 53), slab=(20, 41))  # odd on every axis
    source = tmp_path / 'TS_07.mrc'
    write_volume(source, volume, (8.5, 8.5, 8.5), origin=(12.0, -4.0, 3.5))
    target = tmp_path / 'masks' / statmask.mask_file_name(str(source))
    assert target.name == 'TS_07_mask.mrc'
    fraction = statmask.make_mask_file(source, target, statistics=dict(side=3, percentile=100, std_mode='global_factor',
                                                                       threshold=0.5))
    mask, info = read_volume(target, dtype=None)
    assert mask.dtype.itemsize == 1 and set(np.unique(mask)) == {0, 1}  # MRC mode 0
    assert mask.shape == volume.shape
    assert info.voxel_size == pytest.approx((8.5, 8.5, 8.5)) and info.origin == pytest.approx((12.0, -4.0, 3.5))
    assert fraction == pytest.approx(mask.mean())
    assert mask[0].sum() == 0 and mask[30].all()  # empty margin dropped, textured slab kept


@pytest.mark.parametrize('volume, message', [
    (np.zeros((1, 30, 30), np.float32), '3-D volume'),
    (np.zeros((30, 30), np.float32), '3-D volume'),
    (np.full((20, 20, 20), 3.0, np.float32), 'constant'),
])
def test_unusable_volumes_get_a_clear_message(volume, message):
    with pytest.raises(CryoSegInputError, match=message):
        statmask.statistics_mask(volume)


@pytest.mark.parametrize('bad', [np.nan, np.inf, -np.inf])
def test_non_finite_voxels_are_reported_with_their_position(noise, bad):
    volume = noise.copy()
    volume[33, 4, 5] = bad
    with pytest.raises(CryoSegInputError, match='NaN or infinite.*x=5, y=4, z=33'):
        statmask.statistics_mask(volume, slab=4)
    with pytest.raises(CryoSegInputError, match='NaN or infinite'):
        check_volume_values(volume, slab=4)


@pytest.mark.parametrize('settings, message', [
    (dict(side=40), 'larger than the whole tomogram'),
    (dict(side=0), 'at least 1'),
    (dict(side=2.5), 'whole number'),
    (dict(percentile=0), 'percentile'),
    (dict(threshold=-1), 'threshold'),
    (dict(z_crop=0.5), 'z_crop'),
    (dict(std_mode='relative'), 'std_mode'),
    (dict(std_estimate='mean'), 'std_estimate'),
    (dict(binning='cubic'), 'binning'),
])
def test_absurd_settings_get_a_clear_message(noise, settings, message):
    with pytest.raises(CryoSegInputError, match=message):
        statmask.statistics_mask(noise, **settings)


def test_side_in_angstrom():
    assert statmask.side_from_angstrom(80, 10.0) == 4  # a binned voxel spans 20 Å
    with pytest.raises(CryoSegInputError, match='less than one binned voxel'):
        statmask.side_from_angstrom(5, 10.0)
    with pytest.raises(CryoSegInputError, match='positive'):
        statmask.side_from_angstrom(-80, 10.0)


def test_bad_file_gets_its_name_in_the_message_and_writes_nothing(tmp_path):
    source = tmp_path / 'flat.mrc'
    write_volume(source, np.ones((32, 32, 32), np.float32), 10.0)
    target = tmp_path / 'flat_mask.mrc'
    with pytest.raises(CryoSegInputError, match='flat.mrc: the tomogram is constant'):
        statmask.make_mask_file(source, target)
    assert not target.exists()


def test_warnings_for_empty_and_nearly_empty_masks():
    assert 'empty' in statmask.mask_warnings(0.0)[0]
    assert '0.50 %' in statmask.mask_warnings(0.005)[0]
    assert statmask.mask_warnings(0.2) == []
    with pytest.raises(CryoSegInputError, match='method'):
        statmask.make_mask(np.zeros((4, 4, 4)), method='magic')


def test_methods_combine_and_clean_up_as_documented():
    from cryoseg.core.morphology import postprocess_mask
    from cryoseg.core.texture import texture_mask

    volume = cellular_phantom(shape=(60, 64, 64), slab=(20, 40))
    stats, texture = dict(side=2, percentile=100, std_mode='global_factor', threshold=0.5), dict(block_size=16)
    by_statistics = statmask.make_mask(volume, 'statistics', statistics=stats)
    by_texture = statmask.make_mask(volume, 'texture', texture=texture)
    # the texture mask is made on the tomogram binned by 2 (block means), its lengths halved
    np.testing.assert_array_equal(by_texture, statmask.unbin2(texture_mask(
        statmask.bin2(volume), block_size=8, texture_sigma=0.5, edge_sigma=0.25), volume.shape))
    both = statmask.make_mask(volume, 'both', statistics=stats, texture=texture)
    np.testing.assert_array_equal(both, by_statistics & by_texture)
    assert both.dtype == np.uint8 and 0 < both.mean() < by_statistics.mean()
    cleaned = statmask.make_mask(volume, 'both', statistics=stats, texture=texture, postprocess=dict(grow=2))
    np.testing.assert_array_equal(cleaned, postprocess_mask(both, grow=2))
    volume[3, 3, 3] = np.nan
    with pytest.raises(CryoSegInputError, match='NaN'):
        statmask.make_mask(volume, 'texture', texture=texture)


@pytest.mark.parametrize('shape', [(60, 64, 64), (61, 63, 65)])
def test_clean_up_on_the_binned_grid_equals_the_full_size_clean_up(shape):
    """Specks of every size and enclosed holes: removing regions below a size (counted in full-size
    voxels, also for the half blocks of odd shapes) and filling holes on the binned grid give exactly
    what the same clean-up of the unbinned mask gives."""
    from cryoseg.core.morphology import postprocess_mask

    volume = cellular_phantom(shape=shape, slab=(20, 40))
    volume += ndimage.gaussian_filter(np.random.default_rng(3).standard_normal(shape), 1.5).astype(np.float32)
    stats = dict(side=1, percentile=100, std_mode='global_factor', threshold=0.8)
    raw = statmask.make_mask(volume, 'statistics', statistics=stats)
    for cleanup in (dict(min_region_size=60), dict(min_region_size=61, keep_largest=True)):
        expected = postprocess_mask(raw, **cleanup)
        assert 0 < np.count_nonzero(expected != raw)  # the clean-up changes something
        np.testing.assert_array_equal(statmask.make_mask(volume, 'statistics', statistics=stats,
                                                         postprocess=cleanup), expected)


def test_points_inside_a_mask():
    mask = np.zeros((4, 5, 6), np.uint8)
    mask[1, 2, 3] = 1
    xyz = [(3, 2, 1), (3.4, 1.6, 0.6), (0, 0, 0), (-1, 2, 1), (6, 2, 1)]
    assert statmask.points_inside(mask, xyz).tolist() == [True, True, False, False, False]
