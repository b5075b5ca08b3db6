"""Pyramid sub-block and pyramid block (Sec. 3.1, Fig. 2)."""

from __future__ import annotations

from typing import Callable, Dict, Optional, Sequence

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from .ablation import FFN_VARIANTS, FFNVariant, branch_slots, check_choice, check_flag
from .cswa import CrossScaleWindowAttention
from .fefn import FeatureEnhancingFFN
from .isca import IntraScaleChannelAttention
from .layer_norm import ChannelLayerNorm
from .row_strips import use_strips


def _window_attention(scale_of: Callable[[float], float]) -> Callable[..., nn.Module]:
    def build(dim: int, heads: int, scale: float, window_size: int, shifted: bool, downsample: str, npconv: bool,
              **cswa_extra) -> nn.Module:
        return CrossScaleWindowAttention(dim, heads, scale_of(scale), window_size, shifted, downsample, npconv,
                                         **cswa_extra)

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
    ``downsample`` / ``npconv`` go to every CSWA (Table 9). ``compat='authors'`` computes the authors' sub-block
    (CSWA ``pairing='raster'``, FEFN ``shortcut='channel'``; see ``MPT``).
    """

    def __init__(
        self, dim: int, heads: int, scale: float, window_size: int, shifted: bool, ffn_expansion: float,
        attention: str = 'cswa+isca', ffn: str = 'fefn', downsample: str = 'avgpool', npconv: bool = True,
        compat: Optional[str] = None,
    ) -> None:
        super().__init__()
        authors = compat == 'authors'
        cswa_extra = {'pairing': 'raster'} if authors else {}
        self.norm = ChannelLayerNorm(dim)
        self.branches = tuple(name for name, _ in branch_slots(attention))
        for name, kind in branch_slots(attention):
            setattr(self, name, BRANCH_BUILDERS[kind](dim, heads, scale, window_size, shifted, downsample, npconv,
                                                      **cswa_extra))
        if check_choice('ffn', ffn, FFN_VARIANTS) == 'fefn':
            self.fefn = FeatureEnhancingFFN(dim, ffn_expansion, shortcut='channel' if authors else 'spatial')
        else:
            self.fefn = FFNVariant(dim, ffn_expansion, ffn)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.norm(x)
        first, second = (getattr(self, name) for name in self.branches)
        if use_strips(x) and isinstance(first, CrossScaleWindowAttention) and \
                isinstance(second, IntraScaleChannelAttention) and type(self.fefn) is FeatureEnhancingFFN and \
                not first.keep_attention:
            return self._fused_inference(x, y, first, second)
        # the first branch's output is this sub-block's own temporary: FEFN may reuse it in inference
        return self.fefn(first(y, residual=x), second(y, residual=x), reuse_x1=True)

    def _fused_inference(self, x: torch.Tensor, y: torch.Tensor, cswa: CrossScaleWindowAttention,
                         isca: IntraScaleChannelAttention) -> torch.Tensor:
        """Inference: ``x1 = x + CSWA(y)`` and ``x2 = x + ISCA(y)`` are formed strip by strip inside FEFN's row
        loop (``x1`` in place in CSWA's output buffer, which then receives the result) instead of as full maps."""
        attended = cswa(y)
        values, mixing = isca.values_and_mixing(y)
        return self.fefn.forward_strips(
            attended,
            lambda i, r0, r1: attended[i:i + 1, r0:r1].add_(x[i:i + 1, r0:r1]),
            lambda i, r0, r1: isca.output_rows(values, mixing, x, i, r0, r1),
        )


class PyramidBlock(nn.Module):
    """Stack of sub-blocks with coarse-to-fine scales; sub-blocks 2, 4, 6, ... use shifted windows (none with
    ``shift_windows=False``, Table 9 V_w/o sw). ``variants`` (attention, ffn, downsample, npconv) go to every
    sub-block; ``use_checkpoint`` recomputes each sub-block in the backward pass (activation checkpointing)."""

    def __init__(
        self, dim: int, heads: int, scales: Sequence[float], window_size: int, ffn_expansion: float,
        shift_windows: bool = True, use_checkpoint: bool = False, **variants,
    ) -> None:
        super().__init__()
        check_flag('shift_windows', shift_windows)
        self.use_checkpoint = check_flag('use_checkpoint', use_checkpoint)
        self.blocks = nn.ModuleList(
            PyramidSubBlock(dim, heads, s, window_size, shifted=shift_windows and j % 2 == 1,
                            ffn_expansion=ffn_expansion, **variants)
            for j, s in enumerate(scales)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        checkpointed = self.use_checkpoint and torch.is_grad_enabled()
        for block in self.blocks:
            x = checkpoint(block, x, use_reentrant=False) if checkpointed else block(x)
        return x
