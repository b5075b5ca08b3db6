"""Tiled inference with overlapping, blended tiles, for images larger than what fits in memory at once.

Along each axis a tile of ``tile`` pixels is run through the network. Of its output, ``context`` pixels
next to every *interior* tile edge are discarded (weight 0): there the network lacked neighbours it would
see on the whole image. The kept parts of neighbouring tiles overlap by ``overlap`` pixels, blended with
raised-cosine weights (``sin^2`` rising, ``cos^2`` falling, which sum to one); the accumulated weighted sum
is divided by the accumulated weight, so every pixel is a convex combination of tile outputs. Tiles step by
``tile - overlap - 2 * context``; the last one is aligned with the image border.

Consequence (what the tests check): for a network whose receptive-field radius is at most ``context``, every
kept tile pixel equals the whole-image output, so the tiled result equals whole-image inference up to float
rounding. Transformers with image-wide operations (MPT's ISCA attends over the whole input) have no finite
receptive field, so there the result is close to, not equal to, whole-image inference; the smooth blending
keeps tile borders invisible. Memory: one tile on the device plus the output and a weight map on the CPU.
"""

from __future__ import annotations

import math
from typing import Callable, List, Optional

import torch


def tile_starts(length: int, tile: int, step: int) -> List[int]:
    """Start offsets of tiles of size ``tile`` covering ``[0, length)`` with the given step (last one aligned)."""
    if tile >= length:
        return [0]
    starts = list(range(0, length - tile, step))
    starts.append(length - tile)
    return starts


def axis_weights(start: int, size: int, length: int, overlap: int, context: int) -> torch.Tensor:
    """Blending weights of one tile along one axis (see module docstring)."""
    weights = torch.ones(size, dtype=torch.float64)
    ramp = torch.sin(0.5 * math.pi * (torch.arange(overlap, dtype=torch.float64) + 0.5) / max(overlap, 1)) ** 2
    if start > 0:  # interior left/top edge
        weights[:context] = 0
        weights[context:context + overlap] = ramp
    if start + size < length:  # interior right/bottom edge
        weights[size - context:] = 0
        weights[size - context - overlap:size - context] = torch.minimum(
            weights[size - context - overlap:size - context], ramp.flip(0))
    return weights


def tiled_forward(net: Callable[[torch.Tensor], torch.Tensor], image: torch.Tensor, tile: int = 512,
                  overlap: int = 32, context: int = 32, device: Optional[torch.device] = None,
                  progress: Optional[Callable[[int], None]] = None) -> torch.Tensor:
    """Run ``net`` on ``image`` (``1 x C x H x W``, on the CPU) tile by tile; returns ``1 x C' x H x W`` on the CPU.

    ``net`` must keep the spatial size (deblurring). ``tile <= 0`` runs the whole image at once.
    ``progress(n)`` is called after each tile with the number of tiles done (e.g. ``tqdm.update``).
    """
    if image.dim() != 4 or image.shape[0] != 1:
        raise ValueError(f'tiled_forward expects a 1 x C x H x W tensor, got shape {tuple(image.shape)}.')
    device = device or image.device
    _, _, height, width = image.shape
    if tile <= 0 or (tile >= height and tile >= width):
        with torch.no_grad():
            out = net(image.to(device)).to('cpu', torch.float32)  # float32 also under autocast
        if progress:
            progress(1)
        return out
    if overlap < 0 or context < 0 or tile <= 2 * context + overlap:
        raise ValueError(f'tile ({tile}) must exceed overlap + 2 * context ({overlap} + 2 * {context}), all >= 0.')
    step = tile - overlap - 2 * context
    th, tw = min(tile, height), min(tile, width)
    out = None
    weight_sum = torch.zeros(height, width, dtype=torch.float32)
    for y in tile_starts(height, th, step):
        wy = axis_weights(y, th, height, overlap, context)
        for x in tile_starts(width, tw, step):
            with torch.no_grad():
                piece = net(image[:, :, y:y + th, x:x + tw].to(device)).to('cpu', torch.float32)
            if piece.shape[-2:] != (th, tw):
                raise ValueError(f'The network changed the tile size from {th}x{tw} to '
                                 f'{piece.shape[-2]}x{piece.shape[-1]}; tiled inference needs a same-size output.')
            if out is None:
                out = torch.zeros(1, piece.shape[1], height, width, dtype=torch.float32)
            weights = (wy[:, None] * axis_weights(x, tw, width, overlap, context)[None, :]).float()
            out[:, :, y:y + th, x:x + tw] += piece * weights
            weight_sum[y:y + th, x:x + tw] += weights
            if progress:
                progress(1)
    return out.div_(weight_sum)


def count_tiles(height: int, width: int, tile: int, overlap: int, context: int) -> int:
    """Number of network calls :func:`tiled_forward` makes for an image of this size."""
    if tile <= 0 or (tile >= height and tile >= width):
        return 1
    step = tile - overlap - 2 * context
    return len(tile_starts(height, min(tile, height), step)) * len(tile_starts(width, min(tile, width), step))
