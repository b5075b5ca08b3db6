"""pytest plugin for ``tools/mutation_test.py``: a mutant's tests run fastest first.

mutmut passes each mutant the tests that execute the mutated function and stops at the first failure
(``-x``), but pytest runs them in file order, so a mutant killed only by a cheap test may first sit through
the slow ones. This plugin sorts the collected tests by the durations mutmut measured in its stats run
(``mutants/mutmut-stats.json``); tests it has no duration for keep their order, first.
"""

from __future__ import annotations

import json
import os.path as osp
from typing import Dict, List

STATS = osp.join('mutants', 'mutmut-stats.json')


def _durations() -> Dict[str, float]:
    if not osp.isfile(STATS):
        return {}
    with open(STATS, encoding='utf-8') as fin:
        measured = json.load(fin).get('duration_by_test', {})
    return {name.removeprefix('mutants/'): float(seconds) for name, seconds in measured.items()}


def pytest_collection_modifyitems(session, config, items: List) -> None:  # noqa: ARG001 (pytest hook signature)
    durations = _durations()
    if durations:
        items.sort(key=lambda item: durations.get(item.nodeid.removeprefix('mutants/'), 0.0))
