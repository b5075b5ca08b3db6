"""Tiled inference equals whole-image inference when the context margin covers the receptive field.

Equality is tested with a small convolutional network (two 3x3 convolutions: receptive-field radius 2)
because only a network with a finite receptive field smaller than the discarded ``context`` margin can give
identical tile pixels; MPT's ISCA attends over the whole input, so for MPT tiling is close but not exact.
"""

import pytest
import torch
from torch import nn

from mpt_common.tiling import axis_weights, count_tiles, tile_starts, tiled_forward


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


@pytest.mark.parametrize('batch', [2, 3, 100])
def test_batched_tiles_equal_one_at_a_time(batch):
    """Tiles in batches (CUDA's path; on the CPU the same code without the asynchronous copy) blend to the same
    output, with fewer network calls and the progress counted per tile."""
    net = _Recorder().eval()
    image = torch.rand(1, 3, 70, 53)
    single = tiled_forward(net, image, tile=32, overlap=8, context=4)
    calls = len(net.sizes)
    net.sizes.clear()
    done = []
    batched = tiled_forward(net, image, tile=32, overlap=8, context=4, batch=batch, progress=done.append)
    torch.testing.assert_close(batched, single, rtol=0, atol=1e-6)
    assert len(net.sizes) == -(-calls // batch) and sum(done) == calls == count_tiles(70, 53, 32, 8, 4)
    with pytest.raises(ValueError, match='batch must be >= 1'):
        tiled_forward(net, image, tile=32, overlap=8, context=4, batch=0)


def test_auto_tile_is_the_whole_image_when_it_fits_else_the_largest_tile_that_does():
    from mpt_common.tiling import BYTES_PER_PIXEL_PER_FEATURE, auto_tile, feature_width, tile_batch

    net = _Recorder()
    assert feature_width(net) == 8 and feature_width(nn.Identity()) == 64
    per_pixel = BYTES_PER_PIXEL_PER_FEATURE['cpu'] * 8
    cpu, cuda = torch.device('cpu'), torch.device('cuda')
    assert auto_tile(net, 660, 550, cpu, budget=660 * 550 * per_pixel) == (0, 1)  # fits: one call, no seams
    tile, batch = auto_tile(net, 4000, 3000, cpu, budget=1000 * 1000 * per_pixel)
    assert (tile, batch) == (992, 1) and tile % 32 == 0  # the largest multiple of 32 within the budget
    assert auto_tile(net, 4000, 3000, cpu, budget=10 * per_pixel)[0] == 256  # never below MIN_AUTO_TILE
    four_tiles = 4 * 512 * 512 * 2 * per_pixel  # CUDA's allowance is twice the CPU's
    assert tile_batch(net, 512, 4000, 3000, cuda, budget=four_tiles) == 4  # on CUDA tiles share the budget
    assert tile_batch(net, 512, 4000, 3000, cpu, budget=four_tiles) == 1  # the CPU's strip path: one at a time
    assert tile_batch(net, 512, 500, 400, cuda, budget=four_tiles) == 1  # one tile covers the image
    assert tile_batch(net, 512, 600, 500, cuda, budget=four_tiles) == 2  # two tiles: both in one batch
    tile, batch = auto_tile(net, 8000, 300, cuda, budget=four_tiles)
    assert tile == 1024 and batch == 3  # an elongated image: tiles of 1024 x 300 fill the budget three at a time
    assert auto_tile(net, 600, 600, cpu, budget=300 * 300 * per_pixel)[0] == 288
