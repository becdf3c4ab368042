"""The phantom's ground truth must describe its volume."""
import numpy as np
import pytest
from scipy import ndimage

from cryoseg.core.mrcio import read_volume
from cryoseg.core.phantom import (PhantomError, make_phantom, phantom_config, read_truth,
                                  write_sample_data)
from cryoseg.core.tomostats import measure_tomogram
from cryoseg.tests.realdata import RIBOSOME_DIAMETER_A, load_tomo9


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
        cosine = np.clip(radial @ protein['normal'] / np.linalg.norm(radial), -1, 1)  # rounding can pass 1
        assert np.degrees(np.arccos(cosine)) < 1e-6


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


# The cell preset against the real tomogram (EMPIAR-11658 tomogram 9), both measured by
# tomostats.measure_tomogram; the tolerances are the README's table with some margin.

@pytest.fixture(scope='module')
def cell():
    return make_phantom(phantom_config('cell'))


@pytest.fixture(scope='module')
def cell_statistics(cell):
    return measure_tomogram(cell.volume, cell.truth.voxel_size, _centres_zyx(cell.truth),
                            RIBOSOME_DIAMETER_A, contrast=cell.truth.contrast)


@pytest.fixture(scope='module')
def real_statistics():
    real = load_tomo9()
    return measure_tomogram(real.volume, real.angpix, real.particles_zyx, RIBOSOME_DIAMETER_A)


def _centres_zyx(truth):
    return np.array([p['centre'][::-1] for p in truth.particles])


def test_cell_noise_spectrum_has_the_real_shape(cell_statistics, real_statistics):
    np.testing.assert_allclose(cell_statistics.frequencies, real_statistics.frequencies)
    ratio = cell_statistics.noise_psd / real_statistics.noise_psd
    assert np.all((ratio[3:] > 1 / 1.2) & (ratio[3:] < 1.2)), ratio  # above 1/300 Å
    assert np.all(ratio[:3] < 2.3), ratio  # the slab's own structure reaches into the thin vacuum
    specimen = cell_statistics.specimen_psd / real_statistics.specimen_psd
    assert np.all((specimen > 1 / 2.3) & (specimen < 2.3)), specimen


def test_cell_contrast_and_crowding_match_the_real_tomogram(cell_statistics, real_statistics):
    cell, real = cell_statistics, real_statistics
    assert cell.cnr == pytest.approx(real.cnr, rel=0.35)
    assert cell.specimen_std_ratio == pytest.approx(real.specimen_std_ratio, rel=0.3)
    assert cell.specimen_fraction == pytest.approx(real.specimen_fraction, abs=0.15)
    assert cell.blob_density == pytest.approx(real.blob_density, rel=0.5)
    assert cell.blob_touching_fraction == pytest.approx(real.blob_touching_fraction, abs=0.25)
    assert cell.quantisation_step == pytest.approx(real.quantisation_step, rel=0.5)
    # the real annotation is not exhaustive: its density and touching share are lower bounds
    assert real.particle_density < cell.particle_density < cell.blob_density
    assert cell.touching_fraction > max(0.5, real.touching_fraction)


def test_cell_ground_truth_is_consistent(cell):
    truth, px = cell.truth, cell.truth.voxel_size
    config = phantom_config('cell')
    assert len(truth.particles) == config.particles_per_class[0]
    assert {p['cls'] for p in truth.particles} == {0}
    assert {p['diameter'] for p in truth.particles} == {RIBOSOME_DIAMETER_A}
    radius = RIBOSOME_DIAMETER_A / 2 / px
    centres = np.array([p['centre'] for p in truth.particles])  # x, y, z
    distance = np.linalg.norm(centres[:, None] - centres[None], axis=-1) + np.eye(len(centres)) * 1e9
    assert distance.min() > 2 * radius  # touching, never overlapping
    assert np.all(centres[:, 2] - radius >= truth.ice_z[0]) and np.all(centres[:, 2] + radius <= truth.ice_z[1])
    assert np.all(centres[:, :2] >= radius) and np.all(centres[:, :2] <= np.array(truth.shape_xyz[:2]) - radius)
    for particle in truth.particles[::7]:
        voxels = np.count_nonzero(cell.labels == particle['id'])
        assert abs((6 * voxels / np.pi) ** (1 / 3) - radius * 2) < 1.0
    values = np.unique(cell.volume)
    assert len(values) <= 256  # 8-bit values
    smooth = ndimage.gaussian_filter(cell.volume, radius / 2)
    assert np.mean([smooth[_zyx(p['centre'])] for p in truth.particles]) < np.median(smooth) - 0.5 * smooth.std()


def test_cell_particles_line_the_cisterna(cell):
    truth, px = cell.truth, cell.truth.voxel_size
    (sheet,) = truth.membranes
    lining = {p['id']: p for p in truth.particles if p['id'] in sheet['particles']}
    assert len(lining) >= 0.25 * len(truth.particles)
    leaflet_sigma = max(px * 0.8, 6.0) / px
    expected = (sheet['lumen'] + sheet['membrane_thickness']) / 2 / px + leaflet_sigma + RIBOSOME_DIAMETER_A / 2 / px
    for particle in lining.values():
        offset = np.asarray(particle['centre']) - sheet['centre']
        along, curvature = offset @ sheet['tangent'], sheet['curvature'] * px
        signed = (offset @ sheet['normal'] + curvature * along ** 2 / 2) / np.sqrt(1 + (curvature * along) ** 2)
        assert abs(abs(signed) - expected) < 0.5
    assert {np.sign(offset) for offset in [(np.asarray(p['centre']) - sheet['centre']) @ sheet['normal']
                                           for p in lining.values()]} == {-1.0, 1.0}  # both faces


def test_cell_preset_keeps_the_density_at_any_voxel_size():
    for voxel_size, shape in [(31.36, (96, 128, 128)), (15.68, (64, 200, 200)), (8.0, (100, 300, 300))]:
        config = phantom_config('cell', voxel_size=voxel_size, shape_zyx=shape)
        slab_um3 = config.ice_fraction * np.prod(shape) * (voxel_size * 1e-4) ** 3
        assert config.particles_per_class[0] / slab_um3 == pytest.approx(6000, rel=0.05)
        assert config.particle_diameters == (RIBOSOME_DIAMETER_A,)


def test_cell_sample_data_is_deterministic_and_written_with_its_truth(tmp_path, cell):
    truths = write_sample_data(tmp_path, count=1, size='cell', seed=0)
    volume, info = read_volume(tmp_path / 'TS_01.mrc')
    assert info.voxel_size == pytest.approx((31.36,) * 3)
    np.testing.assert_array_equal(volume, cell.volume)
    assert read_truth(tmp_path / 'TS_01_truth.json').to_json() == truths['TS_01'].to_json() == cell.truth.to_json()


def test_quantisation_is_optional():
    config = phantom_config('cell', shape_zyx=(64, 64, 64), quantisation_bits=0, sphere_vesicle_radii=())
    assert len(np.unique(make_phantom(config).volume)) > 10000
