"""Registers this plugin in BasicSR whenever ``basicsr`` is imported, with no code change in BasicSR.

``pip install`` puts ``mpt_basicsr_plugin.pth`` into site-packages (see ``setup.py``); its single line
imports this module at interpreter start-up. :func:`install` then only appends a small finder to
``sys.meta_path`` (torch is *not* imported). The first time anything imports ``basicsr``:

1. the finder installs the torchvision shim (:mod:`mpt_common.basicsr_compat`), so BasicSR 1.4.2 can import;
2. BasicSR's own ``__init__`` runs unchanged;
3. right after it has finished, the plugin packages (:data:`PLUGIN_PACKAGES`) are imported, so
   ``type: MPT`` / ``EFCRLoss`` / the datasets / ``model_type: EFCRModel`` / the metrics resolve from YAML,
   and the CPU / resume / atomic-save patches of :mod:`mpt_plugin.patches` are applied.

A plugin package that fails to import is reported with a :class:`RuntimeWarning` and skipped, so unrelated
BasicSR use keeps working. When ``basicsr`` is first imported *by* a plugin package (``import mpt_arch``),
the packages still being imported are finished by Python itself and the others are imported right away: the
plugin packages import each other only by submodule (``from mpt_losses.reblur import ...``) and never import
this glue package, so none of them can see a half-initialised package.

Set ``MPT_BASICSR_PLUGIN=0`` to switch all of this off (then import the packages explicitly).
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
import types
import warnings
from typing import List, Optional, Sequence

ENV_SWITCH = 'MPT_BASICSR_PLUGIN'
PLUGIN_PACKAGES = ('mpt_arch', 'mpt_losses', 'mpt_data', 'mpt_models', 'mpt_metrics')

def enabled() -> bool:
    """False when the environment variable ``MPT_BASICSR_PLUGIN`` is ``0``, ``false``, ``no`` or ``off``."""
    return os.environ.get(ENV_SWITCH, '1').strip().lower() not in ('0', 'false', 'no', 'off')


def _in_progress(name: str) -> bool:
    """True while module ``name`` is being imported (present in sys.modules, not yet initialised)."""
    module = sys.modules.get(name)
    spec = getattr(module, '__spec__', None)
    return module is not None and bool(getattr(spec, '_initializing', False))


def import_plugins(names: Sequence[str] = PLUGIN_PACKAGES) -> List[str]:
    """Import the plugin packages so they register; warn (do not raise) for any that fails.

    Returns the names that imported. Packages whose import is in progress are left to Python.
    """
    loaded = []
    for name in names:
        if _in_progress(name):
            continue
        try:
            importlib.import_module(name)
        except Exception as err:  # noqa: BLE001 - a broken plugin must not break unrelated BasicSR use
            warnings.warn(f'mpt_plugin: could not import plugin package {name!r} ({type(err).__name__}: {err}); '
                          f'its BasicSR registrations are unavailable. Set {ENV_SWITCH}=0 to disable auto-loading.',
                          RuntimeWarning, stacklevel=2)
        else:
            loaded.append(name)
    return loaded


def after_basicsr_import() -> None:
    """Runs once BasicSR's ``__init__`` has finished: apply the patches, then register the plugin packages."""
    try:
        from mpt_plugin import patches

        patches.apply()
    except Exception as err:  # noqa: BLE001
        warnings.warn(f'mpt_plugin: could not patch BasicSR ({type(err).__name__}: {err}).', RuntimeWarning,
                      stacklevel=2)
    import_plugins()


class _BasicsrLoader(importlib.abc.Loader):
    """Delegates to BasicSR's real loader, then calls :func:`after_basicsr_import`."""

    def __init__(self, loader: importlib.abc.Loader) -> None:
        self.loader = loader

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> Optional[types.ModuleType]:
        return self.loader.create_module(spec)

    def exec_module(self, module: types.ModuleType) -> None:
        self.loader.exec_module(module)
        after_basicsr_import()

    def __getattr__(self, name: str):  # get_resource_reader, get_filename, ... of the real loader
        return getattr(self.loader, name)


class BasicsrImportHook(importlib.abc.MetaPathFinder):
    """One-shot finder: wraps the loader of the top-level ``basicsr`` package, then removes itself."""

    def find_spec(self, fullname: str, path=None, target=None):  # noqa: ANN001 - importlib protocol
        if fullname != 'basicsr':
            return None
        _remove_hook()
        from mpt_common import basicsr_compat as compat

        compat.install()
        spec = importlib.util.find_spec('basicsr')
        if spec is None or spec.loader is None:
            return spec
        spec.loader = _BasicsrLoader(spec.loader)
        return spec


def _remove_hook() -> None:
    sys.meta_path[:] = [finder for finder in sys.meta_path if not isinstance(finder, BasicsrImportHook)]


def install() -> bool:
    """Arm the hook (idempotent). Returns False when switched off; if BasicSR is already imported, register now."""
    if not enabled():
        return False
    if 'basicsr' in sys.modules:
        after_basicsr_import()
        return True
    if not any(isinstance(finder, BasicsrImportHook) for finder in sys.meta_path):
        sys.meta_path.insert(0, BasicsrImportHook())
    return True


install()
