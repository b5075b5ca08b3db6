"""Loads a file of ``scripts/`` (user commands) or ``tools/`` (maintainer tooling) as a module, so tests can call
its functions and ``main(argv)``."""

import importlib.util
from types import ModuleType

from helpers import REPO


def load_script(name: str) -> ModuleType:
    """Execute ``scripts/<name>.py`` (else ``tools/<name>.py``, as ``tools.<name>``) as a fresh module."""
    path = REPO / 'scripts' / f'{name}.py'
    module_name = f'{name}_script'
    if not path.is_file():
        path, module_name = REPO / 'tools' / f'{name}.py', f'tools.{name}'
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
