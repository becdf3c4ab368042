"""MRC input and output.

Array order: mrcfile returns volumes indexed ``vol[z, y, x]``. Everywhere else in cryoseg a position is
an ``(x, y, z)`` voxel index counted from the first voxel (Scipion's ``BOTTOM_LEFT_CORNER``), so a
position ``p`` reads ``vol[p[2], p[1], p[0]]``; :func:`xyz_to_zyx` is the single place that flips it.
"""
import os
from contextlib import contextmanager
from dataclasses import dataclass

import mrcfile
import numpy as np

from .atomic import atomic_output
from .errors import CryoSegInputError


class MrcError(CryoSegInputError):
    """A file that is not a readable MRC volume; the message names the file and the reason."""


@dataclass(frozen=True)
class VolumeInfo:
    """Header facts of an MRC file, in cryoseg's conventions."""
    path: str
    shape_zyx: tuple
    voxel_size: tuple  # Å per voxel along (x, y, z)
    origin: tuple  # header origin along (x, y, z), in Å
    dtype: np.dtype

    @property
    def shape_xyz(self):
        return tuple(reversed(self.shape_zyx))

    @property
    def is_volume(self):
        return len(self.shape_zyx) == 3 and min(self.shape_zyx) > 1


def xyz_to_zyx(positions):
    """(N, 3) positions in (x, y, z) order → (N, 3) array indices in (z, y, x) order."""
    return np.asarray(positions)[..., ::-1]


def _info_from(mrc, path):
    voxel = mrc.voxel_size
    origin = mrc.header.origin
    return VolumeInfo(path=str(path), shape_zyx=tuple(int(s) for s in mrc.data.shape),
                      voxel_size=(float(voxel.x), float(voxel.y), float(voxel.z)),
                      origin=(float(origin.x), float(origin.y), float(origin.z)),
                      dtype=mrc.data.dtype)


class PlaneReader:
    """Read-only [z, y, x] access to the data of an MRC file by ordinary file reads.

    Indexing reads only the z-planes the first index selects (further indices apply to those planes)
    into a new array. Unlike a memory map, nothing read stays resident: a slab-by-slab pass over a large
    tomogram holds one slab at a time, and the process's resident memory does not grow with the pages
    of the file it has touched.
    """
    ndim = 3

    def __init__(self, stream, offset, shape, dtype):
        self._stream, self._offset = stream, offset
        self.shape, self.dtype = tuple(shape), np.dtype(dtype)
        self._plane_bytes = int(np.prod(self.shape[1:])) * self.dtype.itemsize

    @property
    def size(self):
        return int(np.prod(self.shape))

    @property
    def nbytes(self):
        return self.size * self.dtype.itemsize

    def __len__(self):
        return self.shape[0]

    def _read_planes(self, start, count):
        planes = np.empty((count,) + self.shape[1:], self.dtype)
        self._stream.seek(self._offset + start * self._plane_bytes)
        if self._stream.readinto(memoryview(planes).cast('B')) != planes.nbytes:
            raise MrcError(f"{self._stream.name}: the file is shorter than its header says")
        return planes

    def __getitem__(self, index):
        index = index if isinstance(index, tuple) else (index,)
        first, rest = (index[0] if index else slice(None)), index[1:]
        if isinstance(first, (int, np.integer)):
            plane = self._read_planes(range(self.shape[0])[first], 1)[0]
            return plane[rest] if rest else plane
        start, stop, step = first.indices(self.shape[0])
        chosen = range(start, stop, step)
        if step == 1:
            planes = self._read_planes(start, len(chosen))
        else:
            planes = np.empty((len(chosen),) + self.shape[1:], self.dtype)
            for target, source in enumerate(chosen):
                planes[target] = self._read_planes(source, 1)[0]
        return planes[(slice(None),) + rest] if rest else planes

    def __array__(self, dtype=None):
        data = self._read_planes(0, self.shape[0])
        return data if dtype is None else data.astype(dtype, copy=False)


@contextmanager
def open_volume(path, mapped=True):
    """Open an MRC file read-only; yields ``(data, info)`` with ``data`` indexed [z, y, x].

    ``mapped``: ``data`` is a read-only memory map; otherwise a :class:`PlaneReader`, which reads the
    planes each slice asks for (for slab-by-slab passes that should not keep the file resident).
    Nothing is read into memory until it is sliced. Any failure to parse the file becomes one
    :class:`MrcError` naming the file.
    """
    try:
        mrc = mrcfile.mmap(str(path), mode='r', permissive=False)
    except FileNotFoundError:
        raise MrcError(f"{path}: file not found") from None
    except (ValueError, OSError, EOFError, TypeError) as err:
        raise MrcError(f"{path}: not a readable MRC file ({err})") from None
    try:
        if mrc.data is None:
            raise MrcError(f"{path}: the MRC file holds no data")
        info = _info_from(mrc, path)
        if mapped:
            yield mrc.data, info
        else:
            with open(path, 'rb') as stream:
                yield PlaneReader(stream, mrc.data.offset, mrc.data.shape, mrc.data.dtype), info
    finally:
        mrc.close()


