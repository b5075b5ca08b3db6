"""The Multi-Pyramid Transformer (MPT), Sec. 3.1 / Fig. 2 of the paper, registered in BasicSR's ARCH_REGISTRY."""

from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from basicsr.utils.registry import ARCH_REGISTRY
from torch import nn

from . import inference
from .ablation import ATTENTION_PAIRS, DOWNSAMPLE_VARIANTS, FFN_VARIANTS, check_choice, check_flag
from .authors_compat import AuthorsPyramidSubBlock
from .cswa import scale_ratio
from .pyramid_block import PyramidBlock, PyramidSubBlock
from .region_geometry import authors_multiple

PAPER_SCALES = (
    (1 / 8, 1 / 8, 1 / 4, 1 / 4, 1, 1),
    (1 / 4, 1 / 4, 1 / 2, 1 / 2, 1, 1),
    (1 / 2, 1 / 2, 1 / 2, 1 / 2, 1, 1),
    (1 / 2, 1 / 2, 1 / 2, 1 / 2, 1, 1),
)


class _Downsample(nn.Module):
    """Conv3x3(C -> C/2) + PixelUnshuffle(2): halves the resolution, doubles the channels."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(dim, dim // 2, 3, padding=1, bias=False), nn.PixelUnshuffle(2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1).contiguous()


class _Upsample(nn.Module):
    """Conv3x3(C -> 2C) + PixelShuffle(2): doubles the resolution, halves the channels."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(dim, dim * 2, 3, padding=1, bias=False), nn.PixelShuffle(2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1).contiguous()


