"""Console entry points ``mpt-train`` / ``mpt-test`` (also ``scripts/train.py`` / ``scripts/test.py``).

They take BasicSR's arguments (``-opt``, ``--launcher``, ``--auto_resume``, ``--debug``, ``--local_rank``,
``--force_yml``; ``--local-rank=N`` is accepted too), apply :mod:`mpt_plugin.patches`, register the plugin
packages and run BasicSR's own ``train_pipeline`` / ``test_pipeline`` with ``experiments/`` and ``results/``
under the *current directory* (BasicSR's scripts root them two folders above the script).
"""

from __future__ import annotations

import os
import sys
from typing import List, Optional

import mpt_common.basicsr_compat  # noqa: F401  (before any basicsr import)


def _prepare(argv: Optional[List[str]], prog: str) -> None:
    from mpt_common.malloc_reuse import keep_freed_memory
    from mpt_plugin import autoload, patches

    keep_freed_memory()  # reuse freed tensor memory instead of paging it in again (MPT_KEEP_FREED_MEMORY=0: off)

    if argv is not None:
        sys.argv[:] = [prog, *argv]
    sys.argv[:] = patches.normalize_argv(sys.argv)
    patches.apply()
    autoload.import_plugins()


def train_main(argv: Optional[List[str]] = None) -> None:
    """Train with BasicSR's ``train_pipeline`` rooted at the current directory."""
    _prepare(argv, 'mpt-train')
    from basicsr.train import train_pipeline

    from mpt_common.training_stop import TrainingStopped

    try:
        train_pipeline(os.getcwd())
    except TrainingStopped as err:  # a full disk, a non-finite loss: the message says what was kept
        print(f'mpt-train: error: {err}', file=sys.stderr, flush=True)
        raise SystemExit(1) from None


def test_main(argv: Optional[List[str]] = None) -> None:
    """Test with BasicSR's ``test_pipeline`` rooted at the current directory."""
    _prepare(argv, 'mpt-test')
    from basicsr.test import test_pipeline

    test_pipeline(os.getcwd())
