"""Particle and point files of the tools around cryoseg, read and written through one form.

Every reader returns, and every writer takes, a :class:`PointTable`: per row the tomogram name, the
(x, y, z) position in voxels from the first voxel (cryoseg's convention, Scipion's
``BOTTOM_LEFT_CORNER``) and, when the file has angles, a rotation in Scipion's convention
f'(r) = f(R·r) (the ``R`` of :mod:`cryoseg.core.orientation`, equal to Dynamo's and to
``TR_DYNAMO``; its third row is the particle's z-axis in the tomogram).

Formats (``FORMATS``):

- ``star``: RELION particle STAR. On reading, the position convention is detected from the columns:
  RELION 5 ``rlnCenteredCoordinateX/Y/ZAngst`` (Å from the tomogram centre; RELION's
  ``ParticleSet::getParticleCoordDecenteredPixel`` adds ``tomo_centre = (size/2.0)`` per axis, so a
  voxel index p is at (p − size/2)·pixel Å) or voxel ``rlnCoordinateX/Y/Z`` (RELION 4, cryoseg, 0-based).
  ``rlnOrigin*Angst`` shifts are subtracted (RELION: centre = coordinate − origin). Angles
  ``rlnAngleRot/Tilt/Psi`` (ZYZ) give ``R = Rz(rot)·Ry(tilt)·Rz(psi)``, i.e. the transpose of RELION's
  ``Euler_angles2matrix``, as scipion-em-reliontomo stores them; Dynamo (tdrot, tilt, narot) is then the
  same rotation as RELION (narot − 90, tilt, tdrot + 90).
- ``dynamo``: Dynamo table ``.tbl`` (column 1 tag, 4–6 shifts dx dy dz, 7–9 tdrot tilt narot,
  10 cc, 20 tomogram index, 24–26 x y z; the particle is at x + dx) with a ``.vll`` volume list
  (line i = tomogram index i). Positions are taken as they are (no ±1), as scipion-em-dynamo does.
- ``imod``: IMOD ``model2point`` text: ``x y z``, ``contour x y z`` (-contour) or
  ``object contour x y z`` (-object); the group is the object/contour. Taken as 0-based voxels, as
  scipion-em-imod reads models.
- ``csv``: a header naming x, y, z (or rlnCoordinateX/Y/Z) and optionally tomo/tsId/rlnTomoName,
  group, role, score; or headerless columns x, y, z, group, role.
- ``text``: whitespace lines ``x y z [group] [role]`` (``#`` comments).

References
----------
RELION 5 particle set: relion.readthedocs.io, Reference/STA/Datatypes/particle_set; Burt et al.,
FEBS Open Bio 14:1788 (2024). Dynamo table convention: wiki.dynamo.biozentrum.unibas.ch,
Table_convention; Castaño-Díez et al., J. Struct. Biol. 178:139 (2012). IMOD model2point:
bio3d.colorado.edu/imod/doc/man/model2point.html.

Examples
--------
>>> import numpy as np
>>> from cryoseg.core.formats import relion_from_dynamo
>>> np.round(relion_from_dynamo([30.0, 60.0, 75.0]), 6).tolist()
[-15.0, 60.0, 120.0]
"""
import csv
import os
import warnings
from dataclasses import dataclass, field, replace

import numpy as np
from scipy.spatial.transform import Rotation

from .errors import CryoSegInputError
from .orientation import euler_to_matrix, matrix_to_euler

FORMATS = ('auto', 'star', 'dynamo', 'imod', 'csv', 'text')
RELION_ANGLES = ('rlnAngleRot', 'rlnAngleTilt', 'rlnAnglePsi')
VOXEL_COLUMNS = ('rlnCoordinateX', 'rlnCoordinateY', 'rlnCoordinateZ')
CENTRED_COLUMNS = ('rlnCenteredCoordinateXAngst', 'rlnCenteredCoordinateYAngst', 'rlnCenteredCoordinateZAngst')
ORIGIN_COLUMNS = ('rlnOriginXAngst', 'rlnOriginYAngst', 'rlnOriginZAngst')
TOMOGRAM_BLOCK = 'cryoseg_tomograms'  # written next to data_particles; RELION reads blocks by name
DYNAMO_COLUMNS = 35
MARKER_ROLES = ('marker', 'centre', 'center', 'inside')


