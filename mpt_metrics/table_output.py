"""Shared plumbing of the evaluation scripts and benchmarks: ``NAME=PATH`` arguments, table files, and measured
tables written into a docs page with the date, machine, torch version and command that produced them."""

from __future__ import annotations

import argparse
import csv
import os
import sys
import time
from pathlib import Path
from typing import Callable, Iterable, Optional, Sequence, Tuple


def name_path_argument(option: str, what: str) -> Callable[[str], Tuple[str, Path]]:
    """An argparse ``type`` that splits ``NAME=PATH`` (the error names ``option`` and what PATH should be)."""

    def parse(text: str) -> Tuple[str, Path]:
        if '=' not in text:
            raise argparse.ArgumentTypeError(f'{option} needs NAME={what}, got {text!r}')
        name, path = text.split('=', 1)
        return name, Path(path)

    return parse


def write_table(out: Optional[Path], markdown: str, header: Sequence[str], rows: Iterable[Sequence]) -> None:
    """Print ``markdown``; with ``out``, also write ``out.md`` and ``out.csv`` (``header`` then ``rows``)."""
    print(markdown, end='')
    if out is None:
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix('.md').write_text(markdown)
    with open(out.with_suffix('.csv'), 'w', newline='') as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)


MARK_BEGIN, MARK_END = '<!-- benchmark:begin -->', '<!-- benchmark:end -->'


def machine_description(env: dict) -> str:
    """CPU model and core count (or the GPU), for the line under a published table."""
    model = env['cpu']
    try:
        with open('/proc/cpuinfo', encoding='utf-8') as handle:
            model = next((line.split(':', 1)[1].strip() for line in handle if line.startswith('model name')), model)
    except OSError:
        pass
    text = f'{os.cpu_count()} CPU cores ({model})'
    return f"{env['gpu']}, {text}" if 'gpu' in env else text


def write_markdown(path: str, report: list, notes: list, env: dict, argv, script: str = '-m tools.benchmark',
                   marks: tuple = (MARK_BEGIN, MARK_END)) -> None:
    """Write the tables with the date, machine, torch version and command under them into ``path``: between the
    markers when the file has them (a docs page that includes the table), else as a new file; an existing file
    without the markers is refused rather than overwritten. ``script`` and ``marks`` serve the other benchmarks."""
    begin, end = marks
    command = f'python {script} ' + ' '.join(sys.argv[1:] if argv is None else argv)
    stamp = time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())
    block = '\n\n'.join([*report, f'Measured {stamp} on {machine_description(env)}, torch {env["torch"]}, with '
                                    f'`{command}`.', '\n'.join(f'- {note}' for note in notes)])
    block = f'{begin}\n{block}\n{end}'
    if os.path.exists(path):
        with open(path, encoding='utf-8') as handle:
            text = handle.read()
        if begin not in text or end not in text:
            raise SystemExit(f'benchmark: {path!r} exists and has no {begin} ... {end} block; '
                             'give a new file or add the markers where the table belongs.')
        head, rest = text.split(begin, 1)
        text = head + block + rest.split(end, 1)[1]
    else:
        text = block + '\n'
    with open(path, 'w', encoding='utf-8') as handle:
        handle.write(text)
    print(f'tables written to {path}', file=sys.stderr)