def read_info(path):
    """Header facts of an MRC file (shape, voxel size, origin) without reading the data."""
    with open_volume(path) as (_, info):
        return info


def read_volume(path, dtype=np.float32):
    """Read a whole MRC file into memory as ``dtype``; returns ``(array[z, y, x], info)``."""
    with open_volume(path) as (data, info):
        return np.array(data, dtype=dtype), info


def write_volume(path, data, voxel_size, origin=(0.0, 0.0, 0.0)):
    """Write ``data`` (indexed [z, y, x], or [y, x]) atomically with its voxel size and origin.

    The file is written next to its destination under a temporary name and renamed into place,
    so a reader never sees a half-written file and a failure leaves no file behind.
    ``voxel_size`` is a float or an (x, y, z) triple in Å; ``origin`` an (x, y, z) triple in Å.
    """
    path = os.fspath(path)
    with atomic_output(path, suffix='.mrc') as temporary:
        with mrcfile.new(temporary, overwrite=True) as mrc:
            mrc.set_data(np.ascontiguousarray(data))
            mrc.voxel_size = voxel_size
            mrc.header.origin.x, mrc.header.origin.y, mrc.header.origin.z = origin
    return path


class _HeaderStatistics:
    """Minimum, maximum, mean and rms of the voxels of the blocks added, without a float64 copy of a
    block: a mask of 0 and 1 is counted, other data go in pieces of a million voxels."""
    PIECE = 2 ** 20

    def __init__(self):
        self.count, self.low, self.high, self.total, self.squares = 0, np.inf, -np.inf, 0.0, 0.0

    def add(self, block):
        self.count += block.size
        low, high = block.min(), block.max()
        self.low, self.high = min(self.low, float(low)), max(self.high, float(high))
        if 0 <= low and high <= 1:
            ones = np.count_nonzero(block)
            self.total += ones
            self.squares += ones
            return
        flat = block.ravel()
        for start in range(0, flat.size, self.PIECE):
            values = flat[start:start + self.PIECE].astype(np.float64)
            self.total += values.sum()
            self.squares += values @ values

    def result(self):
        """``(dmin, dmax, dmean, rms)``."""
        mean = self.total / self.count
        return self.low, self.high, mean, np.sqrt(max(self.squares / self.count - mean ** 2, 0.0))


def write_volume_planes(path, shape, dtype, blocks, voxel_size, origin=(0.0, 0.0, 0.0)):
    """Write a volume of ``shape`` [z, y, x] and ``dtype`` from ``blocks``, consecutive groups of whole
    z-planes in order, as :func:`write_volume` does (atomically, with voxel size and origin) but without
    the whole volume in memory. The header statistics are computed from the blocks as they pass."""
    path = os.fspath(path)
    with atomic_output(path, suffix='.mrc') as temporary:
        with mrcfile.new(temporary, overwrite=True) as mrc:  # a valid header, for one plane of data
            mrc.set_data(np.zeros((1,) + tuple(shape[1:]), dtype))
            mrc.voxel_size = voxel_size
            mrc.header.origin.x, mrc.header.origin.y, mrc.header.origin.z = origin
            header = mrc.header.copy()
            data_offset = mrc.header.nbytes + mrc.extended_header.nbytes
        written, statistics = 0, _HeaderStatistics()
        with open(temporary, 'r+b') as stream:
            stream.seek(data_offset)
            for block in blocks:
                block = np.ascontiguousarray(block, dtype)
                stream.write(memoryview(block).cast('B'))
                written += len(block)
                statistics.add(block)
            if written != shape[0]:
                raise ValueError(f"{written} planes written for a volume of {shape[0]}")
            header.cella.z *= shape[0]  # the cell spans nz planes of the voxel size set above
            header.nz = header.mz = shape[0]
            header.dmin, header.dmax, header.dmean, header.rms = statistics.result()
            stream.seek(0)
            stream.write(header.tobytes())
    return path


def require_tomogram(path):
    """Header facts of ``path``, or a :class:`MrcError` if it is not a 3-D volume."""
    info = read_info(path)
    if not info.is_volume:
        raise MrcError(f"{path}: a tomogram must be a 3-D volume, but this file holds an image of "
                       f"shape {info.shape_xyz} (x, y, z)")
    return info
