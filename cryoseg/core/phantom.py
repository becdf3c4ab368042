"""Deterministic synthetic tomograms with ground truth.

The phantom imitates what a cryo-ET user sees: an ice slab thinner than the volume (empty margins in z),
particles of a few known diameters with internal structure, spherical and ellipsoidal vesicles (bilayer
shells) carrying membrane proteins with known outward normals, a helical filament, a few gold beads,
a contamination blob, a faint crowded-cytoplasm texture, band-limited noise and optionally the
missing-wedge blur. Densities are built positive ("more mass") and flipped for dark contrast.

Positions in the ground truth are (x, y, z) voxel indices from the first voxel; sizes are in Å.
"""
import json
import os
from dataclasses import asdict, dataclass, field, replace

import numpy as np
from scipy import ndimage
from scipy.spatial.transform import Rotation

from .errors import CryoSegInputError
from .mrcio import write_volume


class PhantomError(CryoSegInputError):
    """A phantom configuration that cannot be realised (objects do not fit)."""


@dataclass(frozen=True)
class PhantomConfig:
    shape_zyx: tuple = (128, 256, 256)
    voxel_size: float = 10.0  # Å
    seed: int = 0
    ice_fraction: float = 0.6  # ice thickness / volume thickness, centred in z
    particle_diameters: tuple = (120.0, 180.0, 260.0)  # Å, one class per diameter
    particles_per_class: tuple = (10, 8, 5)
    sphere_vesicle_radii: tuple = (230.0,)  # Å, one spherical vesicle each
    ellipsoid_vesicle_radii: tuple = ((300.0, 210.0, 170.0),)  # Å semi-axes, one vesicle each
    proteins_per_vesicle: int = 10
    membrane_thickness: float = 40.0  # Å between the two leaflets
    filament: bool = True
    filament_diameter: float = 70.0  # Å
    filament_length: float = 1500.0  # Å
    filament_rise: float = 27.5  # Å per subunit
    filament_twist: float = -166.7  # degrees per subunit (actin-like)
    gold_beads: int = 3
    gold_diameter: float = 100.0  # Å
    contamination: bool = True
    texture_amplitude: float = 0.25  # crowded-cytoplasm texture inside the ice, × particle density
    noise_std: float = 0.6  # × particle density, after band limiting
    noise_correlation: float = 0.7  # Gaussian σ of the noise in voxels
    missing_wedge: float = 0.0  # maximum tilt in degrees; 0 = no wedge
    contrast: str = 'dark'  # 'dark' (dense = negative, as reconstructed) or 'light'


SIZES = {
    'small': PhantomConfig(),
    'bench': PhantomConfig(shape_zyx=(256, 512, 512), particles_per_class=(40, 30, 20),
                           sphere_vesicle_radii=(230.0, 320.0), proteins_per_vesicle=16,
                           ellipsoid_vesicle_radii=((300.0, 210.0, 170.0), (380.0, 260.0, 200.0)),
                           gold_beads=6, filament_length=3000.0),
}


@dataclass
class GroundTruth:
    """Everything placed in a phantom. Positions are (x, y, z) voxels, sizes in Å."""
    voxel_size: float
    shape_xyz: tuple
    ice_z: tuple  # first and last+1 z index of the ice slab
    contrast: str
    particles: list = field(default_factory=list)  # {id, cls, centre, diameter, rotation}
    gold: list = field(default_factory=list)  # {id, centre, diameter}
    contamination: list = field(default_factory=list)  # {centre, radius (bounding)}
    vesicles: list = field(default_factory=list)  # {id, kind, centre, radii, axes}
    membrane_proteins: list = field(default_factory=list)  # {id, vesicle, centre, normal}
    filaments: list = field(default_factory=list)  # {id, path, diameter, rise, twist, subunits}

    def to_json(self):
        return json.dumps(asdict(self), indent=1, default=_jsonable)

    @classmethod
    def from_json(cls, text):
        return cls(**json.loads(text))


@dataclass
class Phantom:
    volume: np.ndarray  # float32 [z, y, x]
    truth: GroundTruth
    labels: np.ndarray  # int32 [z, y, x]: particle / gold / membrane-protein id, 0 elsewhere


def _jsonable(value):
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value)}")


