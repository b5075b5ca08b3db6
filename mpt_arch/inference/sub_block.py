"""A pyramid sub-block (Fig. 2) for inference: each module by its strip evaluator, the paper's pair fused.

For the paper's branches (CSWA + ISCA + FEFN), ``x1 = x + CSWA(y)`` and ``x2 = x + ISCA(y)`` are formed strip by
strip inside FEFN's row loop (``x1`` in place in CSWA's output buffer, which then receives the result) instead of as
full maps. Other branch pairs evaluate each module on its own and let FEFN write into the first branch's output.
A module this package does not know (an ablation variant, a user's branch), or a CSWA recording its attention
(``cswa.record_attention``), runs its own forward.
"""

from __future__ import annotations

from typing import Callable, Dict

import torch
from torch import nn

from ..authors_compat import AuthorsCSWA, AuthorsFEFN
from ..cswa import CrossScaleWindowAttention
from ..fefn import FeatureEnhancingFFN
from ..isca import IntraScaleChannelAttention
from ..pyramid_block import PyramidSubBlock
from .cswa_regions import cswa_regions
from .fefn_strips import fefn_rows, fefn_strips
from .isca_strips import isca_strips, output_rows, values_and_mixing

BRANCHES: Dict[type, Callable[..., torch.Tensor]] = {
    CrossScaleWindowAttention: cswa_regions, AuthorsCSWA: cswa_regions, IntraScaleChannelAttention: isca_strips,
}
"""Strip evaluators of the attention branches, by exact module class (a subclass may change the function)."""
FFNS = (FeatureEnhancingFFN, AuthorsFEFN)
"""The FEFN classes :func:`~.fefn_strips.fefn_rows` evaluates."""


def _branch(module: nn.Module, y: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
    evaluate = BRANCHES.get(type(module))
    if evaluate is None or getattr(module, 'keep_attention', False):
        return module(y, residual=residual)
    return evaluate(module, y, residual)


def evaluate_sub_block(block: PyramidSubBlock, x: torch.Tensor) -> torch.Tensor:
    """``block(x)`` for inference (no gradient recorded); never writes into ``x``."""
    y = block.norm(x)
    first, second = block.branch_modules()
    fefn = block.fefn
    if type(fefn) not in FFNS:
        return fefn(_branch(first, y, x), _branch(second, y, x))
    if BRANCHES.get(type(first)) is cswa_regions and type(second) is IntraScaleChannelAttention and \
            not first.keep_attention:
        attended = cswa_regions(first, y)
        values, mixing = values_and_mixing(second, y)
        return fefn_rows(fefn, attended, lambda i, r0, r1: attended[i:i + 1, r0:r1].add_(x[i:i + 1, r0:r1]),
                         lambda i, r0, r1: output_rows(values, mixing, x, i, r0, r1))
    x1 = _branch(first, y, x)  # this sub-block's own temporary: FEFN writes its result into it
    return fefn_strips(fefn, x1, _branch(second, y, x), out=None if x1.data_ptr() == x.data_ptr() else x1)
