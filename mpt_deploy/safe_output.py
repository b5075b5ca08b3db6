"""Output files that never overwrite an input and never appear half-written.

* :func:`plan_outputs` maps each input to ``<output folder>/<file name>`` and refuses (before any work) when an
  output resolves (``os.path.realpath``, so symlinked folders and files count) to an input file, or is the same
  file through a hard link, or when two inputs would write the same output.
* :func:`write_output` writes through :func:`mpt_common.atomic.atomic_write` (a temporary file in the output
  folder, fsync-ed, renamed over the final name): a failure (disk full, permission, a crash) leaves no partial
  file under the final name, and the error names the file and the cause.
"""

from __future__ import annotations

import errno
import os
from typing import Callable, List, Sequence, Tuple

from mpt_common.atomic import atomic_write

CAUSES = {errno.ENOSPC: 'disk full (no space left on device)', errno.EDQUOT: 'disk quota exceeded',
          errno.EACCES: 'permission denied', errno.EPERM: 'operation not permitted',
          errno.EROFS: 'read-only file system'}


class OutputError(OSError):
    """An output cannot be written or would overwrite an input; the message names the file and the cause."""


def plan_outputs(inputs: Sequence[str], out_dir: str) -> List[Tuple[str, str]]:
    """``(input, output)`` pairs; raises :class:`OutputError` when an output would be (or replace) an input."""
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise OutputError(f'Output {out_dir!r} exists and is not a folder.')
    real_inputs = {os.path.realpath(p): p for p in inputs}
    pairs, seen = [], {}
    for path in inputs:
        out = os.path.join(out_dir, os.path.basename(path))
        real = os.path.realpath(out)
        if real in real_inputs:
            raise OutputError(f'Output {out!r} resolves to the input file {real_inputs[real]!r} (output folder '
                              f'{out_dir!r} is {os.path.realpath(out_dir)!r}); writing it would destroy the input. '
                              'Choose another output folder.')
        if os.path.exists(out) and any(os.path.samefile(out, p) for p in inputs):
            raise OutputError(f'Output {out!r} is a hard link to an input file; choose another output folder.')
        if real in seen:
            raise OutputError(f'Inputs {seen[real]!r} and {path!r} would both be written to {out!r}.')
        seen[real] = path
        pairs.append((path, out))
    return pairs


def describe(err: OSError) -> str:
    """The cause of an OS error in words (disk full, permission denied, ...)."""
    cause = CAUSES.get(err.errno or -1) or err.strerror or str(err) or type(err).__name__
    return cause


def write_output(final: str, write: Callable[[str], None]) -> None:
    """Atomically write ``final`` by ``write(temporary path)``; an OS error becomes :class:`OutputError` naming it."""
    try:
        os.makedirs(os.path.dirname(os.path.abspath(final)), exist_ok=True)
        atomic_write(final, write)
    except OSError as err:
        raise OutputError(f'Cannot write {final!r}: {describe(err)}') from None
