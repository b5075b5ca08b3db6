"""Crash-safe file writes: a file (a checkpoint, a deblurred image) is either complete under its final name or absent.

:func:`atomic_write` lets a writer fill a hidden temporary file in the destination folder
(``.<name>.<random>.partial``), ``fsync``-s it, renames it over the destination with :func:`os.replace` (atomic on
POSIX and Windows within one file system) and ``fsync``-s the folder entry. :func:`atomic_torch_save` is
``torch.save`` through it. A crash at any point leaves at most a stray ``*.partial`` file, which BasicSR's
``--auto_resume`` never picks (it lists visible ``*.state`` files only) and which :func:`remove_stale_partials`
can clean up; a failed writer's temporary file is removed.

``mkstemp`` creates its file with mode 0600 whatever the umask; the file is given ``0666 & ~umask`` before it is
renamed, so checkpoints get the mode of any other new file (umask 022: 0644, 027: 0640), as BasicSR's plain
``torch.save`` would give them.
"""

from __future__ import annotations

import glob
import os
import tempfile
from typing import Any, Callable, List

PARTIAL_SUFFIX = '.partial'


def _fsync(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(directory: str) -> None:
    if os.name == 'posix':  # a folder entry can be fsync-ed there only
        _fsync(directory)


def current_umask() -> int:
    """The process umask (read without changing it where ``/proc`` allows, else by setting and restoring it)."""
    try:
        with open('/proc/self/status', encoding='ascii') as handle:
            for line in handle:
                if line.startswith('Umask:'):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def new_file_mode() -> int:
    """Mode an ordinary new file gets under the current umask (``0666 & ~umask``)."""
    return 0o666 & ~current_umask()


def atomic_write(path: str, write: Callable[[str], None]) -> None:
    """Call ``write(temporary path)`` beside ``path``, then make it ``path`` atomically (see module docstring).

    The temporary file exists (empty) when ``write`` is called; the final file gets the mode of any new file.
    Any exception of ``write`` or of the rename propagates after the temporary file is removed.
    """
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp_path = tempfile.mkstemp(prefix=f'.{os.path.basename(path)}.', suffix=PARTIAL_SUFFIX, dir=directory)
    os.close(fd)
    try:
        write(tmp_path)
        os.chmod(tmp_path, new_file_mode())  # mkstemp creates 0600
        _fsync(tmp_path)
        os.replace(tmp_path, path)
    except BaseException:
        if os.path.exists(tmp_path):
            os.unlink(tmp_path)
        raise
    _fsync_dir(directory)


def atomic_torch_save(obj: Any, path: str) -> None:
    """``torch.save(obj, path)`` that never leaves a truncated ``path`` behind (see module docstring)."""
    import torch

    def save(tmp_path: str) -> None:
        with open(tmp_path, 'wb') as handle:
            torch.save(obj, handle)

    atomic_write(path, save)


def remove_stale_partials(directory: str) -> List[str]:
    """Delete ``*.partial`` files left in ``directory`` by a crashed save; returns the removed paths."""
    removed = sorted(glob.glob(os.path.join(glob.escape(directory), f'.*{PARTIAL_SUFFIX}')))
    for path in removed:
        try:
            os.unlink(path)
        except FileNotFoundError:  # another rank removed it first
            pass
    return removed
