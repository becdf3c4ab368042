"""Directional models that hold with rough clicks: filaments clicked in any order, and models refined
against the density of phantoms whose vesicles are not spheres (analytic normals and axes)."""
import numpy as np
import pytest
from scipy.spatial import cKDTree

from cryoseg.core.model_workflow import ModelParameters, crop_points_for_group, run_model_workflow
from cryoseg.tests.membrane_phantoms import BumpyVesicle, curved_tube, tube_axis, vesicle_volume


def angles(a, b):
    """Angles (degrees) between unit vectors, direction-free for axes."""
    return np.degrees(np.arccos(np.clip(np.abs(np.sum(a * b, axis=1)), 0, 1)))


# --------------------------------------------------------------------------- filaments clicked in any order
def arc_clicks(rng, bend, length=300.0, count=6, scatter=1.5, close_end=False):
    """Clicks spread along an arc of ``length`` px bending by ``bend`` radians (xy plane), in random
    order, with ``scatter`` px per axis; and the unit tangent of the arc at any point."""
    u = np.linspace(0, 1, count) + np.r_[0, rng.uniform(-0.05, 0.05, count - 2), 0]
    if close_end:  # the last two clicks 5 px apart: the old spline bent its end towards the noise
        u[-2] = 1 - 5 / length
    bend = max(bend, 1e-9)
    radius = length / bend
    on = np.column_stack([radius * np.sin(u * bend), radius * (1 - np.cos(u * bend)), np.zeros(count)])
    clicks = (on + rng.normal(0, scatter, on.shape))[rng.permutation(count)]

    def tangent(points):
        theta = np.arctan2(points[:, 0], radius - points[:, 1])
        return np.column_stack([np.cos(theta), np.sin(theta), np.zeros(len(points))])
    return clicks, tangent


@pytest.mark.parametrize('close_end', [False, True])
def test_straight_filament_in_any_order_keeps_its_axis_and_spacing(close_end):
    rng = np.random.default_rng(7)
    reported = []
    for _ in range(6):
        clicks, tangent = arc_clicks(rng, 0.0, close_end=close_end)
        result = crop_points_for_group(clicks, ModelParameters(model_type='filamentHelix', spacing=3.8,
                                                               smoothing=0.95))
        errors = angles(result.normals, tangent(result.positions))
        assert np.median(errors) < 2.0 and errors.max() < 5.0
        # the requested spacing along a path as long as the clicks' extent: no zig-zag between clicks
        assert abs(len(result.positions) - (300 / 3.8 + 1)) <= 3
        np.testing.assert_allclose(np.linalg.norm(np.diff(result.positions, axis=0), axis=1), 3.8, rtol=0.02)
        # the reported rms is the clicks' residual to the path, not the click scatter given
        residual = np.sqrt(np.mean(cKDTree(result.surface.points).query(clicks)[0] ** 2))
        assert result.report.rms == pytest.approx(residual, abs=1e-6)
        reported.append(result.report.rms)
    assert np.ptp(reported) > 0.2  # the residual of each click set, not an echo of the 0.95 px given


def test_curved_filament_in_any_order_follows_the_arc():
    rng = np.random.default_rng(3)
    medians = []
    for _ in range(10):
        clicks, tangent = arc_clicks(rng, 0.6)
        result = crop_points_for_group(clicks, ModelParameters(model_type='filamentHelix', spacing=3.8,
                                                               smoothing=0.95))
        medians.append(np.median(angles(result.normals, tangent(result.positions))))
        assert abs(len(result.positions) - (300 / 3.8 + 1)) <= 3
    assert np.median(medians) < 2.0 and max(medians) < 4.0


def test_filament_refined_on_the_tube_axis():
    path, volume = curved_tube(bend=0.8)
    rng = np.random.default_rng(0)
    fitted, refined = [], []
    for _ in range(3):
        clicks = path[np.linspace(0, len(path) - 1, 6).astype(int)] + rng.normal(0, 1.5, (6, 3))
        clicks = clicks[rng.permutation(6)]
        for refine, errors in ((False, fitted), (True, refined)):
            result = crop_points_for_group(clicks, ModelParameters(
                model_type='filamentHelix', spacing=2.0, smoothing=1.0, refine=refine, membrane=3.0,
                filament_radius=4.0), volume=volume)
            errors.append(np.median(angles(result.normals, tube_axis(path, result.positions))))
            if refine:
                assert result.refinement.method.startswith('penalised spline')
                assert np.median(cKDTree(path).query(result.positions)[0]) < 0.8
    assert np.median(refined) < 2.0
    assert np.median(refined) < np.median(fitted)


# --------------------------------------------------------------------------- vesicles that are not spheres
VESICLE = BumpyVesicle(np.array([48.0, 48.0, 32.0]), np.array([30.0, 28.0, 23.0]))


