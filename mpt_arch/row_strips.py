"""Row-strip evaluation of per-pixel / 3x3 stages for inference (no autograd).

Evaluating a chain of per-pixel linears and 3x3 depthwise convs one horizontal strip at a time keeps its
intermediates small enough to stay in cache and to be reused by the allocator, instead of streaming several
full-size maps through memory. A strip reads one extra row above and below (the 3x3 halo), so the result is
the same per pixel as evaluating the whole map at once.
"""

from __future__ import annotations

from typing import Iterator

import torch
from torch import nn

STRIP_BYTES = 16 << 20
"""Target size of the widest float32 intermediate of one strip. Tuned on a 2-core CPU at 256x256: 16 MiB is 7-11 %
faster than 4 MiB (fewer operators per forward; 8-32 MiB are alike, 0.5 MiB is 60 % slower)."""


def use_strips(t: torch.Tensor) -> bool:
    """True for inference (no gradient recorded) without autocast: the strip paths write into buffers of the input's
    dtype, which autocast's casts would not match (they then take the whole-map path)."""
    return not torch.is_grad_enabled() and not torch.is_autocast_enabled(t.device.type)


def strips(height: int, width: int, channels: int, budget: int | None = None) -> Iterator[tuple[int, int]]:
    """``(r0, r1)`` row ranges covering ``0..height`` whose ``(r1 - r0) x width x channels`` float32 block fits
    ``budget`` bytes (``STRIP_BYTES`` by default); at least one row each."""
    rows = group_size(width * channels * 4, budget)
    for r0 in range(0, height, rows):
        yield r0, min(height, r0 + rows)


def group_size(item_bytes: int, budget: int | None = None) -> int:
    """How many items of ``item_bytes`` each fit in ``budget`` bytes (``STRIP_BYTES`` by default); at least one."""
    return max(1, (STRIP_BYTES if budget is None else budget) // max(1, item_bytes))


def halo(r0: int, r1: int, height: int) -> tuple[int, int]:
    """Rows a 3x3 stage needs to produce output rows ``r0..r1``: one more on each side, clipped to the map."""
    return max(0, r0 - 1), min(height, r1 + 1)


def depthwise_rows(t: torch.Tensor, conv: nn.Conv2d, r0: int, r1: int, height: int) -> torch.Tensor:
    """Rows ``r0..r1`` of ``conv`` (3x3, padding 1) applied to a full map of ``height`` rows, given only
    ``t`` = that map's rows ``halo(r0, r1, height)``, channels-last ``(B, rows, W, C)``; returns ``(B, r1-r0, W, C)``.
    The conv pads the strip by one zero row on each side; output rows next to a padding row that is not the map's
    own edge are dropped."""
    if conv.kernel_size != (3, 3) or conv.padding != (1, 1):
        raise ValueError(f'depthwise_rows needs a 3x3 conv with padding 1, got {conv}')
    out = conv(t.permute(0, 3, 1, 2))  # channels-last memory: a row range of it is contiguous
    first = r0 - max(0, r0 - 1)
    return out[:, :, first:first + r1 - r0].permute(0, 2, 3, 1)
