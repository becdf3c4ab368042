"""Atomic file output: a reader (or a continued run) sees either the whole new file or the old one.

Every file cryoseg writes for a user or for a later step goes through :func:`atomic_output`, so a
crash, a kill or a full disk during the write never leaves a half-written file under the final name.
"""
import os
import tempfile
from contextlib import contextmanager


@contextmanager
def atomic_output(path, suffix=''):
    """Yield a temporary path in the folder of ``path``; when the block ends without an exception,
    rename it over ``path`` (``os.replace``, atomic within a file system), otherwise delete it.

    The folder is created if needed; the file gets ordinary permissions (0644), not the owner-only
    ones of ``mkstemp``. This protects against a killed or failing process (the kernel keeps what was
    written), not against a power cut: nothing is forced to disk, which would slow every write.

    Examples
    --------
    >>> import os, tempfile
    >>> target = os.path.join(tempfile.mkdtemp(), 'table.txt')
    >>> with atomic_output(target) as temporary:
    ...     with open(temporary, 'w') as stream:
    ...         _ = stream.write('complete')
    >>> open(target).read()
    'complete'
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=folder, prefix='.tmp_', suffix=suffix)
    os.close(handle)
    try:
        yield temporary
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise
