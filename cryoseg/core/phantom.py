"""Deterministic synthetic tomograms with ground truth.

The phantom imitates what a cryo-ET user sees: an ice slab thinner than the volume (empty margins in z),
particles of a few known diameters with internal structure, spherical and ellipsoidal vesicles (bilayer
shells) carrying membrane proteins with known outward normals, a helical filament, a few gold beads,
a contamination blob, a faint crowded-cytoplasm texture, band-limited noise and optionally the
missing-wedge blur. Densities are built positive ("more mass") and flipped for dark contrast.
The 'cell' preset (:func:`cell_config`) makes a crowded cellular lamella instead: ribosome-sized
particles touching each other and lining an ER-like cisterna, with a real tomogram's noise spectrum,
a phase-contrast transfer, the missing wedge and 8-bit values.

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
    gold_density: float = 8.0  # × particle density
    contamination: bool = True
    texture_amplitude: float = 0.25  # crowded-cytoplasm texture inside the ice, × particle density
    texture_correlation: float = 2.0  # Gaussian σ of that texture in voxels
    noise_std: float = 0.6  # × particle density, after band limiting
    defocus: float = 0.0  # µm underfocus of a 300 kV phase-contrast transfer applied to the signal; 0 = off
    amplitude_contrast: float = 0.07  # share of amplitude contrast in that transfer
    blur: float = 0.0  # Å, Gaussian σ of the imaging's resolution envelope on the signal; 0 = off
    membrane_density: float = 1.2  # peak density of one leaflet, × particle density
    noise_correlation: float = 0.7  # Gaussian σ of the noise in voxels
    missing_wedge: float = 0.0  # maximum tilt in degrees; 0 = no wedge
    contrast: str = 'dark'  # 'dark' (dense = negative, as reconstructed) or 'light'
    object_gap: float = 20.0  # Å kept free between objects placed at random
    touching_fraction: float = 0.0  # share of particles placed in contact with an earlier one
    membrane_sheets: int = 0  # ER-like cisternae (two parallel membranes) crossing the slab
    sheet_lumen: float = 500.0  # Å between the two membranes of a cisterna
    particles_on_sheets: float = 0.0  # share of the first class placed on the sheets' outer faces
    noise_psd: tuple = ()  # n radial noise powers at (i + 0.5) / 2n cycles/px; () = Gaussian-correlated
    quantisation_bits: int = 0  # quantise the final values to 2**bits levels over their range; 0 = off


SIZES = {
    'small': PhantomConfig(),
    'bench': PhantomConfig(shape_zyx=(256, 512, 512), particles_per_class=(40, 30, 20),
                           sphere_vesicle_radii=(230.0, 320.0), proteins_per_vesicle=16,
                           ellipsoid_vesicle_radii=((300.0, 210.0, 170.0), (380.0, 260.0, 200.0)),
                           gold_beads=6, filament_length=3000.0),
}

CELL_VOXEL_SIZE = 31.36  # Å, that of EMPIAR-11658 tomogram 9
# The radial noise power of EMPIAR-11658 tomogram 9 in xy (tomostats.measure_tomogram's noise_psd:
# it rises with frequency, the weighting ramp of back-projection, and falls towards Nyquist):
TOMO9_NOISE_PSD = (0.55, 0.89, 1.07, 1.22, 1.40, 1.57, 1.70, 1.65, 1.50, 1.26, 0.97, 0.71, 0.50, 0.29, 0.18, 0.08)
# the noise filter that reproduces it after the ±60° wedge (four fixed-point steps, filter × wanted /
# measured, on 64 × 256 × 256 pure noise: then within 7 % per bin). Per voxel, like the reconstruction's.
CELL_NOISE_FILTER = (2.165, 2.867, 1.587, 1.482, 1.535, 1.316, 1.457, 1.154, 1.083, 0.854, 0.605, 0.449, 0.3, 0.151,
                     0.119, 0.04)
# The rest was chosen so that tomostats.measure_tomogram gives tomo9's numbers (bench/phantom_vs_real.py):
# an 8 µm underfocus with an effective amplitude contrast of 0.3 (tomograms are usually deconvolved,
# which restores low frequencies) makes particles dark blobs with light fringes; gold sets the 8-bit range;
# a fine (1 voxel) crowding texture gives the specimen's mid-frequency clutter.
CELL = PhantomConfig(
    voxel_size=CELL_VOXEL_SIZE, ice_fraction=0.4, particle_diameters=(270.0,), particles_per_class=(1,),
    sphere_vesicle_radii=(300.0,), ellipsoid_vesicle_radii=(), proteins_per_vesicle=6, filament=False,
    gold_beads=2, gold_density=20.0, membrane_density=0.8, texture_amplitude=0.25, texture_correlation=1.0,
    defocus=8.0, amplitude_contrast=0.3, blur=20.0, noise_std=0.066, missing_wedge=60.0, object_gap=30.0,
    touching_fraction=0.4, membrane_sheets=1, sheet_lumen=400.0, particles_on_sheets=0.3,
    noise_psd=CELL_NOISE_FILTER, quantisation_bits=8)


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
    membranes: list = field(default_factory=list)  # {id, kind, centre, normal, curvature, lumen, particles}

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

    def __init__(self, shape_xyz, ice_z, rng, gap):
        self.shape_xyz = np.asarray(shape_xyz, float)
        self.ice_z = ice_z
        self.rng = rng
        self.gap = gap
        self.centres = np.zeros((0, 3))
        self.radii = np.zeros(0)

    def reserve(self, centres, radii):
        self.centres = np.vstack([self.centres, np.atleast_2d(centres)])
        self.radii = np.concatenate([self.radii, np.broadcast_to(radii, (len(np.atleast_2d(centres)),))])

    def fits(self, centre, radius, gap=None):
        if not len(self.radii):
            return True
        dist = np.linalg.norm(self.centres - centre, axis=1)
        return bool(np.all(dist > self.radii + radius + (self.gap if gap is None else gap)))

    def inside(self, centre, radius):
        """Whether a sphere of ``radius`` at ``centre`` lies in the volume and in the ice slab."""
        return bool(np.all(centre[:2] >= radius + 1) and np.all(centre[:2] <= self.shape_xyz[:2] - radius - 2)
                    and self.ice_z[0] + radius <= centre[2] <= self.ice_z[1] - 1 - radius)

    def place_against(self, anchors, anchor_radius, radius, max_contact):
        """A free centre for a sphere of ``radius`` touching one of the ``anchors`` (bounding spheres
        of ``anchor_radius``) with a gap of at most ``max_contact``; None when none is found."""
        for _ in range(200):
            anchor = anchors[self.rng.integers(len(anchors))]
            direction = self.rng.standard_normal(3)
            distance = anchor_radius + radius + max_contact * self.rng.random()
            centre = anchor + distance * direction / np.linalg.norm(direction)
            if self.inside(centre, radius) and self.fits(centre, radius, gap=0.0):
                self.reserve(centre, radius)
                return centre
        return None

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
    placer = _Placer((nx, ny, nz), ice_z, rng, gap=config.object_gap / px)
    next_label = 1
    if config.membrane_sheets:
        next_label = _add_membrane_sheets(config, density, labels, rng, placer, truth, next_label)

    if config.filament:
        _add_filament(config, density, rng, placer, truth)

    leaflet_sigma, half_bilayer = _bilayer_scale(config)
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
        density[box] += (_bilayer(distance, half_bilayer, leaflet_sigma, config.membrane_density)
                         + 0.15 * (distance < -half_bilayer))
        truth.vesicles.append(dict(id=vesicle_id, kind=kind, centre=centre, radii=list(radii_a),
                                   axes=axes, membrane_thickness=config.membrane_thickness))
        next_label = _add_membrane_proteins(config, density, labels, rng, truth, vesicle_id, centre,
                                            axes, radii, half_bilayer, next_label)

    for cls, (diameter, count) in enumerate(zip(config.particle_diameters, config.particles_per_class)):
        r_px = diameter / 2 / px
        count -= sum(p['cls'] == cls for p in truth.particles)  # those already lining sheets
        for _ in range(count):
            centre = None
            if config.touching_fraction and truth.particles and rng.random() < config.touching_fraction:
                same_class = [p['centre'] for p in truth.particles if p['cls'] == cls]
                if same_class:
                    centre = placer.place_against(same_class, r_px, r_px, config.object_gap / 2 / px)
            if centre is None:
                centre = placer.place(r_px, what='particle')
            _add_particle(config, density, labels, rng, truth, cls, centre, next_label)
            next_label += 1

    for _ in range(config.gold_beads):
        r_px = config.gold_diameter / 2 / px
        centre = placer.place(r_px, what='gold bead')
        box, (x, y, z) = _local_grid(config.shape_zyx, centre, r_px + 1)
        bead = x ** 2 + y ** 2 + z ** 2 <= r_px ** 2
        density[box] += config.gold_density * bead
        labels[box][bead] = next_label
        truth.gold.append(dict(id=next_label, centre=centre, diameter=config.gold_diameter))
        next_label += 1

    if config.contamination:
        _add_contamination(config, density, rng, placer, truth)

    signal = _texture(config, rng, ice_z) + density
    if config.defocus:
        signal = apply_ctf(signal, px, config.defocus, config.amplitude_contrast)
    if config.blur:
        signal = ndimage.gaussian_filter(signal, config.blur / px)
    noise = _noise(config, rng)
    noise *= config.noise_std / max(float(noise.std()), 1e-12)
    volume = signal + noise
    if config.missing_wedge:
        volume = apply_missing_wedge(volume, config.missing_wedge)
    if config.contrast == 'dark':
        volume = -volume
    elif config.contrast != 'light':
        raise PhantomError(f"contrast must be 'dark' or 'light', not {config.contrast!r}")
    if config.quantisation_bits:
        volume = quantise(volume, config.quantisation_bits)
    return Phantom(volume=volume.astype(np.float32), truth=truth, labels=labels)


def _add_particle(config, density, labels, rng, truth, cls, centre, label):
    """Draw a particle of class ``cls`` with a random orientation and record it."""
    diameter = config.particle_diameters[cls]
    r_px = diameter / 2 / config.voxel_size
    rotation = Rotation.random(random_state=rng).as_matrix()
    box, offsets = _local_grid(config.shape_zyx, centre, r_px + 1)
    particle = _particle_density(cls, _rotated(offsets, rotation), r_px)
    density[box] += particle
    labels[box][particle > 0] = label
    truth.particles.append(dict(id=label, cls=cls, centre=centre, diameter=diameter, rotation=rotation))


def _bilayer_scale(config):
    """Gaussian σ of one leaflet and half the leaflet separation, in voxels."""
    return max(config.voxel_size * 0.8, 6.0) / config.voxel_size, config.membrane_thickness / 2 / config.voxel_size


def _bilayer(distance, half_bilayer, leaflet_sigma, peak):
    """Density of a bilayer at signed distance ``distance`` (voxels) from its mid-plane."""
    return peak * (np.exp(-((distance - half_bilayer) / leaflet_sigma) ** 2 / 2)
                  + np.exp(-((distance + half_bilayer) / leaflet_sigma) ** 2 / 2))


def _add_membrane_sheets(config, density, labels, rng, placer, truth, next_label):
    """ER-like cisternae: two bilayers ``sheet_lumen`` apart around a gently curved mid-surface that
    crosses the slab (its normal within 30° of the xy plane, so the missing wedge spares it), with
    particles of the first class lining their outer faces (rough ER)."""
    px = config.voxel_size
    nz, ny, nx = config.shape_zyx
    leaflet_sigma, half_bilayer = _bilayer_scale(config)
    half_lumen = config.sheet_lumen / 2 / px
    outer = half_lumen + half_bilayer  # from the mid-surface to the outer leaflet
    r_px = config.particle_diameters[0] / 2 / px
    lining = round(config.particles_on_sheets * config.particles_per_class[0])
    z0, z1 = truth.ice_z
    z, y, x = np.ogrid[z0:z1, 0:ny, 0:nx]
    reach = float(np.hypot(np.hypot(nx, ny), nz))
    grid = np.arange(-reach, reach, outer / 2)
    for sheet_id in range(1, config.membrane_sheets + 1):
        azimuth, tilt = rng.uniform(0, np.pi), rng.uniform(-np.pi / 6, np.pi / 6)
        normal = np.array([np.cos(azimuth) * np.cos(tilt), np.sin(azimuth) * np.cos(tilt), np.sin(tilt)])
        tangent = np.array([-np.sin(azimuth), np.cos(azimuth), 0.0])
        binormal = np.cross(normal, tangent)
        centre = np.array([nx, ny, 0.0]) * rng.uniform(0.3, 0.7, 3) + [0, 0, (z0 + z1) / 2]
        curvature = rng.uniform(-1, 1) * px / 3000.0  # radius of curvature ≥ 3000 Å
        offsets = tuple((axis - c).astype(np.float32) for axis, c in zip((x, y, z), centre))
        along = sum(t * o for t, o in zip(tangent, offsets))
        distance = _sheet_distance(sum(n * o for n, o in zip(normal, offsets)), along, curvature)
        density[z0:z1] += (_bilayer(distance - half_lumen, half_bilayer, leaflet_sigma, config.membrane_density)
                           + _bilayer(distance + half_lumen, half_bilayer, leaflet_sigma, config.membrane_density)
                           + 0.15 * (np.abs(distance) < half_lumen - half_bilayer))

        def surface(u, v):
            """Mid-surface point and its unit normal at tangent/binormal coordinates u, v."""
            point = centre + u * tangent + v * binormal - curvature * u ** 2 / 2 * normal
            local_normal = normal + curvature * u * tangent
            return point, local_normal / np.linalg.norm(local_normal)

        u, v = (g.ravel() for g in np.meshgrid(grid, grid))
        points = centre + u[:, None] * tangent + v[:, None] * binormal - (curvature * u ** 2 / 2)[:, None] * normal
        keep = np.all((points > -outer) & (points < np.array([nx, ny, nz]) + outer), axis=1)
        placer.reserve(points[keep], outer)
        ids = []
        wanted = lining // config.membrane_sheets + (sheet_id <= lining % config.membrane_sheets)
        for _ in range(200 * wanted):
            if len(ids) == wanted:
                break
            point, local_normal = surface(*rng.uniform(-reach / 2, reach / 2, 2))
            side = rng.choice([-1.0, 1.0])
            particle_centre = point + side * (outer + leaflet_sigma + r_px) * local_normal
            if placer.inside(particle_centre, r_px) and placer.fits(particle_centre, r_px, gap=0.0):
                placer.reserve(particle_centre, r_px)
                _add_particle(config, density, labels, rng, truth, 0, particle_centre, next_label)
                ids.append(next_label)
                next_label += 1
        # mid-surface: normal·q + curvature·(tangent·q)²/2 = 0 with q = position − centre (Å⁻¹ stored)
        truth.membranes.append(dict(id=sheet_id, kind='cisterna', centre=centre, normal=normal,
                                    tangent=tangent, curvature=curvature / px, lumen=config.sheet_lumen,
                                    membrane_thickness=config.membrane_thickness, particles=ids))
    return next_label


def _sheet_distance(across, along, curvature):
    """Signed distance (to first order) from the parabolic mid-surface across + curvature·along²/2 = 0,
    given a point's coordinates across (normal) and along (tangent) from the sheet's centre."""
    return (across + curvature * along ** 2 / 2) / np.sqrt(1 + (curvature * along) ** 2)


def _noise(config, rng):
    """Unit-scale noise: Gaussian-correlated, or coloured by ``config.noise_psd`` (the same radial
    profile in the xy plane and along z, so that xy sections show that spectrum)."""
    white = rng.standard_normal(config.shape_zyx, dtype=np.float32)
    if not config.noise_psd:
        return ndimage.gaussian_filter(white, config.noise_correlation)
    profile = np.sqrt(np.asarray(config.noise_psd, float))
    centres = (np.arange(len(profile)) + 0.5) / (2 * len(profile))
    nz, ny, nx = config.shape_zyx
    kz = np.abs(np.fft.fftfreq(nz))[:, None, None]
    k_xy = np.hypot(np.fft.fftfreq(ny)[:, None], np.fft.rfftfreq(nx)[None, :])[None]
    gain = np.interp(k_xy, centres, profile) * np.interp(kz, centres, profile)
    return np.fft.irfftn(np.fft.rfftn(white) * gain, s=config.shape_zyx).astype(np.float32)


def quantise(volume, bits):
    """Round ``volume`` to ``2**bits`` evenly spaced levels between its minimum and maximum (as an
    8-bit export does), keeping its value range."""
    low, high = float(volume.min()), float(volume.max())
    steps = 2 ** bits - 1
    if high <= low:
        return volume
    step = (high - low) / steps
    return (low + np.round((volume - low) / step) * step).astype(np.float32)


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
    texture = ndimage.gaussian_filter(rng.standard_normal(config.shape_zyx, dtype=np.float32),
                                      config.texture_correlation)
    texture *= config.texture_amplitude / max(float(texture.std()), 1e-12)
    texture[:ice_z[0]] = 0
    texture[ice_z[1]:] = 0
    return texture


def apply_ctf(volume, voxel_size, defocus_um, amplitude_contrast, wavelength=0.01969):
    """Filter ``volume`` (positive mass) by the phase-contrast transfer of an underfocused image,
    sqrt(1 − A²)·sin χ + A·cos χ with χ = π λ Δf k² (spherical aberration is negligible at tomogram
    pixel sizes; λ in Å, 300 kV by default), isotropically in 3-D and without phase flipping: mass
    stays dark after the contrast flip, edges get the light fringes seen in tomograms."""
    nz, ny, nx = volume.shape
    k2 = (np.fft.fftfreq(nz)[:, None, None] ** 2 + np.fft.fftfreq(ny)[None, :, None] ** 2
          + np.fft.rfftfreq(nx)[None, None, :] ** 2) / voxel_size ** 2
    chi = np.pi * wavelength * defocus_um * 1e4 * k2
    transfer = np.sqrt(1 - amplitude_contrast ** 2) * np.sin(chi) + amplitude_contrast * np.cos(chi)
    return np.fft.irfftn(np.fft.rfftn(volume) * transfer, s=volume.shape).astype(np.float32)


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


def cell_config(voxel_size=CELL_VOXEL_SIZE, shape_zyx=(96, 128, 128), ribosomes_per_um3=6000.0,
                **overrides):
    """The 'cell' preset: a crowded cytoplasm slab imitating a FIB-milled lamella (EMPIAR-11658
    tomogram 9): 270 Å ribosome-like particles at ``ribosomes_per_um3`` of specimen, many touching
    each other or lining an ER-like cisterna, a vesicle, gold and contamination, noise with the real
    tomogram's power spectrum, a ±60° missing wedge and 8-bit values. The particle count follows the
    slab's volume, so any ``voxel_size`` (Å) or shape gives the same cellular density; other
    :class:`PhantomConfig` fields may be overridden."""
    config = replace(CELL, voxel_size=voxel_size, shape_zyx=tuple(shape_zyx), **overrides)
    slab_um3 = (config.ice_fraction * np.prod(config.shape_zyx)) * (voxel_size * 1e-4) ** 3
    count = max(1, int(round(ribosomes_per_um3 * slab_um3)))
    return replace(config, particles_per_class=(count,) + tuple(config.particles_per_class[1:]))


def phantom_config(size='small', **overrides):
    """The named preset ('small' for tests, 'bench' for benchmarks, 'cell' for a crowded cellular
    slab, see :func:`cell_config`) with optional field overrides."""
    if size == 'cell':
        return cell_config(**overrides)
    if size not in SIZES:
        raise PhantomError(f"unknown phantom size {size!r}; choose one of {sorted(SIZES) + ['cell']}")
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
