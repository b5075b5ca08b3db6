"""One LMDB environment per folder per process, shared by every dataset, FileClient and worker that reads it.

py-lmdb refuses to open one folder twice in a process (``lmdb.Error: The environment '...' is already open in
this process``), which BasicSR's ``LmdbBackend`` does as soon as two datasets (training and validation, or two
validation sets) read the same ``.lmdb``: each builds its own ``FileClient``. :func:`open_env` keeps the
environments of this process in a dictionary keyed by the folder's real path and hands out the same one.

:class:`SharedLmdbBackend` is BasicSR's ``LmdbBackend`` with its ``lmdb.open`` replaced by :func:`open_env`;
:func:`install` registers it as ``FileClient``'s ``lmdb`` backend (done by :mod:`mpt_plugin.patches` and by the
plugin's datasets), so BasicSR's own datasets share environments too.

DataLoader workers: a forked worker inherits the parent's dictionary and uses the inherited read-only environment
(opened with ``lock=False``, reads through the shared memory map); py-lmdb would refuse to reopen it there anyway.
A worker started with ``spawn`` opens its own on first use. The first opener's flags (``readonly``, ``lock``,
``readahead``) apply to every later user of the same folder.
"""

from __future__ import annotations

import os
import threading
from typing import Any, Dict, List, Union

from basicsr.utils.file_client import FileClient, LmdbBackend

_ENVS: Dict[str, Any] = {}
_LOCK = threading.Lock()


def open_env(path: str, readonly: bool = True, lock: bool = False, readahead: bool = False, **kwargs: Any):
    """The process's ``lmdb.Environment`` for folder ``path`` (opened on first use, then shared)."""
    import lmdb

    key = os.path.realpath(str(path))
    with _LOCK:
        env = _ENVS.get(key)
        if env is None:
            env = lmdb.open(str(path), readonly=readonly, lock=lock, readahead=readahead, **kwargs)
            _ENVS[key] = env
        return env


def open_paths() -> List[str]:
    """Real paths of the environments this process holds (for tests and diagnostics)."""
    return sorted(_ENVS)


class SharedLmdbBackend(LmdbBackend):
    """BasicSR's ``LmdbBackend`` whose environments come from :func:`open_env` (same arguments, same ``get``)."""

    def __init__(self, db_paths: Union[str, List[str]], client_keys: Union[str, List[str]] = 'default',
                 readonly: bool = True, lock: bool = False, readahead: bool = False, **kwargs: Any) -> None:
        if isinstance(client_keys, str):
            client_keys = [client_keys]
        self.db_paths = [str(v) for v in db_paths] if isinstance(db_paths, (list, tuple)) else [str(db_paths)]
        if len(client_keys) != len(self.db_paths):
            raise ValueError(f'client_keys and db_paths should have the same length, but received '
                             f'{len(client_keys)} and {len(self.db_paths)}.')
        self._client = {client: open_env(path, readonly=readonly, lock=lock, readahead=readahead, **kwargs)
                        for client, path in zip(client_keys, self.db_paths)}


def install() -> None:
    """Make ``FileClient('lmdb', ...)`` use :class:`SharedLmdbBackend` (idempotent)."""
    FileClient._backends['lmdb'] = SharedLmdbBackend
