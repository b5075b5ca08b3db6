"""Helpers shared by the tests (importable as ``helpers``: ``tests/conftest.py`` puts ``tests/`` on the path).

* :data:`REPO`: the repository root;
* :mod:`helpers.scripts`: load a file of ``scripts/`` or ``tools/`` as a module;
* :mod:`helpers.layouts`: miniature replicas of the published dataset layouts;
* :mod:`helpers.raised`: the message of an expected exception;
* :mod:`helpers.authors_fixture`: the tiny authors' checkpoint in ``tests/fixtures/``.
"""

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / 'tests' / 'fixtures'
