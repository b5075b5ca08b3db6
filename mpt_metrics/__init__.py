"""Metrics registered in BasicSR's METRIC_REGISTRY, and downstream-task measures.

Every module in this folder is imported here (as BasicSR does for its own folders), so adding a file
registers its metrics without editing this one.
"""

import importlib
from pathlib import Path

import mpt_common.basicsr_compat  # noqa: F401  (before any basicsr import)

for _path in sorted(Path(__file__).parent.glob('*.py')):
    if _path.stem != '__init__':
        importlib.import_module(f'{__name__}.{_path.stem}')
