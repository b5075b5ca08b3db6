"""Loads a file of ``scripts/`` as a module, so tests can call its functions and ``main(argv)``."""

import importlib.util
from pathlib import Path
from types import ModuleType

SCRIPTS = Path(__file__).resolve().parents[1] / 'scripts'


def load_script(name: str) -> ModuleType:
    """Execute ``scripts/<name>.py`` as a fresh module named ``<name>_script``."""
    spec = importlib.util.spec_from_file_location(f'{name}_script', SCRIPTS / f'{name}.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
