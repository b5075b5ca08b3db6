"""The network as a bioimage.io package runs it: raw intensities in, deblurred raw intensities out.

:class:`DeployedNet` wraps a trained network with exactly what ``mpt-deblur`` does around it, so a consumer of
the package (deepImageJ, napari, ``bioimageio.core``) needs no pre- or postprocessing of its own:

1. the :mod:`mpt_data.normalization` map of the **whole tensor it receives** (per sample): ``input_percentile``
   (``np.percentile``-style linear interpolation, unclipped), ``dtype`` (divide by the input dtype's maximum) or
   ``fixed`` (divide by ``norm_max``, clipped);
2. the network, tile by tile with the blending of :mod:`mpt_common.tiling` (same ``tile``/``overlap``/``context``);
3. the inverse map, clipped to the range of the input dtype, as float32 in the input's units (the bioimage.io
   convention: consumers cast; unrounded, so every weight format reproduces the test output within float
   tolerance, which rounded integers did not: one unit apart where a value sat on a .5 boundary).

The code is TorchScript-compatible (``torch.jit.script``) around a network traced at one tile size; with
``full_tiles`` it refuses inputs smaller than the tile, the only ones whose tiles would not have the traced size.
:func:`build_deployed_net` is the ``pytorch_state_dict`` architecture callable of the package.
"""

from __future__ import annotations

import math
from typing import Any, Dict, List

import torch
from torch import nn


def _tile_starts(length: int, tile: int, step: int) -> List[int]:
    """:func:`mpt_common.tiling.tile_starts` in TorchScript."""
    if tile >= length:
        return [0]
    starts: List[int] = []
    pos = 0
    while pos < length - tile:
        starts.append(pos)
        pos += step
    starts.append(length - tile)
    return starts


def _axis_weights(start: int, size: int, length: int, overlap: int, context: int) -> torch.Tensor:
    """:func:`mpt_common.tiling.axis_weights` in TorchScript (float64)."""
    weights = torch.ones(size, dtype=torch.float64)
    ramp = torch.sin(0.5 * math.pi * (torch.arange(overlap, dtype=torch.float64) + 0.5) / max(overlap, 1)) ** 2
    if start > 0:
        weights[0:context] = 0.0
        weights[context:context + overlap] = ramp
    if start + size < length:
        weights[size - context:size] = 0.0
        weights[size - context - overlap:size - context] = torch.minimum(
            weights[size - context - overlap:size - context], ramp.flip(0))
    return weights


def _percentile(sorted_values: torch.Tensor, q: float) -> float:
    """``np.percentile(values, q)`` (method 'linear') of an ascending float64 vector."""
    n = sorted_values.numel()
    pos = q / 100.0 * (n - 1)
    lo = int(math.floor(pos))
    hi = min(lo + 1, n - 1)
    frac = pos - lo
    a, b = float(sorted_values[lo]), float(sorted_values[hi])
    return b - (b - a) * (1.0 - frac) if frac >= 0.5 else a + (b - a) * frac


