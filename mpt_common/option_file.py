"""Option files are data, not code: the one YAML loader for every BasicSR option file the plugin reads.

BasicSR 1.4.2 loads option files with PyYAML's full ``Loader`` (``basicsr.utils.options.ordered_yaml``), which
builds arbitrary Python objects: ``evil: !!python/object/apply:os.system ["..."]`` runs a command while the
file is parsed. :class:`OptionLoader` is PyYAML's *safe* loader (C-accelerated when available) with what option
files need (key order as ``OrderedDict``, ``!!float``/``!!int``/``!!str``, anchors and aliases) and nothing
else; any ``!!python/...`` tag raises :class:`UnsafeOptionError` naming the file, the line and the tag, before a
single object is built. :mod:`mpt_plugin.patches` installs it as ``ordered_yaml`` in BasicSR, so
``parse_options`` (``mpt-train``, ``mpt-test``, BasicSR's own ``train.py``/``test.py``) uses it too.

Bounds: a document whose aliases would expand past :data:`MAX_NODES` nodes (a "billion laughs" alias bomb: a few
lines that BasicSR's ``dict2str`` or a deep copy would blow up into gigabytes) is refused with the line where the
expansion explodes, and :func:`load_options` refuses files above :data:`MAX_BYTES`, files that are not UTF-8 text,
and files whose top level is not a mapping (empty, a list, a scalar), each with the file named.
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
MAX_NODES = 100_000  # YAML nodes of the document with every alias expanded
MAX_BYTES = 1 << 20  # an option file is a few kB; anything above 1 MiB is not one


class UnsafeOptionError(yaml.YAMLError, ValueError):
    """An option file asks YAML to build a Python object (a ``!!python/...`` tag)."""


class OptionFileError(ValueError):
    """An option file cannot be used as one (size, encoding, not a mapping); the message names the file."""


class OptionLoader(_SafeBase):  # type: ignore[misc, valid-type]
    """Safe YAML loader for option files: mappings become ``OrderedDict``; ``!!python/...`` tags are refused;
    documents that aliases expand past :data:`MAX_NODES` nodes are refused before anything is built."""

    def get_single_node(self):  # noqa: ANN201 - PyYAML API
        node = super().get_single_node()
        if node is not None:
            check_expansion(node, getattr(self, 'option_source', None))
        return node


def _expanded_sizes(root: yaml.Node) -> dict:
    """``{id(node): node count with every alias expanded}`` for every node under ``root`` (shared nodes once)."""
    sizes: dict = {}
    stack = [(root, False)]
    while stack:
        node, done = stack.pop()
        if id(node) in sizes:
            continue
        children = ([v for pair in node.value for v in pair] if isinstance(node, yaml.MappingNode)
                    else list(node.value) if isinstance(node, yaml.SequenceNode) else [])
        if done:
            sizes[id(node)] = 1 + sum(sizes.get(id(c), 0) for c in children)
        else:
            stack.append((node, True))
            stack.extend((c, False) for c in children if id(c) not in sizes)
    return sizes


def check_expansion(root: yaml.Node, source: Any = None, limit: int = MAX_NODES) -> None:
    """Raise :class:`UnsafeOptionError` when ``root`` expands past ``limit`` nodes, naming the line where it does."""
    sizes = _expanded_sizes(root)
    total = sizes[id(root)]
    if total <= limit:
        return
    node = root
    while True:  # descend into the child that alone exceeds the limit: where the aliases multiply
        children = ([v for pair in node.value for v in pair] if isinstance(node, yaml.MappingNode)
                    else list(node.value) if isinstance(node, yaml.SequenceNode) else [])
        big = [c for c in children if sizes.get(id(c), 0) > limit]
        if not big:
            break
        node = big[0]
    mark = node.start_mark
    raise UnsafeOptionError(
        f'{source or mark.name}, line {mark.line + 1}: the document expands to {total:,} YAML nodes through its '
        f'aliases (*anchor references), more than the {limit:,} an option file may have; this looks like an alias '
        '"bomb". Write the values out, or use fewer nested aliases.')


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


class _PlainDumper(_Dumper):  # type: ignore[misc, valid-type]
    """Writes shared values out in full (no &anchors / *aliases): an option file is read by people."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def dump_options(opt: Any, handle: Any) -> None:
    """Write options as YAML that :class:`OptionLoader` reads back unchanged (key order kept, no aliases)."""
    _PlainDumper.add_representer(OrderedDict, lambda dumper, data: dumper.represent_dict(data.items()))
    yaml.dump(opt, handle, Dumper=_PlainDumper, sort_keys=False)


def parse_option_text(text: str, source: str = '<option text>') -> Any:
    """Parse YAML option text with :class:`OptionLoader` (``source`` names it in errors)."""
    loader = OptionLoader(text)
    loader.option_source = source
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def read_option_text(path: str) -> str:
    """The text of option file ``path``: refused when missing, above :data:`MAX_BYTES` or not UTF-8."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f'Option file {path!r} does not exist.')
    size = os.path.getsize(path)
    if size > MAX_BYTES:
        raise OptionFileError(f'Option file {path!r} is {size:,} bytes; an option file is a few kB of YAML and '
                              f'may have at most {MAX_BYTES:,} bytes. Is it the right file?')
    with open(path, 'rb') as handle:
        raw = handle.read()
    try:
        return raw.decode('utf-8')
    except UnicodeDecodeError as err:
        bom = ' (it starts with a UTF-16 byte-order mark)' if raw[:2] in (b'\xff\xfe', b'\xfe\xff') else ''
        raise OptionFileError(f'Option file {path!r} is not UTF-8 text{bom}: byte {err.start} is not valid '
                              'UTF-8. Save it as UTF-8.') from None


def load_options(path: str) -> Any:
    """Read the option file ``path`` safely (see module docstring); errors name the file."""
    text = read_option_text(path)
    loader = OptionLoader(text)
    loader.option_source = path
    try:
        return loader.get_single_data()
    except UnsafeOptionError:
        raise
    except yaml.YAMLError as err:
        raise yaml.YAMLError(f'Option file {path!r} is not valid YAML: {err}') from err
    finally:
        loader.dispose()


def load_option_mapping(path: str) -> Any:
    """:func:`load_options`, refusing a file whose top level is not a mapping of options (empty, list, scalar)."""
    opt = load_options(path)
    if not isinstance(opt, dict):
        what = 'empty' if opt is None else f'a YAML {type(opt).__name__}'
        raise OptionFileError(f'Option file {path!r} is {what}, not a mapping of options (name: ..., '
                              'network_g: ..., ...).')
    return opt
