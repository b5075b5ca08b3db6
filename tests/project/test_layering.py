"""The packages are layered: each imports only the packages below it, the BasicSR glue is the top, no cycles.

Every ``import`` counts, also those inside functions (a lazy import is still a dependency). The layers, from the
bottom: ``mpt_common`` (imports no project package); the network, losses, data and metrics; the model (training);
deployment; the BasicSR glue ``mpt_plugin`` (training commands such as ``mpt-finetune`` use deployment's starter
models), which reads the lower packages through BasicSR's registries and imports none of the network, loss, model
and metric packages.
"""

import ast
from pathlib import Path
from typing import Dict, List, Set

import pytest

from helpers import REPO

# package -> the project packages it may import
ALLOWED: Dict[str, Set[str]] = {
    'mpt_common': set(),
    'mpt_arch': {'mpt_common'},
    'mpt_losses': {'mpt_common'},
    'mpt_data': {'mpt_common'},
    'mpt_metrics': {'mpt_common'},
    'mpt_models': {'mpt_common', 'mpt_losses'},
    'mpt_deploy': {'mpt_common', 'mpt_arch', 'mpt_data'},
    'mpt_plugin': {'mpt_common', 'mpt_data', 'mpt_deploy'},
}
PACKAGES = sorted(ALLOWED)


def imports_of(path: Path) -> List[str]:
    """Absolute module names ``path`` imports anywhere in the file (relative imports resolved)."""
    package = '.'.join(path.relative_to(REPO).with_suffix('').parts[:-1])
    names = []
    for node in ast.walk(ast.parse(path.read_text(encoding='utf-8'))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ''
            if node.level:
                parts = package.split('.')[:len(package.split('.')) - node.level + 1]
                base = '.'.join(parts + ([base] if base else []))
            names += [f'{base}.{alias.name}' for alias in node.names] + [base]
    return names


def module_graph(package: str) -> Dict[str, Set[str]]:
    """``{module: the modules of the same package it imports}`` (``pkg.mod`` names, ``__init__`` as ``pkg``)."""
    modules = {}
    for path in sorted((REPO / package).glob('*.py')):
        name = package if path.stem == '__init__' else f'{package}.{path.stem}'
        modules[name] = path
    graph = {}
    for name, path in modules.items():
        graph[name] = {m for imported in imports_of(path) for m in modules
                       if m != package and (imported == m or imported.startswith(m + '.')) and m != name}
    return graph


def cycles(graph: Dict[str, Set[str]]) -> List[List[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in graph.get(node, ()):
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = []
            while True:
                item = stack.pop()
                on_stack.discard(item)
                component.append(item)
                if item == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    return found


@pytest.mark.parametrize('package', PACKAGES)
def test_package_imports_only_lower_layers(package):
    wrong = []
    for path in sorted((REPO / package).glob('*.py')):
        for name in imports_of(path):
            root = name.split('.')[0]
            if root in ALLOWED and root != package and root not in ALLOWED[package]:
                wrong.append(f'{path.relative_to(REPO)} imports {name}')
    assert not wrong, '\n'.join(wrong)


def test_no_lower_package_imports_the_basicsr_glue():
    assert all('mpt_plugin' not in allowed for package, allowed in ALLOWED.items() if package != 'mpt_plugin')


@pytest.mark.parametrize('package', PACKAGES)
def test_no_import_cycles_inside_a_package(package):
    assert cycles(module_graph(package)) == []


def test_the_checks_see_a_cycle_and_a_forbidden_import(tmp_path):
    """The graph and the cycle finder would catch the structure this test file forbids."""
    assert cycles({'a': {'b'}, 'b': {'c'}, 'c': {'a'}, 'd': {'a'}}) == [['a', 'b', 'c']]
    assert cycles({'a': {'b'}, 'b': set()}) == []
    graph = module_graph('mpt_deploy')
    assert 'mpt_deploy.model_loading' in graph['mpt_deploy.deblur']  # the command uses the loading library
    assert 'mpt_deploy.deblur' not in graph['mpt_deploy.starter_models']  # the cycle this layout removed
    names = imports_of(REPO / 'mpt_data' / 'bbbc006_dataset.py')
    assert 'mpt_data.plugin_dataset.PluginDataset' in names and 'basicsr.utils.registry' in names