@dataclass(frozen=True)
class TomogramGeometry:
    """What positions relative to a tomogram need: its size (x, y, z) in voxels and voxel size in Å."""
    dims: tuple
    pixel_size: float

    @property
    def centre(self):
        """RELION 5's centre in voxels: size/2 on each axis (a float division, as RELION does)."""
        return np.asarray(self.dims, float) / 2.0


@dataclass
class PointTable:
    """Points of one or more tomograms, whatever file they came from.

    ``names`` (n,) tomogram names ('' where the file names none); ``xyz`` (n, 3) voxels from the first
    voxel; ``rotations`` (n, 3, 3) or None; ``scores`` (n,); ``groups`` (n,) labels and ``roles``
    ('point' or 'marker') for user points; ``convention`` says how the positions were read;
    ``tomograms`` the {name: TomogramGeometry} a file carries (RELION 5 files written by cryoseg).
    """
    names: np.ndarray
    xyz: np.ndarray
    rotations: np.ndarray = None
    scores: np.ndarray = None
    groups: np.ndarray = None
    roles: np.ndarray = None
    convention: str = ''
    extra: dict = field(default_factory=dict)
    tomograms: dict = field(default_factory=dict)

    def __post_init__(self):
        self.xyz = np.asarray(self.xyz, float).reshape(-1, 3)
        count = len(self.xyz)
        self.names = np.asarray(self.names if self.names is not None else [''] * count, dtype=object)
        if self.rotations is not None:
            self.rotations = np.asarray(self.rotations, float).reshape(count, 3, 3)
        self.scores = np.zeros(count) if self.scores is None else np.asarray(self.scores, float)
        self.groups = np.asarray(['1'] * count if self.groups is None else [str(g) for g in self.groups],
                                 dtype=object)
        self.roles = np.asarray(['point'] * count if self.roles is None else list(self.roles), dtype=object)
        if not np.all(np.isfinite(self.xyz)):
            raise CryoSegInputError('a position is not a finite number')
        if not all(len(a) == count for a in (self.names, self.scores, self.groups, self.roles)):
            raise CryoSegInputError('every point needs one tomogram name, score, group and role')

    def __len__(self):
        return len(self.xyz)

    def tomogram_names(self):
        """The distinct tomogram names, in order of first appearance."""
        return list(dict.fromkeys(self.names.tolist()))

    def select(self, selection):
        """The rows where the boolean ``selection`` holds."""
        return replace(self, names=self.names[selection], xyz=self.xyz[selection],
                       rotations=None if self.rotations is None else self.rotations[selection],
                       scores=self.scores[selection], groups=self.groups[selection],
                       roles=self.roles[selection], extra={k: np.asarray(v)[selection] for k, v in self.extra.items()})

    def of_tomogram(self, name):
        return self.select(self.names == name)


# ------------------------------------------------------------------------------------ angles
def rotations_from_relion(angles):
    """Scipion/Dynamo rotations (n, 3, 3) of RELION (rot, tilt, psi) in degrees: Rz(rot)·Ry(tilt)·Rz(psi)."""
    angles = np.asarray(angles, float).reshape(-1, 3)
    if not len(angles):
        return np.zeros((0, 3, 3))
    return Rotation.from_euler('ZYZ', angles, degrees=True).as_matrix()


def relion_from_rotations(rotations):
    """RELION (rot, tilt, psi) in degrees (n, 3) of Scipion/Dynamo rotations (n, 3, 3); at tilt 0 or
    180 the in-plane angle is all in rot (psi = 0)."""
    rotations = np.asarray(rotations, float).reshape(-1, 3, 3)
    if not len(rotations):
        return np.zeros((0, 3))
    with warnings.catch_warnings():  # the gimbal lock at tilt 0 is expected, and handled by scipy
        warnings.simplefilter('ignore')
        return Rotation.from_matrix(rotations).as_euler('ZYZ', degrees=True)


def relion_from_dynamo(angles):
    """RELION (rot, tilt, psi) of Dynamo (tdrot, tilt, narot), both in degrees, through the rotation."""
    angles = np.asarray(angles, float)
    rotations = euler_to_matrix(*np.moveaxis(angles.reshape(-1, 3), 1, 0))
    return relion_from_rotations(rotations).reshape(angles.shape)


def dynamo_from_rotations(rotations):
    """Dynamo (tdrot, tilt, narot) in degrees (n, 3) of rotations (n, 3, 3)."""
    return np.column_stack(matrix_to_euler(np.asarray(rotations, float).reshape(-1, 3, 3)))


