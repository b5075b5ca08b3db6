"""Pyramid sub-block and pyramid block (Sec. 3.1, Fig. 2)."""

from __future__ import annotations

from typing import Callable, Dict, Optional, Sequence, Tuple

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from .ablation import FFN_VARIANTS, FFNVariant, branch_slots, check_choice, check_flag
from .cswa import CrossScaleWindowAttention
from .fefn import FeatureEnhancingFFN
from .isca import IntraScaleChannelAttention
from .layer_norm import ChannelLayerNorm


def _window_attention(scale_of: Callable[[float], float]) -> Callable[..., nn.Module]:
    def build(dim: int, heads: int, scale: float, window_size: int, shifted: bool, downsample: str, npconv: bool,
              cswa_class: type = CrossScaleWindowAttention) -> nn.Module:
        return cswa_class(dim, heads, scale_of(scale), window_size, shifted, downsample, npconv)

    return build


# Table 3's branch kinds and how a sub-block builds each; every branch is called as ``branch(y, residual=x)`` and
# returns ``x + attention(y)``. A new attention for an ablation: its module, one entry here, its pair in
# ablation.ATTENTION_PAIRS (docs/developer/extending.md).
BRANCH_BUILDERS: Dict[str, Callable[..., nn.Module]] = {
    'cswa': _window_attention(lambda scale: scale),
    'wa': _window_attention(lambda scale: 1),  # plain shifted window attention = CSWA at scale 1
    'isca': lambda dim, heads, *args, **kwargs: IntraScaleChannelAttention(dim, heads),
}


class PyramidSubBlock(nn.Module):
    """One sub-block: ``y = LN(x)``; ``x1 = x + CSWA(y)``; ``x2 = x + ISCA(y)``; ``out = FEFN(x1, x2)``.

    Ablation keywords (defaults = the paper; see ``ablation.py``): ``attention`` picks the two branch modules
    (Table 3; the branches are attributes named by ``branch_slots``), ``ffn`` the FEFN variant (Table 4),
    ``downsample`` / ``npconv`` go to every CSWA (Table 9). The window-attention and FEFN classes are
    :attr:`cswa_class` and :attr:`fefn_class` (``authors_compat.AuthorsPyramidSubBlock`` swaps both).
    """

    cswa_class: type = CrossScaleWindowAttention
    fefn_class: type = FeatureEnhancingFFN

    def __init__(
        self, dim: int, heads: int, scale: float, window_size: int, shifted: bool, ffn_expansion: float,
        attention: str = 'cswa+isca', ffn: str = 'fefn', downsample: str = 'avgpool', npconv: bool = True,
    ) -> None:
        super().__init__()
        self.norm = ChannelLayerNorm(dim)
        self.branches = tuple(name for name, _ in branch_slots(attention))
        for name, kind in branch_slots(attention):
            setattr(self, name, BRANCH_BUILDERS[kind](dim, heads, scale, window_size, shifted, downsample, npconv,
                                                      cswa_class=self.cswa_class))
        if check_choice('ffn', ffn, FFN_VARIANTS) == 'fefn':
            self.fefn = self.fefn_class(dim, ffn_expansion)
        else:
            self.fefn = FFNVariant(dim, ffn_expansion, ffn)

    def branch_modules(self) -> Tuple[nn.Module, nn.Module]:
        """The two attention branches (``x1``'s, then ``x2``'s)."""
        first, second = (getattr(self, name) for name in self.branches)
        return first, second

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.norm(x)
        first, second = self.branch_modules()
        return self.fefn(first(y, residual=x), second(y, residual=x))


SubBlockEvaluator = Callable[[PyramidSubBlock, torch.Tensor], torch.Tensor]
"""Another evaluation of a sub-block's function (``mpt_arch.inference.evaluate_sub_block``)."""


class PyramidBlock(nn.Module):
    """Stack of sub-blocks with coarse-to-fine scales; sub-blocks 2, 4, 6, ... use shifted windows (none with
    ``shift_windows=False``, Table 9 V_w/o sw). ``variants`` (attention, ffn, downsample, npconv) go to every
    sub-block (of class ``sub_block``); ``use_checkpoint`` recomputes each sub-block in the backward pass (activation
    checkpointing)."""

    def __init__(
        self, dim: int, heads: int, scales: Sequence[float], window_size: int, ffn_expansion: float,
        shift_windows: bool = True, use_checkpoint: bool = False, sub_block: type = PyramidSubBlock, **variants,
    ) -> None:
        super().__init__()
        check_flag('shift_windows', shift_windows)
        self.use_checkpoint = check_flag('use_checkpoint', use_checkpoint)
        self.blocks = nn.ModuleList(
            sub_block(dim, heads, s, window_size, shifted=shift_windows and j % 2 == 1,
                            ffn_expansion=ffn_expansion, **variants)
            for j, s in enumerate(scales)
        )

    def forward(self, x: torch.Tensor, evaluate: Optional[SubBlockEvaluator] = None) -> torch.Tensor:
        """``evaluate(sub_block, x)`` replaces each sub-block's own forward when given (``MPT.forward`` passes the
        inference evaluator it chose)."""
        if evaluate is not None:
            for block in self.blocks:
                x = evaluate(block, x)
            return x
        checkpointed = self.use_checkpoint and torch.is_grad_enabled()
        for block in self.blocks:
            x = checkpoint(block, x, use_reentrant=False) if checkpointed else block(x)
        return x