class _Placer:
    """Rejection sampling of non-overlapping bounding spheres inside the ice slab."""

    def __init__(self, shape_xyz, ice_z, rng, gap=2.0):
        self.shape_xyz = np.asarray(shape_xyz, float)
        self.ice_z = ice_z
        self.rng = rng
        self.gap = gap
        self.centres = np.zeros((0, 3))
        self.radii = np.zeros(0)

    def reserve(self, centres, radii):
        self.centres = np.vstack([self.centres, np.atleast_2d(centres)])
        self.radii = np.concatenate([self.radii, np.broadcast_to(radii, (len(np.atleast_2d(centres)),))])

    def fits(self, centre, radius):
        if not len(self.radii):
            return True
        dist = np.linalg.norm(self.centres - centre, axis=1)
        return bool(np.all(dist > self.radii + radius + self.gap))

    def place(self, radius, z_range=None, z_reach=None, what='object'):
        """A free centre for a bounding sphere of ``radius``; ``z_reach`` (default ``radius``) is
        the object's half height, which must stay inside the ice unless ``z_range`` is given."""
        z_reach = radius if z_reach is None else z_reach
        z_lo, z_hi = z_range or (self.ice_z[0] + z_reach, self.ice_z[1] - 1 - z_reach)
        lo = np.array([radius + 1, radius + 1, z_lo])
        hi = np.array([self.shape_xyz[0] - radius - 2, self.shape_xyz[1] - radius - 2, z_hi])
        if np.any(hi < lo):
            raise PhantomError(f"a {what} of radius {radius:.1f} px does not fit in the ice slab")
        for _ in range(2000):
            centre = lo + (hi - lo) * self.rng.random(3)
            if self.fits(centre, radius):
                self.reserve(centre, radius)
                return centre
        raise PhantomError(f"no free room for a {what} of radius {radius:.1f} px; "
                           "use fewer objects or a larger volume")


def _local_grid(shape_zyx, centre_xyz, reach):
    """Slices of the box around ``centre_xyz`` and its voxel coordinates relative to the centre."""
    lo = np.maximum(np.floor(np.asarray(centre_xyz) - reach).astype(int), 0)
    hi = np.minimum(np.ceil(np.asarray(centre_xyz) + reach).astype(int) + 1, shape_zyx[::-1])
    box = tuple(slice(lo[a], hi[a]) for a in (2, 1, 0))
    z, y, x = np.ogrid[box[0], box[1], box[2]]
    return box, (x - centre_xyz[0], y - centre_xyz[1], z - centre_xyz[2])


def _rotated(offsets, rotation):
    """Express offsets (x, y, z arrays) in the body frame whose axes are the rows of ``rotation``."""
    x, y, z = offsets
    return tuple(rotation[i, 0] * x + rotation[i, 1] * y + rotation[i, 2] * z for i in range(3))


def _particle_density(kind, u, r_px):
    """Density inside a particle of class ``kind`` at body coordinates ``u``; support is |u| ≤ r."""
    ux, uy, uz = u
    rho = np.sqrt(ux ** 2 + uy ** 2 + uz ** 2)
    inside = rho <= r_px
    if kind == 0:  # two subunits: a large body and a denser small lobe (ribosome-like)
        lobe = (ux - 0.45 * r_px) ** 2 + uy ** 2 + uz ** 2 <= (0.45 * r_px) ** 2
        return inside * (1.0 + 0.6 * lobe)
    if kind == 1:  # dense capsid-like rim around a lighter core
        return inside * np.where(rho > 0.7 * r_px, 1.3, 0.6)
    # channels along the body z axis: striped interior
    return inside * (1.0 + 0.4 * np.cos(np.pi * 3 * uz / r_px))


def _ellipsoid_normal(axes, radii, body_point):
    """Outward unit normal (lab frame) of the ellipsoid at a point given in body coordinates."""
    gradient_body = body_point / np.asarray(radii) ** 2
    normal = axes.T @ gradient_body
    return normal / np.linalg.norm(normal)