# ------------------------------------------------------------------------------------ positions
def centred_angstrom(xyz, geometry):
    """RELION 5 ``rlnCenteredCoordinate*Angst`` of voxel positions: (p − size/2)·pixel."""
    return (np.asarray(xyz, float) - geometry.centre) * geometry.pixel_size


def voxels_from_centred(centred, geometry):
    """Voxel positions (from the first voxel) of RELION 5 centred Å."""
    return np.asarray(centred, float) / geometry.pixel_size + geometry.centre


# ------------------------------------------------------------------------------------ reading
def detect_format(path):
    """The format of a file from its extension: .star, .tbl, .csv, else whitespace text."""
    extension = os.path.splitext(str(path))[1].lower()
    return {'.star': 'star', '.tbl': 'dynamo', '.csv': 'csv'}.get(extension, 'text')


def read_points(path, file_format='auto', tomograms=None, volume_list=None):
    """:class:`PointTable` of a point or particle file.

    ``tomograms`` maps tomogram names to :class:`TomogramGeometry`; it is needed for RELION 5 centred
    coordinates (when the file does not carry its own ``cryoseg_tomograms`` block). ``volume_list`` is
    the Dynamo ``.vll`` naming the tomogram indices (default: the .vll next to the table, if any).
    """
    path = str(path)
    if not os.path.isfile(path):
        raise CryoSegInputError(f'{path}: no such file')
    file_format = detect_format(path) if file_format == 'auto' else file_format
    if file_format == 'star':
        table = read_star(path, tomograms)
    elif file_format == 'dynamo':
        table = read_dynamo_table(path, volume_list)
    elif file_format == 'imod':
        table = read_imod_points(path)
    elif file_format in ('csv', 'text'):
        table = read_text_points(path, csv_format=file_format == 'csv')
    else:
        raise CryoSegInputError(f"unknown point format {file_format!r}; use one of {', '.join(FORMATS)}")
    if not len(table):
        kind = {'star': 'STAR', 'dynamo': 'Dynamo table', 'imod': 'model2point', 'csv': 'CSV'}.get(file_format, 'text')
        raise CryoSegInputError(f'{path}: the {kind} file contains no points')
    return table


def _star_tables(path):
    """Every data block of a STAR file as emtable Tables, by name."""
    from emtable import Table

    names = []
    with open(path) as handle:
        for line in handle:
            if line.startswith('data_'):
                names.append(line.strip()[5:])
    tables = {}
    for name in names:
        try:
            tables[name] = Table(fileName=path, tableName=name or None, guessType=False)
        except Exception:  # emtable raises a bare Exception for a block it cannot parse
            continue
    return tables


def read_relion_tomograms(path):
    """``{name: TomogramGeometry}`` of a RELION 5 tomograms.star (rlnTomoSizeX/Y/Z in tilt-series pixels,
    rlnTomoTiltSeriesPixelSize, rlnTomoTomogramBinning) or of a cryoseg particle file's tomogram block."""
    for table in _star_tables(str(path)).values():
        if table.hasAllColumns(['rlnTomoName', 'rlnTomoSizeX', 'rlnTomoSizeY', 'rlnTomoSizeZ',
                                'rlnTomoTiltSeriesPixelSize']):
            return _geometries(table)
    raise CryoSegInputError(f'{path}: no table with rlnTomoName, rlnTomoSizeX/Y/Z and rlnTomoTiltSeriesPixelSize')


def _geometries(table):
    geometries = {}
    for row in table:
        binning = float(getattr(row, 'rlnTomoTomogramBinning', 1) or 1)
        bin1 = np.array([float(row.rlnTomoSizeX), float(row.rlnTomoSizeY), float(row.rlnTomoSizeZ)])
        geometries[str(row.rlnTomoName)] = TomogramGeometry(
            tuple(bin1 / binning), float(row.rlnTomoTiltSeriesPixelSize) * binning)
    return geometries


