"""Fuzzing of the core functions' input validation (hypothesis): arbitrary shapes, dtypes, NaN/Inf
values and parameters give either a result or a CryoSegInputError (a message for the user), never
another exception. Example counts are small so the file stays fast."""
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import array_shapes, arrays

from cryoseg.core.consensus import Picks, consensus, remove_duplicates
from cryoseg.core.errors import CryoSegInputError
from cryoseg.core.extract import ExtractionSettings, extract
from cryoseg.core.geometry import fit_ellipsoid, fit_filament, fit_sphere
from cryoseg.core.morphology import postprocess_mask
from cryoseg.core.segdiam import PickSettings, estimate_particle_size, pick_components
from cryoseg.core.statmask import make_mask
from cryoseg.core.texture import texture_mask

FUZZ = settings(max_examples=30, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])

numbers = st.floats(allow_nan=True, allow_infinity=True, width=32)
small_numbers = st.one_of(st.floats(-20, 20), st.sampled_from([0.0, -1.0, np.nan, np.inf]))
counts = st.integers(-3, 40)
dtypes = st.sampled_from([np.float32, np.float64, np.int16, np.uint8, np.bool_])


def volumes(min_dims=1, max_dims=4, max_side=14):
    return dtypes.flatmap(lambda dtype: arrays(
        dtype, array_shapes(min_dims=min_dims, max_dims=max_dims, min_side=1, max_side=max_side),
        elements=numbers if np.issubdtype(dtype, np.floating) else None))


def points(max_count=12):
    return arrays(np.float64, st.tuples(st.integers(0, max_count), st.sampled_from([2, 3, 4])),
                  elements=st.one_of(st.floats(-100, 100), st.sampled_from([np.nan, np.inf])))


def result_or_input_error(function, *args, **kwargs):
    try:
        return function(*args, **kwargs)
    except CryoSegInputError as err:
        assert str(err), 'an input error needs a message'
        return None


@FUZZ
@given(volume=volumes(), method=st.sampled_from(['statistics', 'texture', 'both', 'nope']),
       side=small_numbers, percentile=small_numbers, threshold=small_numbers,
       std_mode=st.sampled_from(['global_factor', 'percentile', 'other']), z_crop=small_numbers)
def test_make_mask(volume, method, side, percentile, threshold, std_mode, z_crop):
    statistics = dict(side=side, percentile=percentile, threshold=threshold, std_mode=std_mode, z_crop=z_crop)
    mask = result_or_input_error(make_mask, volume, method, statistics, dict(block_size=4), None, 4)
    if mask is not None:
        assert mask.shape == volume.shape and set(np.unique(mask)) <= {0, 1}


@FUZZ
@given(volume=volumes(), block_size=counts, texture_sigma=small_numbers, edge_sigma=small_numbers,
       use_dog=st.booleans(), three_d=st.booleans(), slab=st.integers(-1, 8))
def test_texture_mask(volume, block_size, texture_sigma, edge_sigma, use_dog, three_d, slab):
    mask = result_or_input_error(texture_mask, volume, block_size, texture_sigma, edge_sigma, use_dog, three_d,
                                 slab=slab)
    if mask is not None:
        assert mask.shape == volume.shape


@FUZZ
@given(mask=volumes(max_side=10), min_region=counts, open_radius=st.integers(-2, 4),
       keep_largest=st.booleans(), fill_holes=st.booleans(), grow=small_numbers)
def test_postprocess_mask(mask, min_region, open_radius, keep_largest, fill_holes, grow):
    cleaned = result_or_input_error(postprocess_mask, mask, min_region, open_radius, keep_largest, fill_holes,
                                    grow)
    if cleaned is not None:
        assert cleaned.shape == mask.shape


@FUZZ
@given(volume=volumes(max_side=16), voxel_size=small_numbers, working_size=small_numbers, lowpass=small_numbers,
       fraction=small_numbers, low=small_numbers, high=st.floats(-10, 600),
       threshold=st.sampled_from(['kmeans', 'otsu', 'x']), with_mask=st.booleans())
def test_segdiam_pick_components(volume, voxel_size, working_size, lowpass, fraction, low, high, threshold,
                                 with_mask):
    pick = PickSettings(working_size=working_size, lowpass=lowpass, foreground_fraction=fraction,
                        diameter_range=(low, high), threshold=threshold)
    mask = np.ones(volume.shape, np.uint8) if with_mask else None
    result_or_input_error(pick_components, volume, voxel_size, pick, mask=mask)


@FUZZ
@given(diameters=arrays(np.float64, st.integers(0, 60), elements=st.one_of(st.floats(0, 500), numbers)),
       pixel_size=small_numbers, backend=st.sampled_from(['kmeans', 'hac', 'other']), sigma_crit=small_numbers,
       rounding=st.sampled_from(['up', 'closest', 'sideways']))
def test_segdiam_estimate(diameters, pixel_size, backend, sigma_crit, rounding):
    result_or_input_error(estimate_particle_size, diameters, pixel_size, backend, sigma_crit, rounding)


@FUZZ
@given(sets=st.lists(points(), min_size=0, max_size=4), radius=small_numbers, k=st.integers(-3, 6),
       mode=st.sampled_from(['ge', 'eq', 'gt']))
def test_consensus(sets, radius, k, mode):
    picks = [result_or_input_error(Picks, xyz) for xyz in sets]
    if all(p is not None for p in picks):
        result = result_or_input_error(consensus, [{'TS_01': p} for p in picks], radius, k, mode)
        if result is not None:
            assert all(votes <= len(sets) for votes in result.clusters['TS_01'].votes)


@FUZZ
@given(xyz=points(), radius=small_numbers, keep=st.sampled_from(['best', 'mean', 'worst']))
def test_remove_duplicates(xyz, radius, keep):
    picks = result_or_input_error(Picks, xyz)
    if picks is not None:
        result_or_input_error(remove_duplicates, picks, radius, keep=keep)


@FUZZ
@given(cloud=points(max_count=30), fit=st.sampled_from([fit_sphere, fit_ellipsoid, fit_filament]))
def test_geometry_fits(cloud, fit):
    result_or_input_error(fit, cloud)


@FUZZ
@given(volume=volumes(max_side=12), positions=points(), box=st.integers(-2, 16), down_factor=small_numbers,
       normalize=st.sampled_from(['none', 'box', 'outside_sphere', 'bad']), border=st.sampled_from(['skip', 'pad']),
       subvoxel=st.sampled_from(['shift', 'interpolate']))
def test_extract(volume, positions, box, down_factor, normalize, border, subvoxel):
    chosen = result_or_input_error(ExtractionSettings, box, down_factor, normalize=normalize, border=border,
                                   subvoxel=subvoxel)
    if chosen is not None:
        result_or_input_error(lambda: list(extract(volume, positions, chosen)))