@ARCH_REGISTRY.register()
class MPT(nn.Module):
    """Multi-Pyramid Transformer: U-shaped network of pyramid blocks (encoder levels 1..L-1, latent level L,
    decoder levels L-1..1) with pixel (un)shuffle resampling, additive encoder-decoder skips and a global residual.

    Args:
        in_chans: input image channels.
        out_chans: output channels (``None`` = ``in_chans``). The global residual (output + input) is used only
            when ``out_chans == in_chans``; otherwise the network predicts the output directly.
        dim: channels of level 1 (level ``l`` has ``dim * 2^(l-1)``).
        num_blocks: sub-blocks per level.
        heads: attention heads per level.
        scales: per level, one CSWA scale ``1/2^k`` per sub-block (paper S1..S4 by default).
        window_size: window (patch) width M.
        ffn_expansion: FEFN expansion ratio alpha.
        attention: ablation (Table 3) branch pair: ``'cswa+isca'`` (paper), ``'cswa+cswa'``, ``'wa+wa'``,
            ``'isca+isca'``, ``'wa+isca'`` (WA = CSWA at scale 1).
        ffn: ablation (Table 4): ``'fefn'`` (paper, Eq. 3), ``'cat_gelu'``, ``'add_gelu'``, ``'reversed'``.
        downsample: ablation (Table 9) CSWA down-sampling: ``'avgpool'`` (paper), ``'no_shortcut'``,
            ``'no_linear'``, ``'maxpool'``, ``'conv'`` (depthwise), ``'conv_full'``, ``'bicubic'``.
        npconv: False drops CSWA's depthwise 3x3 on Q/K/V (Table 9 V_w/o NPC).
        shift_windows: False: no shifted sub-blocks (Table 9 V_w/o sw).
        compat: ``None`` (the paper's network) or ``'authors'``: compute the function of the authors' released
            code, so their checkpoints (converted by ``mpt_deploy.authors_checkpoint``) run exactly: raster-order
            CSWA pairing with the query depthwise conv on the regrouped layout, their shift and -100 mask, a raw
            unclamped CSWA ``temperature`` (instead of ``logit_scale``) and the FEFN shortcut from the ISCA branch
            (docs/guides/authors_weights.md, differences 1-6; the sub-blocks of ``authors_compat``). Only with the
            paper's branch, FFN and down-sampling choices.
        use_checkpoint: recompute each sub-block's activations in the backward pass instead of keeping them
            (``torch.utils.checkpoint``, as BasicSR's SwinIR): about one sub-block's activations per level are kept
            instead of all; same function and gradients, one extra forward per step. Training memory only.

    Any ``H x W`` is accepted: the input is reflection-padded to a multiple of ``2^(L-1)`` (needed by the pixel
    unshuffles) and the output cropped back; each CSWA pads to whole windows internally and masks the padding.
    With ``compat='authors'`` the input is padded instead to the multiple the authors' pairing needs
    (:attr:`pad_multiple`, 128 at the paper configuration), so on such sizes the output is exactly theirs.
    """

    def __init__(
        self,
        in_chans: int = 3,
        out_chans: Optional[int] = None,
        dim: int = 40,
        num_blocks: Sequence[int] = (6, 6, 6, 6),
        heads: Sequence[int] = (1, 2, 4, 8),
        scales: Sequence[Sequence[float]] = PAPER_SCALES,
        window_size: int = 8,
        ffn_expansion: float = 2.6,
        attention: str = 'cswa+isca',
        ffn: str = 'fefn',
        downsample: str = 'avgpool',
        npconv: bool = True,
        shift_windows: bool = True,
        compat: Optional[str] = None,
        use_checkpoint: bool = False,
    ) -> None:
        super().__init__()
        if compat not in (None, 'authors'):
            raise ValueError(f"MPT compat must be None (the paper's network) or 'authors', got {compat!r}")
        if compat == 'authors' and (attention, ffn, downsample, npconv) != ('cswa+isca', 'fefn', 'avgpool', True):
            raise ValueError("MPT compat='authors' exists for the paper's variant only (attention='cswa+isca', "
                             "ffn='fefn', downsample='avgpool', npconv=True)")
        variants = dict(attention=check_choice('attention', attention, tuple(ATTENTION_PAIRS)),
                        ffn=check_choice('ffn', ffn, FFN_VARIANTS),
                        downsample=check_choice('downsample', downsample, DOWNSAMPLE_VARIANTS),
                        npconv=check_flag('npconv', npconv), shift_windows=check_flag('shift_windows', shift_windows))
        out_chans = in_chans if out_chans is None else out_chans
        for name, value in (('in_chans', in_chans), ('out_chans', out_chans), ('dim', dim)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f'MPT {name} must be a positive int, got {value!r}')
        num_blocks, heads = list(num_blocks), list(heads)
        scales = [list(s) for s in scales]
        levels = len(num_blocks)
        if levels < 1 or any(not isinstance(n, int) or n < 1 for n in num_blocks):
            raise ValueError(f'MPT num_blocks must be a non-empty list of positive ints, got {num_blocks!r}')
        if len(heads) != levels:
            raise ValueError(f'MPT heads {heads!r} must have one entry per level ({levels} levels)')
        if len(scales) != levels:
            raise ValueError(f'MPT scales must have one list per level ({levels} levels), got {len(scales)}')
        for lvl, (n, s, h) in enumerate(zip(num_blocks, scales, heads)):
            if len(s) != n:
                raise ValueError(f'MPT scales[{lvl}] = {s!r} must have num_blocks[{lvl}] = {n} entries')
            for value in s:
                scale_ratio(value)
            if (dim * 2**lvl) % h:
                raise ValueError(f'MPT level {lvl + 1}: dim {dim * 2**lvl} is not divisible by heads {h}')
        if not isinstance(window_size, int) or window_size < 2 or window_size % 2:
            raise ValueError(f'MPT window_size must be an even int >= 2, got {window_size!r}')
        if levels > 1 and dim % 2:
            raise ValueError(f'MPT dim must be even for the Conv3x3(C->C/2) down-sampling, got {dim}')
        self.in_chans, self.out_chans, self.levels, self.compat = in_chans, out_chans, levels, compat
        self.pad_multiple = 2 ** (levels - 1)
        variants['sub_block'] = AuthorsPyramidSubBlock if compat == 'authors' else PyramidSubBlock
        if compat == 'authors':
            self.pad_multiple = max([self.pad_multiple] + [
                2**lvl * authors_multiple(scale_ratio(v), window_size) for lvl, s in enumerate(scales) for v in s])

        use_checkpoint = check_flag('use_checkpoint', use_checkpoint)

        def block(lvl: int) -> PyramidBlock:
            return PyramidBlock(dim * 2**lvl, heads[lvl], scales[lvl], window_size, ffn_expansion,
                                use_checkpoint=use_checkpoint, **variants)

        self.conv_in = nn.Conv2d(in_chans, dim, 3, padding=1, bias=False)
        self.encoders = nn.ModuleList(block(lvl) for lvl in range(levels - 1))
        self.downs = nn.ModuleList(_Downsample(dim * 2**lvl) for lvl in range(levels - 1))
        self.latent = block(levels - 1)
        self.ups = nn.ModuleList(_Upsample(dim * 2 ** (lvl + 1)) for lvl in range(levels - 1))
        self.decoders = nn.ModuleList(block(lvl) for lvl in range(levels - 1))
        self.conv_out = nn.Conv2d(dim, out_chans, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.in_chans:
            raise ValueError(f'MPT expects (B, {self.in_chans}, H, W) input, got {tuple(x.shape)}')
        h, w = x.shape[-2:]
        multiple = self.pad_multiple
        ph, pw = -h % multiple, -w % multiple
        inp = x
        if ph or pw:
            mode = 'reflect' if ph < h and pw < w else 'replicate'
            x = F.pad(x, (0, pw, 0, ph), mode=mode)
        feat = self.conv_in(x).permute(0, 2, 3, 1).contiguous()  # channels-last tokens (B, H, W, C)
        evaluate = inference.evaluator(feat)  # the path for this device, dtype and grad mode, chosen once
        skips = []
        for encoder, down in zip(self.encoders, self.downs):
            feat = encoder(feat, evaluate)
            skips.append(feat)
            feat = down(feat)
        feat = self.latent(feat, evaluate)
        for lvl in reversed(range(self.levels - 1)):
            up = self.ups[lvl](feat)  # a fresh tensor: added in place when no gradient is recorded
            feat = self.decoders[lvl](up + skips[lvl] if torch.is_grad_enabled() else up.add_(skips[lvl]), evaluate)
        out = self.conv_out(feat.permute(0, 3, 1, 2))[..., :h, :w]
        if self.out_chans == self.in_chans:
            out = out + inp
        return out.contiguous()