def read_star(path, tomograms=None):
    """:class:`PointTable` of a RELION particle STAR file, RELION 5 centred Å or voxel coordinates
    (the ``convention`` says which was used)."""
    tables = _star_tables(path)
    particles = next((t for t in tables.values() if t.hasAllColumns(list(CENTRED_COLUMNS))), None) or \
        next((t for t in tables.values() if t.hasAllColumns(list(VOXEL_COLUMNS))), None)
    if particles is None:
        raise CryoSegInputError(f'{path}: not a STAR file of particles: no rlnCoordinateX/Y/Z or '
                                'rlnCenteredCoordinateX/Y/ZAngst columns')

    def column(name, default=0.0):
        if not particles.hasColumn(name):
            return np.full(particles.size(), default)
        try:
            return np.array([float(v) for v in particles.getColumnValues(name)])
        except ValueError as err:
            raise CryoSegInputError(f'{path}: column {name} has a value that is not a number ({err})') from None

    names = np.array([str(v) for v in particles.getColumnValues('rlnTomoName')], dtype=object) \
        if particles.hasColumn('rlnTomoName') else np.full(particles.size(), '', dtype=object)
    own = _geometries(tables[TOMOGRAM_BLOCK]) if TOMOGRAM_BLOCK in tables else {}
    geometries = {**own, **(tomograms or {})}
    centred = particles.hasAllColumns(list(CENTRED_COLUMNS))
    missing = sorted(set(names.tolist()) - set(geometries)) if centred else []
    if centred and missing and particles.hasAllColumns(list(VOXEL_COLUMNS)):
        centred = False  # the file also has voxel coordinates: use them rather than fail
    if centred:
        if missing:
            raise CryoSegInputError(
                f"{path} has RELION 5 centred coordinates (Å from the tomogram centre); their voxel positions "
                f"need the size and pixel size of tomogram(s) {', '.join(repr(m) for m in missing)}: give the "
                "tomograms or a RELION tomograms.star")
        origins = np.stack([column(c) for c in ORIGIN_COLUMNS], 1)
        angstrom = np.stack([column(c) for c in CENTRED_COLUMNS], 1) - origins
        xyz = np.zeros_like(angstrom)
        for name in set(names.tolist()):
            rows = names == name
            xyz[rows] = voxels_from_centred(angstrom[rows], geometries[name])
        convention = 'RELION 5 centred Å (rlnCenteredCoordinateX/Y/ZAngst)'
    else:
        xyz = np.stack([column(c) for c in VOXEL_COLUMNS], 1)
        origins = np.stack([column(c) for c in ORIGIN_COLUMNS], 1)
        if np.any(origins):
            sizes = [geometries[n].pixel_size for n in names if n in geometries]
            if len(sizes) != len(names):
                raise CryoSegInputError(f'{path}: rlnOrigin*Angst shifts need the pixel size of the tomograms')
            xyz = xyz - origins / np.asarray(sizes)[:, None]
        convention = 'voxels from the first voxel (rlnCoordinateX/Y/Z)'
    rotations = rotations_from_relion(np.stack([column(c) for c in RELION_ANGLES], 1)) \
        if particles.hasAllColumns(list(RELION_ANGLES)) else None
    group_column = next((c for c in ('cryosegGroup', 'rlnGroupNumber', 'rlnGroupName', 'rlnTomoManifoldIndex',
                                     'rlnClassNumber', 'groupId') if particles.hasColumn(c)), None)
    groups = [_label(v) for v in particles.getColumnValues(group_column)] if group_column else None
    roles = [_role(v) for v in particles.getColumnValues('cryosegRole')] if particles.hasColumn('cryosegRole') \
        else None
    return PointTable(names, xyz, rotations, column('rlnAutopickFigureOfMerit'), groups, roles, convention,
                      tomograms=own)


def read_dynamo_table(path, volume_list=None):
    """:class:`PointTable` of a Dynamo ``.tbl``; tomograms are named by the ``.vll`` (file stem of line
    i for index i), else by their index."""
    try:
        data = np.loadtxt(path, ndmin=2)
    except ValueError as err:
        raise CryoSegInputError(f'{path}: not a Dynamo table of numbers ({err})') from None
    if data.size and data.shape[1] < 26:
        raise CryoSegInputError(f'{path}: a Dynamo table needs at least 26 columns (x y z are 24-26), '
                                f'this one has {data.shape[1]}')
    if volume_list is None:
        candidate = os.path.splitext(path)[0] + '.vll'
        volume_list = candidate if os.path.isfile(candidate) else None
    indices = data[:, 19].astype(int) if data.size else np.zeros(0, int)
    names = np.array([str(i) for i in indices], dtype=object)
    if volume_list:
        volumes = read_volume_list(volume_list)
        unknown = sorted(set(indices.tolist()) - set(range(1, len(volumes) + 1)))
        if unknown:
            raise CryoSegInputError(f'{path}: tomogram index {unknown[0]} is not listed in {volume_list} '
                                    f'({len(volumes)} volumes)')
        names = np.array([_stem(volumes[i - 1]) for i in indices], dtype=object)
    xyz = data[:, 23:26] + data[:, 3:6] if data.size else np.zeros((0, 3))
    rotations = euler_to_matrix(data[:, 6], data[:, 7], data[:, 8]) if data.size else None
    return PointTable(names, xyz, rotations, data[:, 9] if data.size else None,
                      convention='Dynamo table: x + dx, y + dy, z + dz (columns 24-26 and 4-6)',
                      extra={'tag': data[:, 0].astype(int) if data.size else np.zeros(0, int)})


