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
keeps tile borders invisible. Memory: one tile (a batch of tiles on CUDA) on the device plus the output and a
weight map on the CPU.

``tile='auto'`` (:func:`auto_tile`): the whole image when it fits the memory budget, else the largest tile that
does; on CUDA several tiles then run as one batch and their outputs come back to the CPU without blocking, while
the next batch runs.
"""

from __future__ import annotations

import math
import os
from typing import Callable, List, Optional, Tuple, Union

import torch
from torch import nn

BYTES_PER_PIXEL_PER_FEATURE = {'cpu': 130, 'cuda': 260}
"""Peak inference memory per input pixel and per feature channel of the network's first convolution (MPT's
``dim``). CPU: measured for MPT's strip path with ``python -m tools.tile_memory`` (paper configuration and gray
starter model at 256^2 and 512^2: 54-103 bytes; 2026-12-07, 2-core CPU), rounded up. CUDA (whole-map path): twice
that, an allowance that no GPU run has measured yet."""
MEMORY_SHARE = 0.5
"""Share of the free memory (CPU: MemAvailable; CUDA: ``torch.cuda.mem_get_info``) a tile may use."""
MIN_AUTO_TILE = 256


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


def smallest_tile(overlap: int = 32, context: int = 32) -> int:
    """The smallest ``tile`` :func:`tiled_forward` accepts with this ``overlap`` and ``context``."""
    return overlap + 2 * context + 1


def tiled_forward(net: Callable[[torch.Tensor], torch.Tensor], image: torch.Tensor, tile: int = 512,
                  overlap: int = 32, context: int = 32, device: Optional[torch.device] = None,
                  progress: Optional[Callable[[int], None]] = None, batch: int = 1) -> torch.Tensor:
    """Run ``net`` on ``image`` (``1 x C x H x W``, on the CPU) tile by tile; returns ``1 x C' x H x W`` float32 on
    the CPU.

    ``net`` must keep the spatial size (deblurring). ``tile <= 0`` runs the whole image at once. ``batch`` tiles go
    through the network together; on CUDA their outputs are copied back into pinned memory without blocking and
    blended while the next batch runs. ``progress(n)`` is called with the number of tiles done (``tqdm.update``).
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
    if overlap < 0 or context < 0 or tile < smallest_tile(overlap, context):
        raise ValueError(f'tile ({tile}) must exceed overlap + 2 * context ({overlap} + 2 * {context}), all >= 0.')
    if batch < 1:
        raise ValueError(f'batch must be >= 1, got {batch}.')
    step = tile - overlap - 2 * context
    th, tw = min(tile, height), min(tile, width)
    positions = [(y, x) for y in tile_starts(height, th, step) for x in tile_starts(width, tw, step)]
    asynchronous = device.type == 'cuda'
    out: List[Optional[torch.Tensor]] = [None]
    weight_sum = torch.zeros(height, width, dtype=torch.float32)

    def blend(chunk: List[Tuple[int, int]], pieces: torch.Tensor) -> None:
        if pieces.shape[-2:] != (th, tw):
            raise ValueError(f'The network changed the tile size from {th}x{tw} to '
                             f'{pieces.shape[-2]}x{pieces.shape[-1]}; tiled inference needs a same-size output.')
        if out[0] is None:
            out[0] = torch.zeros(1, pieces.shape[1], height, width, dtype=torch.float32)
        for (y, x), piece in zip(chunk, pieces):
            weights = (axis_weights(y, th, height, overlap, context)[:, None] *
                       axis_weights(x, tw, width, overlap, context)[None, :]).float()
            out[0][0, :, y:y + th, x:x + tw] += piece * weights
            weight_sum[y:y + th, x:x + tw] += weights
        if progress:
            progress(len(chunk))

    pending = None  # (tiles, host copy, copy-done event) of the batch still in flight on CUDA
    for i in range(0, len(positions), batch):
        chunk = positions[i:i + batch]
        crops = torch.cat([image[:, :, y:y + th, x:x + tw] for y, x in chunk])
        with torch.no_grad():
            pieces = net(crops.to(device, non_blocking=asynchronous))
        if not asynchronous:
            blend(chunk, pieces.to('cpu', torch.float32))
            continue
        host = torch.empty(pieces.shape, dtype=torch.float32, pin_memory=True)
        host.copy_(pieces.float(), non_blocking=True)
        done = torch.cuda.Event()
        done.record()
        if pending is not None:  # blend the previous batch while this one computes and copies
            pending[2].synchronize()
            blend(pending[0], pending[1])
        pending = (chunk, host, done)
    if pending is not None:
        pending[2].synchronize()
        blend(pending[0], pending[1])
    return out[0].div_(weight_sum)


