"""The phantom's ground truth must describe its volume."""
import numpy as np
import pytest
from scipy import ndimage

from cryoseg.core.mrcio import read_volume
from cryoseg.core.phantom import (PhantomError, make_phantom, phantom_config, read_truth,
                                  write_sample_data)


@pytest.fixture(scope='module')
def phantom():
    return make_phantom(phantom_config('small', seed=3))


def _zyx(centre):
    return tuple(int(round(c)) for c in centre[::-1])


def test_deterministic():
    a = make_phantom(phantom_config('small', seed=5, filament=False))
    b = make_phantom(phantom_config('small', seed=5, filament=False))
    np.testing.assert_array_equal(a.volume, b.volume)
    assert a.truth.to_json() == b.truth.to_json()


def test_particles_have_the_recorded_diameters(phantom):
    px = phantom.truth.voxel_size
    for particle in phantom.truth.particles:
        voxels = np.count_nonzero(phantom.labels == particle['id'])
        measured = (6 * voxels / np.pi) ** (1 / 3)
        assert abs(measured - particle['diameter'] / px) < 1.0


def test_dark_particles_are_dense_at_recorded_centres(phantom):
    smooth = ndimage.gaussian_filter(phantom.volume, 2)
    background = np.median(smooth)
    for particle in phantom.truth.particles:
        assert smooth[_zyx(particle['centre'])] < background - 0.3
    for bead in phantom.truth.gold:
        assert smooth[_zyx(bead['centre'])] < background - 3


def test_light_contrast_flips_the_sign():
    dark = make_phantom(phantom_config('small', seed=2, contrast='dark'))
    light = make_phantom(phantom_config('small', seed=2, contrast='light'))
    np.testing.assert_allclose(dark.volume, -light.volume)


def test_particles_have_internal_structure(phantom):
    """Not uniform balls: the noise-free density varies inside the support of every class."""
    clean = make_phantom(phantom_config('small', seed=3, noise_std=0.0, texture_amplitude=0.0))
    for cls in range(3):
        particle = next(p for p in clean.truth.particles if p['cls'] == cls)
        inside = -clean.volume[clean.labels == particle['id']]
        assert inside.max() - inside.min() > 0.3


def test_ice_slab_leaves_empty_margins(phantom):
    z0, z1 = phantom.truth.ice_z
    assert 0 < z0 < z1 < phantom.volume.shape[0]
    clean = make_phantom(phantom_config('small', seed=3, noise_std=0.0))
    assert np.all(clean.volume[:z0 - 2] == 0)
    assert np.std(clean.volume[z0:z1]) > 0.1


def test_membrane_proteins_sit_outside_their_vesicle_along_outward_normals(phantom):
    vesicles = {v['id']: v for v in phantom.truth.vesicles}
    assert {v['kind'] for v in vesicles.values()} == {'sphere', 'ellipsoid'}
    for protein in phantom.truth.membrane_proteins:
        vesicle = vesicles[protein['vesicle']]
        normal = np.asarray(protein['normal'])
        assert np.linalg.norm(normal) == pytest.approx(1)
        body = np.asarray(vesicle['axes']) @ (np.asarray(protein['surface_point']) - vesicle['centre'])
        radii = np.asarray(vesicle['radii']) / phantom.truth.voxel_size
        assert np.sum((body / radii) ** 2) == pytest.approx(1, abs=1e-6)  # on the surface
        outward = np.asarray(protein['centre']) - vesicle['centre']
        assert normal @ outward > 0
        assert phantom.labels[_zyx(protein['centre'])] == protein['id']


def test_spherical_vesicle_normals_are_radial(phantom):
    sphere = next(v for v in phantom.truth.vesicles if v['kind'] == 'sphere')
    for protein in (p for p in phantom.truth.membrane_proteins if p['vesicle'] == sphere['id']):
        radial = np.asarray(protein['surface_point']) - sphere['centre']
        assert np.degrees(np.arccos(radial @ protein['normal'] / np.linalg.norm(radial))) < 1e-6


def test_filament_subunits_follow_the_rise(phantom):
    filament = phantom.truth.filaments[0]
    path = np.asarray(filament['path'])
    assert len(filament['subunits']) > 20
    steps = np.linalg.norm(np.diff(path, axis=0), axis=1)
    expected_length = steps.sum() * phantom.truth.voxel_size
    assert len(filament['subunits']) == pytest.approx(expected_length / filament['rise'], abs=2)


def test_missing_wedge_removes_the_sampled_out_frequencies():
    wedge = make_phantom(phantom_config('small', seed=4, missing_wedge=60.0))
    spectrum = np.abs(np.fft.rfftn(-wedge.volume))
    kz = np.abs(np.fft.fftfreq(wedge.volume.shape[0]))[:, None, None]
    kx = np.fft.rfftfreq(wedge.volume.shape[2])[None, None, :]
    missing = np.broadcast_to(kz > np.tan(np.radians(60)) * kx + 1e-6, spectrum.shape)
    assert spectrum[missing].max() < 1e-3 * spectrum.max()


def test_objects_that_cannot_fit_give_a_clear_error():
    with pytest.raises(PhantomError, match='does not fit|no free room'):
        make_phantom(phantom_config('small', particles_per_class=(2000, 0, 0)))


def test_sample_data_files_match_the_truth(tmp_path):
    truths = write_sample_data(tmp_path, count=2, seed=7)
    assert sorted(truths) == ['TS_01', 'TS_02']
    volume, info = read_volume(tmp_path / 'TS_02.mrc')
    assert info.voxel_size == pytest.approx((10, 10, 10))
    truth = read_truth(tmp_path / 'TS_02_truth.json')
    assert truth.to_json() == truths['TS_02'].to_json()
    assert volume.shape == tuple(reversed(truth.shape_xyz))
    from emtable import Table
    table = Table(fileName=str(tmp_path / 'TS_02_particles.star'), tableName='particles')
    rows = [r for r in table if r.cryosegClass.startswith('particle')]
    assert len(rows) == len(truth.particles)
    assert rows[0].rlnCoordinateX == pytest.approx(truth.particles[0]['centre'][0], abs=1e-5)