def read_volume_list(path):
    """The tomogram paths of a Dynamo ``.vll``, one per line (index = line number, from 1)."""
    with open(path) as handle:
        return [line.strip() for line in handle if line.strip() and not line.lstrip().startswith('#')]


def read_imod_points(path):
    """:class:`PointTable` of IMOD ``model2point`` text (3, 4 or 5 columns; see the module docstring)."""
    rows = _text_rows(path, csv_format=False)
    widths = {len(row) for row in rows}
    if len(widths) != 1 or widths.pop() not in (3, 4, 5):
        raise CryoSegInputError(f'{path}: model2point lines have 3 (x y z), 4 (contour x y z) or 5 '
                                '(object contour x y z) numbers, all lines alike')
    try:
        values = np.array(rows, float)
    except ValueError as err:
        raise CryoSegInputError(f'{path}: not model2point output ({err})') from None
    labels = ['.'.join(str(int(v)) for v in row[:-3]) or '1' for row in values]
    return PointTable(None, values[:, -3:], groups=labels,
                      convention='IMOD model2point: x y z in voxels from the first voxel')


def read_text_points(path, csv_format):
    """:class:`PointTable` of CSV or whitespace text points (see the module docstring)."""
    rows = _text_rows(path, csv_format)
    names = ['x', 'y', 'z', 'group', 'role']
    try:
        [float(v) for v in rows[0][:3]]
    except ValueError:  # a header line
        aliases = {'groupid': 'group', 'rlncoordinatex': 'x', 'rlncoordinatey': 'y', 'rlncoordinatez': 'z',
                   'tsid': 'tomo', 'rlntomoname': 'tomo', 'tomogram': 'tomo', 'rlnautopickfigureofmerit': 'score'}
        names = [aliases.get(h.strip().lower(), h.strip().lower()) for h in rows[0]]
        rows = rows[1:]
    defaults = {'group': '1', 'role': 'point'}  # trailing optional columns may be left out per line
    columns = {}
    for index, name in enumerate(names):
        if all(len(row) > index for row in rows) or (name in defaults and any(len(row) > index for row in rows)):
            columns[name] = [row[index].strip() if len(row) > index else defaults[name] for row in rows]
    if not all(k in columns for k in 'xyz'):
        raise CryoSegInputError(f'{path}: every line needs at least x, y and z')
    try:
        xyz = np.column_stack([np.asarray(columns[k], float) for k in 'xyz'])
        scores = np.asarray(columns['score'], float) if 'score' in columns else None
    except ValueError as err:
        raise CryoSegInputError(f'{path}: could not read x, y, z coordinates ({err})') from None
    kind = 'CSV' if csv_format else 'text'
    return PointTable(columns.get('tomo'), xyz, None, scores, [_label(g) for g in columns.get('group', ['1'] * len(xyz))],
                      [_role(r) for r in columns.get('role', ['point'] * len(xyz))],
                      convention=f'{kind}: x y z in voxels as written')


def _text_rows(path, csv_format):
    with open(path, newline='') as handle:
        if csv_format:
            rows = [row for row in csv.reader(handle) if row and not row[0].lstrip().startswith('#')]
        else:
            rows = [line.split() for line in handle if line.strip() and not line.lstrip().startswith('#')]
    if not rows:
        raise CryoSegInputError(f'{path} contains no points')
    return rows


def _label(value):
    """Group labels: '4.0' and '4' are the same group."""
    text = str(value).strip()
    try:
        number = float(text)
        return str(int(number)) if number.is_integer() else text
    except ValueError:
        return text


def _role(value):
    return 'marker' if str(value).strip().lower() in MARKER_ROLES else 'point'


def _stem(path):
    return os.path.splitext(os.path.basename(path))[0]