def count_tiles(height: int, width: int, tile: int, overlap: int, context: int) -> int:
    """Number of network calls :func:`tiled_forward` makes for an image of this size."""
    if tile <= 0 or (tile >= height and tile >= width):
        return 1
    step = tile - overlap - 2 * context
    return len(tile_starts(height, min(tile, height), step)) * len(tile_starts(width, min(tile, width), step))


def feature_width(net: nn.Module) -> int:
    """The output channels of the network's first convolution (MPT: ``dim``); 64 when it has none."""
    return next((m.out_channels for m in net.modules() if isinstance(m, nn.Conv2d)), 64)


def free_memory(device: torch.device) -> int:
    """Bytes free for inference on ``device``: ``torch.cuda.mem_get_info`` on CUDA, ``MemAvailable`` of
    ``/proc/meminfo`` on Linux, else the free physical pages (``os.sysconf``), else 4 GiB."""
    if device.type == 'cuda':
        return torch.cuda.mem_get_info(device)[0]
    try:
        with open('/proc/meminfo', encoding='ascii') as handle:
            for line in handle:
                if line.startswith('MemAvailable:'):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf('SC_AVPHYS_PAGES') * os.sysconf('SC_PAGE_SIZE')
    except (ValueError, OSError, AttributeError):
        return 4 << 30


def _memory(net: nn.Module, device: torch.device, budget: Optional[int]) -> Tuple[int, int]:
    """(bytes per input pixel, budget in bytes: :data:`MEMORY_SHARE` of :func:`free_memory` unless given)."""
    per_pixel = BYTES_PER_PIXEL_PER_FEATURE['cuda' if device.type == 'cuda' else 'cpu'] * feature_width(net)
    return per_pixel, int(MEMORY_SHARE * free_memory(device)) if budget is None else budget


def tile_batch(net: nn.Module, tile: int, height: int, width: int, device: torch.device, overlap: int = 32,
               context: int = 32, budget: Optional[int] = None) -> int:
    """How many ``tile`` tiles go through the network at once: as many as fit the budget on CUDA, one on the CPU
    (whose strip path gains nothing from batches) and for whole images."""
    if device.type != 'cuda' or tile <= 0 or (tile >= height and tile >= width):
        return 1
    per_pixel, budget = _memory(net, device, budget)
    batch = max(1, budget // (min(tile, height) * min(tile, width) * per_pixel))
    return int(min(batch, count_tiles(height, width, tile, overlap, context)))


def resolve_tile(net: nn.Module, tile: Union[int, str], height: int, width: int, device: torch.device,
                 overlap: int = 32, context: int = 32) -> Tuple[int, int]:
    """``(tile, batch)`` for a ``--tile`` value: :func:`auto_tile` for ``'auto'``, else that size and its
    :func:`tile_batch`."""
    if tile == 'auto':
        return auto_tile(net, height, width, device, overlap, context)
    return int(tile), tile_batch(net, int(tile), height, width, device, overlap, context)


def auto_tile(net: nn.Module, height: int, width: int, device: torch.device, overlap: int = 32, context: int = 32,
              budget: Optional[int] = None) -> Tuple[int, int]:
    """``(tile, batch)`` for ``tile='auto'``: ``(0, 1)`` (the whole image at once) when it fits ``budget`` bytes
    (:data:`MEMORY_SHARE` of :func:`free_memory` by default), else the largest multiple of 32 (at least
    :data:`MIN_AUTO_TILE`) whose tile fits, and :func:`tile_batch` of it."""
    per_pixel, budget = _memory(net, device, budget)
    if height * width * per_pixel <= budget:
        return 0, 1
    tile = max(MIN_AUTO_TILE, overlap + 2 * context + 32, int(math.sqrt(budget / per_pixel)) // 32 * 32)
    if tile >= height and tile >= width:
        return 0, 1
    return tile, tile_batch(net, tile, height, width, device, overlap, context, budget)