@pytest.fixture(scope='module')
def vesicle_volumes():
    return {wedge: vesicle_volume(VESICLE, noise=0.3, wedge=wedge) for wedge in (0, 60)}


@pytest.mark.parametrize('model, count', [('sphere', 12), ('ellipsoid', 16)])
def test_refined_normals_beat_the_click_fit_on_a_bumpy_flattened_vesicle(vesicle_volumes, model, count):
    clicks = VESICLE.clicks(count, 2.5, seed=1)
    errors = {}
    for refine in (False, True):
        params = ModelParameters(model_type=model, spacing=4.0, smoothing=1.0, refine=refine, membrane=3.0)
        workflow = run_model_workflow({5: dict(points=clicks)}, params, vesicle_volumes[0])
        result = workflow.results[0]
        errors[refine] = angles(result.normals, VESICLE.normals(result.positions))
        if refine:
            assert np.median(np.abs(VESICLE.signed_distance(result.positions))) < 0.5
            row = workflow.report_rows()[0]
            assert row['refined'] and row['profiles'] > 500 and 0 <= row['outliers'] < row['profiles'] / 4
            assert row['median_shift'] > 1.0  # the flattened, bumpy membrane is off the click fit
            assert any('outliers kept on the fitted model' in note for note in row['notes'])
            assert np.isfinite(result.shifts).all() and len(result.shifts) == len(result.positions)
    assert np.median(errors[False]) > 8.0
    assert np.median(errors[True]) <= 2.0
    assert np.percentile(errors[True], 90) < np.percentile(errors[False], 90) / 2


def test_missing_wedge_profiles_fall_back_and_refinement_still_helps(vesicle_volumes):
    clicks = VESICLE.clicks(12, 2.5, seed=1)
    fitted = crop_points_for_group(clicks, ModelParameters(model_type='sphere', spacing=4.0))
    refined = crop_points_for_group(clicks, ModelParameters(model_type='sphere', spacing=4.0, refine=True,
                                                            membrane=3.0), volume=vesicle_volumes[60])
    before = angles(fitted.normals, VESICLE.normals(fitted.positions))
    after = angles(refined.normals, VESICLE.normals(refined.positions))
    assert np.median(after) < 0.7 * np.median(before)
    # the caps inside the wedge show no membrane: their profiles are outliers, kept on the fit
    support_z = np.abs(refined.refinement.normals[:, 2])
    outliers = ~refined.refinement.inliers
    assert outliers[support_z > 0.9].mean() > 2 * outliers[support_z < 0.5].mean()


def test_open_membrane_refined_by_a_smooth_displacement(vesicle_volumes):
    rng = np.random.default_rng(2)
    directions = rng.standard_normal((4000, 3))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    directions = directions[directions[:, 0] > 0.6][:20]
    clicks = VESICLE.centre + directions * VESICLE.radius(directions)[:, None] + rng.normal(0, 1.5, (20, 3))
    errors = {}
    for refine in (False, True):
        result = crop_points_for_group(clicks, ModelParameters(model_type='general', spacing=4.0, refine=refine,
                                                               membrane=3.0, mesh_edge=5.0),
                                       marker=VESICLE.centre, volume=vesicle_volumes[0])
        errors[refine] = angles(result.normals, VESICLE.normals(result.positions))
        assert np.all(np.sum(result.normals * (result.positions - VESICLE.centre), axis=1) > 0)  # outward
    assert np.median(errors[True]) < 0.5 * np.median(errors[False])


def test_refinement_needs_the_tomogram():
    with pytest.raises(Exception, match='needs the tomogram'):
        crop_points_for_group(VESICLE.clicks(12, 1.0), ModelParameters(model_type='sphere', refine=True))


def test_no_harm_where_the_real_tomogram_shows_no_membrane():
    """EMPIAR-11658 tomogram 9: a sphere clicked in the vacuum above the lamella and one in the crowded
    cytoplasm (no membrane there): the extrema of noise scatter, so the fitted model is kept as is."""
    from cryoseg.tests.realdata import load_tomo9

    tomogram = load_tomo9()
    rng = np.random.default_rng(0)
    for centre, radius in (((128, 30, 100), 12), ((100, 100, 58), 10)):
        directions = rng.standard_normal((200, 3))
        directions /= np.linalg.norm(directions, axis=1, keepdims=True)
        clicks = np.asarray(centre, float) + radius * directions[np.abs(directions[:, 2]) < 0.6][:12]
        params = dict(model_type='sphere', spacing=100 / tomogram.angpix, smoothing=10 / tomogram.angpix,
                      membrane=40 / tomogram.angpix)
        fitted = crop_points_for_group(clicks, ModelParameters(**params))
        refined = crop_points_for_group(clicks, ModelParameters(refine=True, **params), volume=tomogram.volume)
        assert refined.refinement.method.startswith('fitted model kept')
        np.testing.assert_allclose(refined.positions, fitted.positions)
        np.testing.assert_allclose(refined.matrices, fitted.matrices)
