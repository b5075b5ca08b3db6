"""README.md and docs/: every relative link resolves and every command-line flag they name exists."""

import contextlib
import io
import re
import runpy
import sys
from functools import cache
from pathlib import Path

import pytest

from helpers import REPO

PAGES = [REPO / 'README.md', *sorted((REPO / 'docs').rglob('*.md'))]
LINK = re.compile(r'!?\[[^\]]*\]\(([^)\s]+)\)')
FLAG = re.compile(r'(?<![\w/.-])(--?[A-Za-z][\w-]*)')
# flags of other programs that the pages mention on their own (pip, pytest, torchrun, the launchers)
EXTERNAL_FLAGS = {'-e', '-q', '-m', '-k', '-x', '-c', '--nproc_per_node', '--standalone', '--nnodes', '--local-rank'}


def _code_snippets(text: str):
    """Command-like text of a page: lines of fenced or indented code blocks, and inline code spans."""
    fenced = False
    for line in text.split('\n'):
        if line.lstrip().startswith('```'):
            fenced = not fenced
            continue
        if fenced or line.startswith('    '):
            yield line.strip()
        else:
            yield from re.findall(r'`([^`]+)`', line)


def _help_text(target: str) -> str:
    """``--help`` output of one of the project's commands, run in-process."""
    out, argv = io.StringIO(), sys.argv[:]
    try:
        sys.argv[:] = [target, '--help']
        with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
            if target.endswith('.py'):
                runpy.run_path(str(REPO / target), run_name='__main__')
            elif target.startswith('tools.'):  # run by path: pytest's import hook does not serve run_module here
                runpy.run_path(str(REPO / 'tools' / f'{target[6:]}.py'), run_name='__main__')
            else:
                runpy.run_module(target, run_name='__main__', alter_sys=False)
    finally:
        sys.argv[:] = argv
    return out.getvalue()


COMMANDS = {  # how a page names a command -> what runs it
    'mpt-deblur': 'mpt_deploy.deblur', 'mpt-train': 'scripts/train.py', 'mpt-test': 'scripts/test.py',
    'mpt_plugin.smoke': 'mpt_plugin.smoke', 'basicsr/train.py': 'scripts/train.py',
    'basicsr/test.py': 'scripts/test.py', 'mpt-export-bioimageio': 'mpt_deploy.bioimageio_export',
    'mpt_data.demo_data': 'mpt_data.demo_data', 'mpt-finetune': 'mpt_plugin.finetune',
}
COMMAND = re.compile(r'(scripts/\w+\.py|basicsr/(?:train|test)\.py|mpt-export-bioimageio|mpt-deblur|mpt-finetune'
                     r'|mpt-train|mpt-test'
                     r'|mpt_plugin\.smoke|mpt_data\.demo_data|tools\.\w+)')


@cache
def _flags(target: str) -> frozenset:
    return frozenset(FLAG.findall(_help_text(target)))


def _target(name: str) -> str:
    return COMMANDS.get(name, name)


def test_pages_exist_and_readme_is_short():
    assert (REPO / 'docs').is_dir() and len(PAGES) > 5
    assert len((REPO / 'README.md').read_text().split('\n')) <= 200


def _broken_links(page: Path, text: str) -> list:
    missing = []
    for target in LINK.findall(text):
        if re.match(r'[a-z]+:', target) or target.startswith('#'):
            continue
        if not (page.parent / target.split('#')[0]).exists():
            missing.append(target)
    return missing


def _flag_problems(text: str) -> list:
    """Commands of the project that do not exist, and flags that no command (or not the named one) has."""
    unknown, bare = [], []
    for snippet in _code_snippets(text):
        command = COMMAND.search(snippet)
        if command is None:
            if FLAG.match(snippet):
                bare.append(snippet)
            continue
        script = command.group(1)
        target = _target(script)
        if target.startswith('scripts/') and not (REPO / target).is_file():
            unknown.append(f'{script} (no such script)')
            continue
        if target.startswith('tools.') and not (REPO / 'tools' / f'{target[6:]}.py').is_file():
            unknown.append(f'{script} (no such tool)')
            continue
        rest = re.split(r'\s(?:#|&&|\||;)\s?', snippet[command.end():])[0]
        for flag in FLAG.findall(rest):
            if flag not in _flags(target):
                unknown.append(f'{script} {flag}')
    known = frozenset().union(*(_flags(t) for t in {*COMMANDS.values(), *_all_scripts()}))
    for snippet in bare:
        flag = FLAG.match(snippet).group(1).split('=')[0]
        if flag not in known and flag not in EXTERNAL_FLAGS:
            unknown.append(f'`{snippet}` (no command of the project has {flag})')
    return unknown


@pytest.mark.parametrize('page', PAGES, ids=lambda p: p.name)
def test_relative_links_resolve(page):
    missing = _broken_links(page, page.read_text())
    assert not missing, f'{page.name}: broken links {missing}'


@pytest.mark.parametrize('page', PAGES, ids=lambda p: p.name)
def test_command_line_flags_exist(page):
    unknown = _flag_problems(page.read_text())
    assert not unknown, f'{page.name}: unknown commands or flags {unknown}'


@cache
def _all_scripts() -> tuple:
    """The commands in scripts/ and tools/ (a helper module, such as a pytest plugin, has no ``__main__``)."""
    scripts = [f'scripts/{p.name}' for p in sorted((REPO / 'scripts').glob('*.py'))
               if "if __name__ == '__main__':" in p.read_text()]
    tools = [f'tools.{p.stem}' for p in sorted((REPO / 'tools').glob('*.py'))
             if "if __name__ == '__main__':" in p.read_text()]
    return tuple(scripts + tools)


def test_the_checks_catch_bad_links_flags_and_scripts():
    page = REPO / 'docs' / 'guides' / 'x.md'
    text = ('See [it](nowhere.md) and [ok](../reference/network.md).\n\n    mpt-deblur -i a -o b --no-such-flag 3\n\n'
            'Use `--tile 0`, `--made-up`; run `python scripts/no_such_script.py --x`; `mpt-train -opt f --debug`.\n'
            'Maintainers: `python -m tools.no_such_tool`, `python -m tools.benchmark --no-such-option`.\n')
    assert _broken_links(page, text) == ['nowhere.md']
    assert sorted(_flag_problems(text)) == sorted(['mpt-deblur --no-such-flag',
                                                   '`--made-up` (no command of the project has --made-up)',
                                                   'scripts/no_such_script.py (no such script)',
                                                   'tools.no_such_tool (no such tool)',
                                                   'tools.benchmark --no-such-option'])
