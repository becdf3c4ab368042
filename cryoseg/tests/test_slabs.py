import numpy as np
import pytest
from scipy import ndimage

from cryoseg.core.slabs import iter_slabs


@pytest.mark.parametrize('slab', [1, 7, 16, 64])
def test_slabs_with_halo_reproduce_a_whole_volume_filter(slab):
    volume = np.random.default_rng(1).standard_normal((40, 12, 13))
    sigma = 1.5
    halo = int(np.ceil(4 * sigma))
    expected = ndimage.gaussian_filter(volume, sigma, mode='reflect')
    result = np.empty_like(volume)
    for part in iter_slabs(len(volume), slab, halo):
        result[part.write] = part.kept(ndimage.gaussian_filter(volume[part.read], sigma, mode='reflect'))
    np.testing.assert_allclose(result, expected, atol=1e-12)


def test_slabs_cover_every_plane_once():
    planes = [z for part in iter_slabs(23, 5, 2) for z in range(23)[part.write]]
    assert planes == list(range(23))
