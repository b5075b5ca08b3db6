"""Option files are data, not code: the one YAML loader for every BasicSR option file the plugin reads.

BasicSR 1.4.2 loads option files with PyYAML's full ``Loader`` (``basicsr.utils.options.ordered_yaml``), which
builds arbitrary Python objects: ``evil: !!python/object/apply:os.system ["..."]`` runs a command while the
file is parsed. :class:`OptionLoader` is PyYAML's *safe* loader (C-accelerated when available) with what option
files need (key order as ``OrderedDict``, ``!!float``/``!!int``/``!!str``, anchors and aliases) and nothing
else; any ``!!python/...`` tag raises :class:`UnsafeOptionError` naming the file, the line and the tag, before a
single object is built. :mod:`mpt_plugin.patches` installs it as ``ordered_yaml`` in BasicSR, so
``parse_options`` (``mpt-train``, ``mpt-test``, BasicSR's own ``train.py``/``test.py``) uses it too.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from typing import Any, Tuple

import yaml

try:  # libyaml's parser when PyYAML was built with it (BasicSR prefers it as well)
    _SafeBase = yaml.CSafeLoader
    _Dumper = yaml.CDumper
except AttributeError:  # pragma: no cover - PyYAML without libyaml
    _SafeBase = yaml.SafeLoader
    _Dumper = yaml.Dumper

PYTHON_TAG_PREFIX = 'tag:yaml.org,2002:python/'


class UnsafeOptionError(yaml.YAMLError, ValueError):
    """An option file asks YAML to build a Python object (a ``!!python/...`` tag)."""


class OptionLoader(_SafeBase):  # type: ignore[misc, valid-type]
    """Safe YAML loader for option files: mappings become ``OrderedDict``; ``!!python/...`` tags are refused."""


def _mapping(loader: OptionLoader, node: yaml.MappingNode) -> OrderedDict[Any, Any]:
    loader.flatten_mapping(node)  # merge keys (<<: *anchor)
    return OrderedDict(loader.construct_pairs(node, deep=True))


def _refuse_python_tag(loader: OptionLoader, suffix: str, node: yaml.Node) -> None:
    mark = node.start_mark
    source = getattr(loader, 'option_source', None) or mark.name
    raise UnsafeOptionError(
        f'{source}, line {mark.line + 1}: refused YAML tag !!python/{suffix}. Option files are data: '
        'tags that build Python objects or run code are not allowed. Remove the tag (write the plain value).')


OptionLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)
OptionLoader.add_multi_constructor(PYTHON_TAG_PREFIX, _refuse_python_tag)


def ordered_yaml() -> Tuple[type, type]:
    """Drop-in for ``basicsr.utils.options.ordered_yaml``: (safe :class:`OptionLoader`, BasicSR's dumper)."""
    _Dumper.add_representer(OrderedDict, lambda dumper, data: dumper.represent_dict(data.items()))
    return OptionLoader, _Dumper


def parse_option_text(text: str, source: str = '<option text>') -> Any:
    """Parse YAML option text with :class:`OptionLoader` (``source`` names it in errors)."""
    loader = OptionLoader(text)
    loader.option_source = source
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def load_options(path: str) -> Any:
    """Read the option file ``path`` safely (see module docstring); errors name the file."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f'Option file {path!r} does not exist.')
    with open(path, encoding='utf-8') as handle:
        try:
            return yaml.load(handle, Loader=OptionLoader)
        except UnsafeOptionError:
            raise
        except yaml.YAMLError as err:
            raise yaml.YAMLError(f'Option file {path!r} is not valid YAML: {err}') from err
