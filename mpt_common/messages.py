"""How error and log messages show a long list: the first few items, then how many more."""

from __future__ import annotations

from typing import Iterable


def preview(items: Iterable[str], show: int = 5) -> str:
    """``'a, b, c (+2 more)'``: the first ``show`` items joined by commas and the count of the rest."""
    items = list(items)
    more = f' (+{len(items) - show} more)' if len(items) > show else ''
    return ', '.join(items[:show]) + more