def make_phantom(config=PhantomConfig()):
    """Build the phantom described by ``config``; the same config always gives the same volume."""
    rng = np.random.default_rng(config.seed)
    nz, ny, nx = config.shape_zyx
    px = config.voxel_size
    density = np.zeros(config.shape_zyx, np.float32)
    labels = np.zeros(config.shape_zyx, np.int32)
    ice_half = config.ice_fraction * nz / 2
    ice_z = (int(round(nz / 2 - ice_half)), int(round(nz / 2 + ice_half)))
    truth = GroundTruth(voxel_size=px, shape_xyz=(nx, ny, nz), ice_z=ice_z, contrast=config.contrast)
    placer = _Placer((nx, ny, nz), ice_z, rng)
    next_label = 1

    if config.filament:
        _add_filament(config, density, rng, placer, truth)

    leaflet_sigma = max(px * 0.8, 6.0) / px
    half_bilayer = config.membrane_thickness / 2 / px
    protein_length = 60.0 / px
    vesicle_specs = ([('sphere', (r, r, r)) for r in config.sphere_vesicle_radii]
                     + [('ellipsoid', tuple(r)) for r in config.ellipsoid_vesicle_radii])
    for vesicle_id, (kind, radii_a) in enumerate(vesicle_specs, start=1):
        radii = np.asarray(radii_a) / px
        if kind == 'sphere':
            axes = np.eye(3)
        else:  # rotate about z only, so the flattest axis stays across the ice slab
            axes = Rotation.from_euler('z', rng.uniform(0, 180), degrees=True).as_matrix().T
        extra = half_bilayer + protein_length + 3
        reach = radii.max() + extra
        centre = placer.place(reach, z_reach=radii[2] + extra, what='vesicle')
        box, offsets = _local_grid(config.shape_zyx, centre, reach)
        body = _rotated(offsets, axes)
        scaled = np.sqrt(sum((b / r) ** 2 for b, r in zip(body, radii)))
        along_ray = np.sqrt(sum(b ** 2 for b in body)) / np.maximum(scaled, 1e-6)
        distance = (scaled - 1.0) * along_ray  # signed radial distance to the mid-surface
        bilayer = (np.exp(-((distance - half_bilayer) / leaflet_sigma) ** 2 / 2)
                   + np.exp(-((distance + half_bilayer) / leaflet_sigma) ** 2 / 2))
        density[box] += 1.2 * bilayer + 0.15 * (distance < -half_bilayer)
        truth.vesicles.append(dict(id=vesicle_id, kind=kind, centre=centre, radii=list(radii_a),
                                   axes=axes, membrane_thickness=config.membrane_thickness))
        next_label = _add_membrane_proteins(config, density, labels, rng, truth, vesicle_id, centre,
                                            axes, radii, half_bilayer, next_label)

    for cls, (diameter, count) in enumerate(zip(config.particle_diameters, config.particles_per_class)):
        r_px = diameter / 2 / px
        for _ in range(count):
            centre = placer.place(r_px, what='particle')
            rotation = Rotation.random(random_state=rng).as_matrix()
            box, offsets = _local_grid(config.shape_zyx, centre, r_px + 1)
            particle = _particle_density(cls, _rotated(offsets, rotation), r_px)
            density[box] += particle
            labels[box][particle > 0] = next_label
            truth.particles.append(dict(id=next_label, cls=cls, centre=centre, diameter=diameter,
                                        rotation=rotation))
            next_label += 1

    for _ in range(config.gold_beads):
        r_px = config.gold_diameter / 2 / px
        centre = placer.place(r_px, what='gold bead')
        box, (x, y, z) = _local_grid(config.shape_zyx, centre, r_px + 1)
        bead = x ** 2 + y ** 2 + z ** 2 <= r_px ** 2
        density[box] += 8.0 * bead
        labels[box][bead] = next_label
        truth.gold.append(dict(id=next_label, centre=centre, diameter=config.gold_diameter))
        next_label += 1

    if config.contamination:
        _add_contamination(config, density, rng, placer, truth)

    signal = _texture(config, rng, ice_z) + density
    noise = ndimage.gaussian_filter(rng.standard_normal(config.shape_zyx, dtype=np.float32),
                                    config.noise_correlation)
    noise *= config.noise_std / max(float(noise.std()), 1e-12)
    volume = signal + noise
    if config.missing_wedge:
        volume = apply_missing_wedge(volume, config.missing_wedge)
    if config.contrast == 'dark':
        volume = -volume
    elif config.contrast != 'light':
        raise PhantomError(f"contrast must be 'dark' or 'light', not {config.contrast!r}")
    return Phantom(volume=volume.astype(np.float32), truth=truth, labels=labels)


