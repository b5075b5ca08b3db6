"""Row-strip evaluation of per-pixel / 3x3 stages for inference (no autograd).

Evaluating a chain of per-pixel linears and 3x3 depthwise convs one horizontal strip at a time keeps its
intermediates small enough to stay in cache and to be reused by the allocator, instead of streaming several
full-size maps through memory. A strip reads one extra row above and below (the 3x3 halo), so the result is
the same per pixel as evaluating the whole map at once.
"""

from __future__ import annotations

import contextlib
import contextvars
from typing import Iterator

import torch
from torch import nn

STRIP_BYTES = 16 << 20
"""Target size of the widest float32 intermediate of one strip. Tuned on a 2-core CPU at 256x256: 16 MiB is 7-11 %
faster than 4 MiB (fewer operators per forward; 8-32 MiB are alike, 0.5 MiB is 60 % slower)."""


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


def depthwise_rows(t: torch.Tensor, conv: nn.Conv2d, r0: int, r1: int, height: int,
                   gelu: bool = False) -> torch.Tensor:
    """Rows ``r0..r1`` of ``conv`` (3x3, padding 1) applied to a full map of ``height`` rows, given only
    ``t`` = that map's rows ``halo(r0, r1, height)``, channels-last ``(B, rows, W, C)``; returns ``(B, r1-r0, W, C)``,
    followed by an exact (erf) GELU if ``gelu``. The conv pads the strip by one zero row on each side; output rows
    next to a padding row that is not the map's own edge are dropped."""
    if conv.kernel_size != (3, 3) or conv.padding != (1, 1):
        raise ValueError(f'depthwise_rows needs a 3x3 conv with padding 1, got {conv}')
    x = t.permute(0, 3, 1, 2)  # channels-last memory: a row range of the output is contiguous
    out = _conv_gelu(x, conv) if gelu else conv(x)
    first = r0 - max(0, r0 - 1)
    return out[:, :, first:first + r1 - r0].permute(0, 2, 3, 1)


_COUNTABLE = contextvars.ContextVar('mpt_countable_kernels', default=False)
_fused_available = True  # False once this torch's fused op failed (missing or changed): a capability, not a switch


def fused_kernels() -> bool:
    """Whether inference may use kernels that ``torch.utils.flop_counter.FlopCounterMode`` does not count (off inside
    :func:`countable_kernels`): ``depthwise_rows(..., gelu=True)`` as one oneDNN conv with a GELU post-op on CPU in
    float32 (about 1.1 instead of 1.9 ms per 80-row strip of 104 channels), and FEFN's output projection as an
    in-place ``addmm_`` onto its shortcut rows (no copy of them)."""
    return not _COUNTABLE.get()


@contextlib.contextmanager
def countable_kernels() -> Iterator[None]:
    """Within the block (this thread or task only), inference uses only ops ``FlopCounterMode`` counts (no fused
    conv + GELU, no ``addmm_``); the benchmark's FLOP count runs inside it."""
    token = _COUNTABLE.set(True)
    try:
        yield
    finally:
        _COUNTABLE.reset(token)


def _conv_gelu(x: torch.Tensor, conv: nn.Conv2d) -> torch.Tensor:
    """``GELU(conv(x))`` for an NCHW view ``x``: fused when :func:`fused_kernels` and oneDNN's pointwise convolution
    (``torch.ops.mkldnn._convolution_pointwise``, the op Inductor uses) is there; two ops otherwise."""
    global _fused_available
    if _fused_available and fused_kernels() and x.device.type == 'cpu' and x.dtype == torch.float32 and \
            conv.bias is None and torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled:
        try:
            return torch.ops.mkldnn._convolution_pointwise(
                x, conv.weight, None, list(conv.padding), list(conv.stride), list(conv.dilation), conv.groups,
                'gelu', [], 'none')
        except (AttributeError, RuntimeError):  # op missing or signature changed in this torch: stop trying
            _fused_available = False
    return torch._C._nn.gelu_(conv(x))
