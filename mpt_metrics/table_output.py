"""Shared command-line plumbing of the evaluation scripts: ``NAME=PATH`` arguments and table files."""

from __future__ import annotations

import argparse
import csv
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