class DeployedNet(nn.Module):
    """``mpt-deblur``'s normalisation, tiled forward and inverse around ``net`` (see module docstring).

    Args:
        net: the network (an ``nn.Module`` or a traced TorchScript module).
        mode: ``'input_percentile'``, ``'dtype'`` or ``'fixed'``.
        percentiles: low/high percentiles of ``input_percentile``.
        norm_max: divisor of ``fixed``.
        dtype_max: maximum of the input's integer dtype (65535 for uint16): divisor of ``dtype``, clip of the output.
        tile, overlap, context: tiling of :func:`mpt_common.tiling.tiled_forward` (``tile <= 0``: whole image).
        out_chans: channels the network returns.
        full_tiles: refuse inputs smaller than ``tile`` (for a network traced at ``tile x tile``).
    """

    def __init__(self, net: nn.Module, mode: str = 'dtype', percentiles: List[float] = (0.1, 99.9),
                 norm_max: float = 1.0, dtype_max: float = 65535.0, tile: int = 256, overlap: int = 32,
                 context: int = 32, out_chans: int = 1, full_tiles: bool = False) -> None:
        super().__init__()
        if mode not in ('input_percentile', 'dtype', 'fixed'):
            raise ValueError(f'DeployedNet: unsupported normalisation {mode!r}.')
        if tile > 0 and (overlap < 0 or context < 0 or tile <= 2 * context + overlap):
            raise ValueError(f'tile ({tile}) must exceed overlap + 2 * context ({overlap} + 2 * {context}).')
        self.net = net
        self.mode = mode
        self.low_pct, self.high_pct = float(percentiles[0]), float(percentiles[1])
        self.norm_max, self.dtype_max = float(norm_max), float(dtype_max)
        self.tile, self.overlap, self.context = int(tile), int(overlap), int(context)
        self.out_chans, self.full_tiles = int(out_chans), bool(full_tiles)

    def _map(self, img: torch.Tensor) -> List[float]:
        """``[low, scale, clip]`` of the :class:`mpt_data.normalization.IntensityMap` of ``img``."""
        if self.mode == 'dtype':
            return [0.0, self.dtype_max, 0.0]
        if self.mode == 'fixed':
            return [0.0, self.norm_max, 1.0]
        values = torch.sort(img.reshape(-1).to(torch.float64))[0]
        low, high = _percentile(values, self.low_pct), _percentile(values, self.high_pct)
        if not high > low:
            raise ValueError('The input is flat between its low and high percentiles; percentile normalisation '
                             'would divide by zero.')
        return [low, high - low, 0.0]

    def _tiled(self, image: torch.Tensor) -> torch.Tensor:
        height, width = image.shape[2], image.shape[3]
        tile = self.tile
        if tile <= 0 or (tile >= height and tile >= width):
            return self.net(image).to(torch.float32)
        step = tile - self.overlap - 2 * self.context
        th, tw = min(tile, height), min(tile, width)
        out = torch.zeros(1, self.out_chans, height, width, dtype=torch.float32, device=image.device)
        weight_sum = torch.zeros(height, width, dtype=torch.float32, device=image.device)
        for y in _tile_starts(height, th, step):
            wy = _axis_weights(y, th, height, self.overlap, self.context)
            for x in _tile_starts(width, tw, step):
                piece = self.net(image[:, :, y:y + th, x:x + tw]).to(torch.float32)
                wx = _axis_weights(x, tw, width, self.overlap, self.context)
                weights = (wy[:, None] * wx[None, :]).to(torch.float32).to(image.device)
                out[:, :, y:y + th, x:x + tw] += piece * weights
                weight_sum[y:y + th, x:x + tw] += weights
        return out / weight_sum

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4:
            raise ValueError('DeployedNet expects a (batch, channel, y, x) tensor.')
        if self.full_tiles and self.tile > 0 and (x.shape[2] < self.tile or x.shape[3] < self.tile):
            raise ValueError(f'This TorchScript model was traced for {self.tile} x {self.tile} tiles: the input must '
                             f'be at least that large in y and x (use the pytorch_state_dict weights for smaller '
                             f'images).')
        outs: List[torch.Tensor] = []
        for b in range(x.shape[0]):
            raw = x[b:b + 1].to(torch.float32)
            low, scale, clip = self._map(raw)
            low32 = torch.tensor(low, dtype=torch.float32)
            scale32 = torch.tensor(scale, dtype=torch.float32)
            unit = (raw - low32) / scale32
            if clip > 0.0:
                unit = torch.clamp(unit, 0.0, 1.0)
            with torch.no_grad():
                result = self._tiled(unit)
            outs.append(torch.clamp(result * scale32 + low32, 0.0, self.dtype_max))
        return torch.cat(outs, 0)


def build_deployed_net(network: Dict[str, Any], **deploy: Any) -> DeployedNet:
    """``pytorch_state_dict`` architecture: the network of ``network`` (``network_g`` options) in :class:`DeployedNet`.

    Needs this plugin installed (``pip install mpt-basicsr``); the state dict's keys start with ``net.``.
    """
    from mpt_deploy.model_loading import build_network, network_in_chans

    net = build_network(dict(network))
    out_chans = network.get('out_chans') or network_in_chans(network) or 1
    return DeployedNet(net, out_chans=int(out_chans), **deploy)
