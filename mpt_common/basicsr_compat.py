"""Compatibility shims that let BasicSR 1.4.2 (the PyPI release) import on current torchvision.

BasicSR 1.4.2's ``basicsr/data/degradations.py`` does
``from torchvision.transforms.functional_tensor import rgb_to_grayscale``; that private module was
removed in torchvision 0.17 (the function now lives in ``torchvision.transforms.functional``), so
``import basicsr`` fails. :func:`install` registers a finder *at the end* of ``sys.meta_path`` that
serves the missing module as a thin alias of ``torchvision.transforms.functional``. Being last, it is
only consulted when torchvision itself no longer provides the module, so old torchvision is untouched.

Installing the finder imports neither torch nor torchvision; the alias is built on first import.
Every plugin package imports this module before it imports anything from ``basicsr``.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import types

FUNCTIONAL_TENSOR = 'torchvision.transforms.functional_tensor'
_FUNCTIONAL = 'torchvision.transforms.functional'


class _FunctionalTensorAlias(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Serves ``torchvision.transforms.functional_tensor`` when torchvision lacks it."""

    def find_spec(self, fullname: str, path=None, target=None):  # noqa: ANN001 - importlib protocol
        if fullname != FUNCTIONAL_TENSOR:
            return None
        return importlib.machinery.ModuleSpec(fullname, self)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        module = types.ModuleType(spec.name, f'alias of {_FUNCTIONAL} (added by mpt_common.basicsr_compat)')
        functional = importlib.import_module(_FUNCTIONAL)
        module.__dict__.update({k: v for k, v in vars(functional).items() if not k.startswith('__')})
        return module

    def exec_module(self, module: types.ModuleType) -> None:
        return None


def install() -> None:
    """Append the alias finder to ``sys.meta_path`` once (idempotent, imports nothing heavy)."""
    if not any(isinstance(finder, _FunctionalTensorAlias) for finder in sys.meta_path):
        sys.meta_path.append(_FunctionalTensorAlias())


install()
