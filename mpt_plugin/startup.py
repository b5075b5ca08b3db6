"""Start-up of a run, before BasicSR touches anything: the option file read and checked as data, ``--force_yml``
applied as data, the experiment folder locked against a second run.

Called by the patched ``parse_options`` (:mod:`mpt_plugin.patches`), so ``mpt-train``/``mpt-test`` and BasicSR's own
``train.py``/``test.py`` behave alike:

* :func:`prepare_option_file` reads ``-opt`` with the safe loader (size, encoding, alias bombs, ``!!python`` tags,
  a mapping at the top: :mod:`mpt_common.option_file`), applies each ``--force_yml a:b=value`` with the value parsed
  as YAML *data* (BasicSR 1.4.2 builds Python source from the key and ``eval``-s list values), runs every option
  check (:mod:`mpt_common.option_checks`; numbers written as text are coerced with a note) and, when anything
  changed, hands BasicSR a merged copy of the file. Any problem ends the run with exit status 2 and the message,
  no traceback, like ``argparse``.
* :func:`lock_experiment` takes an exclusive ``flock`` on ``experiments/.<name>.lock`` (pid, host and start time
  written into it) before BasicSR creates or renames ``experiments/<name>``. A second run with the same name is
  refused while the first runs; the lock dies with its process, so ``--auto_resume`` of a finished or killed run
  (or a stale lock file) just works.
"""

from __future__ import annotations

import argparse
import copy
import os
import socket
import sys
import tempfile
import time
from typing import Any, Dict, List, Optional, Tuple

_HELD: Dict[str, int] = {}  # lock file -> descriptor, held until the process exits


class ExperimentInUseError(RuntimeError):
    """Another live process trains into the same experiment folder."""


def exit_with_error(message: str) -> None:
    """Print ``<program>: error: message`` to stderr and exit with status 2 (an option problem, like argparse)."""
    prog = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else 'train'
    print(f'{prog}: error: {message}', file=sys.stderr, flush=True)
    raise SystemExit(2)


def apply_force_yml(opt: Dict[str, Any], entries: Optional[List[str]]) -> List[str]:
    """Apply ``--force_yml key:sub=value`` entries to ``opt``; values are YAML data. Returns the applied keys."""
    from mpt_common.option_checks import OptionError
    from mpt_common.option_file import parse_option_text

    applied = []
    for entry in entries or ():
        if '=' not in entry:
            raise OptionError(f'--force_yml {entry!r}: expected KEY:SUBKEY=VALUE, e.g. train:total_iter=1000')
        keys, text = (part.strip() for part in entry.split('=', 1))
        path = [k.strip() for k in keys.split(':')]
        node = opt
        for depth, key in enumerate(path[:-1]):
            if not isinstance(node, dict) or key not in node or not isinstance(node[key], dict):
                raise OptionError(f'--force_yml {entry!r}: {":".join(path[:depth + 1])!r} is not a section of the '
                                  'option file (--force_yml changes existing sections; it does not create them)')
            node = node[key]
        node[path[-1]] = parse_option_text(text, f'--force_yml {entry!r}')
        applied.append(':'.join(path))
    return applied


def prepare_option_file(is_train: bool) -> Tuple[Optional[str], Optional[str]]:
    """Load and check the ``-opt`` file of ``sys.argv`` (exit 2 on any problem); returns (original path, merged copy
    or None). ``sys.argv`` is rewritten to point BasicSR at the merged copy, without ``--force_yml``."""
    import yaml

    from mpt_common.option_checks import OptionError, check_options
    from mpt_common.option_file import OptionFileError, UnsafeOptionError, dump_options, load_option_mapping

    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument('-opt')
    pre.add_argument('--force_yml', nargs='+', default=None)
    known, _ = pre.parse_known_args(sys.argv[1:])
    if not known.opt:
        return None, None  # BasicSR's own parser reports the missing -opt
    try:
        opt = load_option_mapping(known.opt)
        loaded = copy.deepcopy(opt)
        apply_force_yml(opt, known.force_yml)
        notes = check_options(opt, is_train=is_train, source=f'Option file {known.opt!r}')
    except (OptionError, OptionFileError, UnsafeOptionError, yaml.YAMLError, FileNotFoundError) as err:
        exit_with_error(str(err))
    for note in notes:
        print(f'note: {note}', file=sys.stderr, flush=True)
    argv = _without_force_yml(sys.argv)
    if opt == loaded:
        sys.argv[:] = argv
        return known.opt, None
    folder = tempfile.mkdtemp(prefix='mpt_options_')
    merged = os.path.join(folder, os.path.basename(known.opt))
    with open(merged, 'w', encoding='utf-8') as handle:
        dump_options(opt, handle)
    sys.argv[:] = [merged if (i > 0 and argv[i - 1] == '-opt') else a for i, a in enumerate(argv)]
    return known.opt, merged


def _without_force_yml(argv: List[str]) -> List[str]:
    out, skipping = [], False
    for arg in argv:
        if arg == '--force_yml':
            skipping = True
            continue
        if skipping and not arg.startswith('-'):
            continue
        skipping = False
        out.append(arg)
    return out


def lock_experiment(opt: Dict[str, Any]) -> Optional[str]:
    """Hold an exclusive lock for ``experiments/<name>`` (training, rank 0); refuse when another process holds it.

    Returns the lock file (None when not locking). The lock is released when the process exits, however it ends.
    """
    if not opt.get('is_train') or opt.get('rank', 0) != 0:
        return None
    import fcntl

    root = opt['path']['experiments_root']
    parent = os.path.dirname(os.path.abspath(root))
    os.makedirs(parent, exist_ok=True)
    lock_path = os.path.join(parent, f'.{os.path.basename(root)}.lock')
    if lock_path in _HELD:  # this process already runs it (a second run in the same process)
        return lock_path
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        holder = os.read(fd, 400).decode('utf-8', 'replace').strip() or 'another process'
        os.close(fd)
        raise ExperimentInUseError(
            f"experiment {opt['name']!r} is in use by a run that is still going ({holder}); its folder {root!r} "
            'is left alone. Give this run another name (name: in the option file, or --force_yml name=<new name>), '
            'or wait until that run ends (then --auto_resume continues it).') from None
    os.ftruncate(fd, 0)
    os.write(fd, f'pid {os.getpid()} on {socket.gethostname()}, since '
                 f'{time.strftime("%Y-%m-%d %H:%M:%S")}\n'.encode())
    _HELD[lock_path] = fd
    return lock_path