def _add_membrane_proteins(config, density, labels, rng, truth, vesicle_id, centre, axes, radii,
                           half_bilayer, next_label):
    """Proteins standing on the outer leaflet: a stalk and a head along the outward normal."""
    head_r = 25.0 / config.voxel_size
    stalk_r = 15.0 / config.voxel_size
    golden = np.pi * (3 - np.sqrt(5))
    n = config.proteins_per_vesicle
    spin = rng.uniform(0, 2 * np.pi)
    for k in range(n):  # Fibonacci directions with a random spin: even, non-overlapping spacing
        cos_t = 1 - 2 * (k + 0.5) / n
        phi = golden * k + spin
        direction = np.array([np.sqrt(1 - cos_t ** 2) * np.cos(phi),
                              np.sqrt(1 - cos_t ** 2) * np.sin(phi), cos_t])
        body_surface = direction * radii / np.linalg.norm(direction)
        body_surface = body_surface / np.sqrt(np.sum((body_surface / radii) ** 2))
        surface = centre + axes.T @ body_surface
        normal = _ellipsoid_normal(axes, radii, body_surface)
        position = surface + normal * (half_bilayer + stalk_r + head_r)
        box, (x, y, z) = _local_grid(density.shape, position, 2 * head_r + stalk_r + 2)
        along = x * normal[0] + y * normal[1] + z * normal[2]
        across2 = x ** 2 + y ** 2 + z ** 2 - along ** 2
        head = (along - stalk_r) ** 2 + across2 <= head_r ** 2
        stalk = (np.abs(along + head_r) <= stalk_r + 0.5) & (across2 <= stalk_r ** 2)
        protein = head | stalk
        density[box] += 1.0 * protein
        labels[box][protein] = next_label
        truth.membrane_proteins.append(dict(id=next_label, vesicle=vesicle_id, centre=position,
                                            normal=normal, surface_point=surface))
        next_label += 1
    return next_label


def _add_filament(config, density, rng, placer, truth):
    """A gently curved helical filament lying in the ice; subunits follow rise and twist."""
    px = config.voxel_size
    radius = config.filament_diameter / 2 / px
    nz, ny, nx = config.shape_zyx
    length = min(config.filament_length / px, 0.7 * min(nx, ny))
    start = np.array([0.15 * nx, 0.2 * ny, (truth.ice_z[0] + truth.ice_z[1]) / 2])
    heading = rng.uniform(0.3, 0.6)  # radians from the x axis
    bend = rng.uniform(-0.4, 0.4) / length  # curvature in 1/px
    arc = np.arange(0, length, 0.5)
    angle = heading + bend * arc
    path = start + np.stack([np.cumsum(np.cos(angle)) * 0.5, np.cumsum(np.sin(angle)) * 0.5,
                             2.0 * np.sin(arc / length * np.pi)], axis=1)
    rise_px = config.filament_rise / px
    n_sub = int(length / rise_px)
    subunit_r = 0.55 * radius
    subunits = []
    for i in range(n_sub):
        point_index = min(int(i * rise_px / 0.5), len(path) - 2)
        centre_line = path[point_index]
        tangent = path[point_index + 1] - centre_line
        tangent /= np.linalg.norm(tangent)
        side = np.cross(tangent, [0, 0, 1.0])
        side /= np.linalg.norm(side)
        up = np.cross(side, tangent)
        twist = np.radians(config.filament_twist * i)
        subunit = centre_line + (radius - subunit_r) * (np.cos(twist) * side + np.sin(twist) * up)
        box, (x, y, z) = _local_grid(config.shape_zyx, subunit, subunit_r + 1)
        density[box] += 1.0 * (x ** 2 + y ** 2 + z ** 2 <= subunit_r ** 2)
        subunits.append(subunit)
    placer.reserve(path[::4], radius)
    truth.filaments.append(dict(id=1, path=path, diameter=config.filament_diameter,
                                rise=config.filament_rise, twist=config.filament_twist,
                                subunits=np.array(subunits)))


