"""MRC input and output.

Array order: mrcfile returns volumes indexed ``vol[z, y, x]``. Everywhere else in cryoseg a position is
an ``(x, y, z)`` voxel index counted from the first voxel (Scipion's ``BOTTOM_LEFT_CORNER``), so a
position ``p`` reads ``vol[p[2], p[1], p[0]]``; :func:`xyz_to_zyx` is the single place that flips it.
"""
import os
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass

import mrcfile
import numpy as np

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


@contextmanager
def open_volume(path):
    """Memory-map an MRC file read-only; yields ``(data, info)`` with ``data`` indexed [z, y, x].

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
        yield mrc.data, _info_from(mrc, path)
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
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    handle, tmp_path = tempfile.mkstemp(dir=folder, prefix='.tmp_', suffix='.mrc')
    os.close(handle)
    try:
        with mrcfile.new(tmp_path, overwrite=True) as mrc:
            mrc.set_data(np.ascontiguousarray(data))
            mrc.voxel_size = voxel_size
            mrc.header.origin.x, mrc.header.origin.y, mrc.header.origin.z = origin
        os.chmod(tmp_path, 0o644)  # mkstemp creates owner-only files
        os.replace(tmp_path, path)
    except BaseException:
        if os.path.exists(tmp_path):
            os.remove(tmp_path)
        raise
    return path


def require_tomogram(path):
    """Header facts of ``path``, or a :class:`MrcError` if it is not a 3-D volume."""
    info = read_info(path)
    if not info.is_volume:
        raise MrcError(f"{path}: a tomogram must be a 3-D volume, but this file holds an image of "
                       f"shape {info.shape_xyz} (x, y, z)")
    return info
