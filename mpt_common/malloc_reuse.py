"""Keep freed CPU tensor memory inside the process (glibc ``mallopt``), so it is reused instead of paged in again.

PyTorch allocates CPU tensors with ``malloc``. glibc serves large blocks with ``mmap`` and hands them back to the
OS on ``free``, so every new full-size activation or gradient is paged in again: zero-filled 4 KiB pages, about
1.6 us each on this project's machine. A CPU training step of the paper's MPT (batch 2, 128x128) takes about 370 k
such page faults, 10 % of its time; after this call, none. It is the CPU counterpart of the caching allocator that
PyTorch uses on CUDA, and does what ``MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=...`` in the environment would.

The cost is that the process keeps its peak heap: freed memory is reused by the process but not returned to the OS
until it exits. It applies to the whole process, so the library never calls it on import; the plugin's entry
points (``mpt-train``, ``mpt-test``, ``mpt-deblur``, ``tools/benchmark.py``) do, unless the environment sets
``MPT_KEEP_FREED_MEMORY=0``. Elsewhere (non-glibc C libraries, other systems) it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
from typing import Optional

ENV_VAR = 'MPT_KEEP_FREED_MEMORY'
_M_TRIM_THRESHOLD = -1  # glibc <malloc.h>
_M_MMAP_MAX = -4
_NEVER_TRIM = 2**31 - 1  # mallopt takes an int: trim only if more than 2 GiB sit free at the top of the heap


def keep_freed_memory(enable: Optional[bool] = None) -> bool:
    """Make glibc's ``malloc`` keep and reuse freed memory for the rest of the process (see the module docstring).

    ``enable=None`` follows ``MPT_KEEP_FREED_MEMORY`` (on unless it is ``0``). Returns whether the setting is now
    in effect; ``False`` where it does not apply (not Linux, or a C library without glibc's ``mallopt``).
    """
    if enable is None:
        enable = os.environ.get(ENV_VAR, '1').strip() != '0'
    if not enable or not sys.platform.startswith('linux'):
        return False
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library('c') or 'libc.so.6').mallopt
    except (OSError, AttributeError):  # no libc found, or one without mallopt (e.g. musl)
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    # serve every block from the heap (no mmap), and do not shrink the heap when blocks are freed
    return mallopt(_M_MMAP_MAX, 0) == 1 and mallopt(_M_TRIM_THRESHOLD, _NEVER_TRIM) == 1