def _add_contamination(config, density, rng, placer, truth):
    """An irregular, very dense ice-contamination blob touching the top surface of the slab."""
    radius = 110.0 / config.voxel_size
    centre = placer.place(2 * radius, z_range=(truth.ice_z[1] - 1, truth.ice_z[1] - 1),
                          what='contamination blob')
    for lobe in range(5):
        lobe_centre = centre + rng.normal(0, radius / 2, 3)
        lobe_r = radius * rng.uniform(0.5, 0.9)
        box, (x, y, z) = _local_grid(config.shape_zyx, lobe_centre, lobe_r + 1)
        density[box] = np.maximum(density[box], 4.0 * (x ** 2 + y ** 2 + z ** 2 <= lobe_r ** 2))
    truth.contamination.append(dict(centre=centre, radius=2 * radius * config.voxel_size))


def _texture(config, rng, ice_z):
    """Faint crowded-cytoplasm texture, only inside the ice slab."""
    texture = ndimage.gaussian_filter(rng.standard_normal(config.shape_zyx, dtype=np.float32), 2.0)
    texture *= config.texture_amplitude / max(float(texture.std()), 1e-12)
    texture[:ice_z[0]] = 0
    texture[ice_z[1]:] = 0
    return texture


def apply_missing_wedge(volume, max_tilt_degrees):
    """Remove the Fourier wedge not sampled by a ±max_tilt single-axis tilt series (tilt axis y)."""
    nz, ny, nx = volume.shape
    kz = np.fft.fftfreq(nz)[:, None, None]
    kx = np.fft.rfftfreq(nx)[None, None, :]
    sampled = np.abs(kz) <= np.tan(np.radians(max_tilt_degrees)) * np.abs(kx) + 1e-12
    sampled = sampled | ((kz == 0) & (kx == 0))
    spectrum = np.fft.rfftn(volume)
    spectrum *= sampled
    return np.fft.irfftn(spectrum, s=volume.shape).astype(np.float32)


def phantom_config(size='small', **overrides):
    """The named size ('small' for tests, 'bench' for benchmarks) with optional field overrides."""
    if size not in SIZES:
        raise PhantomError(f"unknown phantom size {size!r}; choose one of {sorted(SIZES)}")
    return replace(SIZES[size], **overrides)


def write_phantom(phantom, folder, name='TS_01'):
    """Write ``NAME.mrc``, ``NAME_truth.json`` and ``NAME_particles.star`` into ``folder``.

    The STAR table lists every point-like object (particles, gold beads, membrane proteins) with
    its class, diameter and, for membrane proteins, the outward normal.
    """
    from emtable import Table

    os.makedirs(folder, exist_ok=True)
    truth = phantom.truth
    mrc_path = write_volume(os.path.join(folder, f'{name}.mrc'), phantom.volume, truth.voxel_size)
    json_path = os.path.join(folder, f'{name}_truth.json')
    with open(json_path, 'w') as handle:
        handle.write(truth.to_json())
    table = Table(columns=['rlnTomoName', 'rlnCoordinateX', 'rlnCoordinateY', 'rlnCoordinateZ',
                           'cryosegClass', 'cryosegDiameter', 'cryosegNormalX', 'cryosegNormalY',
                           'cryosegNormalZ'])
    rows = ([(f"particle{p['cls']}", p['centre'], p['diameter'], (0, 0, 0)) for p in truth.particles]
            + [('gold', g['centre'], g['diameter'], (0, 0, 0)) for g in truth.gold]
            + [('membrane_protein', m['centre'], 50.0, m['normal']) for m in truth.membrane_proteins])
    for cls, centre, diameter, normal in rows:
        table.addRow(name, *(float(c) for c in centre), cls, float(diameter), *(float(n) for n in normal))
    star_path = os.path.join(folder, f'{name}_particles.star')
    table.write(star_path, tableName='particles')
    return mrc_path, json_path, star_path


def write_sample_data(folder, count=2, size='small', seed=0, **overrides):
    """Write ``count`` phantoms named TS_01, TS_02, ... (seeds ``seed``, ``seed + 1``, ...) into
    ``folder``; returns ``{tsId: GroundTruth}``."""
    truths = {}
    for index in range(count):
        ts_id = f'TS_{index + 1:02d}'
        phantom = make_phantom(phantom_config(size, seed=seed + index, **overrides))
        write_phantom(phantom, folder, ts_id)
        truths[ts_id] = phantom.truth
    return truths


def read_truth(path):
    """Ground truth written by :func:`write_phantom` (the ``NAME_truth.json`` file)."""
    with open(path) as handle:
        return GroundTruth.from_json(handle.read())