# ------------------------------------------------------------------------------------ writing
def write_relion5_star(path, table, tomograms, extra_columns=None):
    """Write a RELION 5 particle STAR: ``data_particles`` with rlnTomoName,
    rlnCenteredCoordinateX/Y/ZAngst, rlnAngleRot/Tilt/Psi when the table has rotations and
    rlnAutopickFigureOfMerit, plus a ``data_cryoseg_tomograms`` block (rlnTomoName, rlnTomoSizeX/Y/Z,
    rlnTomoTiltSeriesPixelSize, rlnTomoTomogramBinning = 1, as in RELION's tomograms.star) with the
    geometry the centred positions refer to. ``tomograms`` maps every name to a TomogramGeometry."""
    from emtable import Table

    missing = sorted(set(table.names.tolist()) - set(tomograms))
    if missing:
        raise CryoSegInputError(f"no size and pixel size for tomogram(s) {', '.join(map(repr, missing))}")
    centred = [centred_angstrom(xyz, tomograms[name]) for name, xyz in zip(table.names, table.xyz)]
    particles = _particle_table(table, CENTRED_COLUMNS, centred, extra_columns)
    geometry = Table(columns=['rlnTomoName', 'rlnTomoSizeX', 'rlnTomoSizeY', 'rlnTomoSizeZ',
                              'rlnTomoTiltSeriesPixelSize', 'rlnTomoTomogramBinning'])
    for name in table.tomogram_names():
        geometry.addRow(name, *(float(d) for d in tomograms[name].dims), tomograms[name].pixel_size, 1.0)
    with open(path, 'w') as handle:
        handle.write('\n# version 50001\n')
        particles.writeStar(handle, tableName='particles')
        geometry.writeStar(handle, tableName=TOMOGRAM_BLOCK)
    return path


def write_voxel_star(path, table, extra_columns=None):
    """Write a voxel STAR (RELION 4 / cryoseg): rlnTomoName, rlnCoordinateX/Y/Z (0-based voxels),
    RELION angles when the table has rotations, rlnAutopickFigureOfMerit."""
    _particle_table(table, VOXEL_COLUMNS, table.xyz, extra_columns).write(str(path), tableName='particles')
    return path


def _particle_table(table, position_columns, positions, extra_columns=None):
    """emtable Table of the particles: rlnTomoName, the positions under ``position_columns``, RELION
    angles when the table has rotations, rlnAutopickFigureOfMerit and ``extra_columns`` ({name: values})."""
    from emtable import Table

    extra_columns = extra_columns or {}
    angles = relion_from_rotations(table.rotations) if table.rotations is not None else None
    particles = Table(columns=['rlnTomoName', *position_columns, *(RELION_ANGLES if angles is not None else []),
                               'rlnAutopickFigureOfMerit', *extra_columns])
    for index in range(len(table)):
        row = [table.names[index], *positions[index], *(angles[index] if angles is not None else [])]
        particles.addRow(*row, float(table.scores[index]), *(values[index] for values in extra_columns.values()))
    return particles


def write_dynamo_table(path, table, tomogram_index):
    """Write a Dynamo ``.tbl`` (35 columns): tag 1..n, aligned and averaged 1, shifts 0, tdrot tilt narot
    (0 without rotations), cc = score, tomogram index (``tomogram_index[name]``, from 1), class 1, x y z."""
    missing = sorted(set(table.names.tolist()) - set(tomogram_index))
    if missing:
        raise CryoSegInputError(f"no Dynamo tomogram index for {', '.join(map(repr, missing))}")
    data = np.zeros((len(table), DYNAMO_COLUMNS))
    data[:, 0] = np.arange(1, len(table) + 1)
    data[:, 1:3] = 1
    if table.rotations is not None:
        data[:, 6:9] = dynamo_from_rotations(table.rotations)
    data[:, 9] = table.scores
    data[:, 19] = [tomogram_index[name] for name in table.names]
    data[:, 21] = 1
    data[:, 23:26] = table.xyz
    integer = [c for c in range(DYNAMO_COLUMNS) if c not in (3, 4, 5, 6, 7, 8, 9, 23, 24, 25)]
    with open(path, 'w') as handle:
        for row in data:
            handle.write(' '.join(str(int(v)) if c in integer else repr(float(v)) for c, v in enumerate(row)) + '\n')
    return path


def write_volume_list(path, tomogram_paths):
    """Write a Dynamo ``.vll``: one tomogram path per line, line i for tomogram index i."""
    with open(path, 'w') as handle:
        handle.writelines(f'{p}\n' for p in tomogram_paths)
    return path
