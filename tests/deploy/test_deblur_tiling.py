"""Tiled inference equals whole-image inference when the context margin covers the receptive field.

Equality is tested with a small convolutional network (two 3x3 convolutions: receptive-field radius 2)
because only a network with a finite receptive field smaller than the discarded ``context`` margin can give
identical tile pixels; MPT's ISCA attends over the whole input, so for MPT tiling is close but not exact.
"""

import pytest
import torch
from torch import nn

from mpt_deploy.tiling import axis_weights, count_tiles, tile_starts, tiled_forward


class _Recorder(nn.Module):
    """Two 3x3 convolutions (receptive-field radius 2); records the input sizes it sees."""

    def __init__(self, channels=3):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(channels, 8, 3, padding=1), nn.GELU(), nn.Conv2d(8, channels, 3, padding=1))
        self.sizes = []

    def forward(self, x):
        self.sizes.append(tuple(x.shape[-2:]))
        return self.body(x)


@pytest.mark.parametrize('size', [(70, 53), (64, 64), (33, 100)])
def test_tiled_equals_whole_image_for_receptive_field_within_context(size):
    net = _Recorder().eval()
    image = torch.rand(1, 3, *size)
    with torch.no_grad():
        whole = net(image)
    net.sizes.clear()
    tiled = tiled_forward(net, image, tile=32, overlap=8, context=4)
    assert tiled.shape == whole.shape and tiled.dtype == whole.dtype
    assert (tiled - whole).abs().max().item() < 1e-4
    assert len(net.sizes) == count_tiles(*size, 32, 8, 4) > 1
    assert all(h <= 32 and w <= 32 for h, w in net.sizes)  # bounded memory: the net only sees tiles


def test_too_small_context_is_detectably_different():
    """Guards the test above: with context 0 the tile-border errors show up."""
    net = _Recorder().eval()
    image = torch.rand(1, 3, 70, 53)
    with torch.no_grad():
        whole = net(image)
    assert (tiled_forward(net, image, tile=32, overlap=8, context=0) - whole).abs().max().item() > 1e-4


def test_weights_cover_every_pixel_and_ramps_sum_to_one():
    length, tile, overlap, context = 100, 32, 8, 4
    step = tile - overlap - 2 * context
    starts = tile_starts(length, tile, step)
    assert starts[0] == 0 and starts[-1] == length - tile
    total = torch.zeros(length, dtype=torch.float64)
    for s in starts:
        total[s:s + tile] += axis_weights(s, tile, length, overlap, context)
    assert (total > 0).all()
    first, second = axis_weights(0, tile, length, overlap, context), axis_weights(step, tile, length, overlap, context)
    seam = slice(step + context, step + context + overlap)  # where the two tiles blend
    blended = first[seam] + second[seam.start - step:seam.stop - step]
    assert torch.allclose(blended, torch.ones(overlap, dtype=torch.float64))


def test_invalid_tiling_arguments_are_rejected():
    net = _Recorder()
    with pytest.raises(ValueError, match='must exceed'):
        tiled_forward(net, torch.rand(1, 3, 64, 64), tile=16, overlap=8, context=4)
    with pytest.raises(ValueError, match='1 x C x H x W'):
        tiled_forward(net, torch.rand(3, 64, 64), tile=32)
