"""Shifted CSWA: pixels that only meet because the cyclic roll wrapped them into one region must not interact.

The roll by half a region puts the four corners of the map into one rolled region. Without the seam mask, a
pixel at the top-left corner would change the output at the other corners; with it, only its own neighbourhood
changes (the NPConvs and the down-scaled key cell it falls in are local and do not wrap)."""

import pytest
import torch
from test_arch_cswa import M, _module


def _change(mod, x, pixel, train: bool):
    x2 = x.clone()
    x2[:, pixel[0], pixel[1]] += 5.0
    mod.train(train)
    with torch.set_grad_enabled(train):
        return (mod(x2) - mod(x)).abs().amax(dim=-1)[0].detach()


@pytest.mark.parametrize('train', [False, True], ids=['inference', 'training'])
@pytest.mark.parametrize('scale', [1, 0.5, 0.25])
def test_corner_pixel_does_not_reach_the_other_corners_across_the_seam(scale, train):
    mod = _module(scale, shifted=True)
    region = mod.ratio * M
    size = 2 * region  # whole regions: the only mask is the seam's
    x = torch.randn(1, size, size, 8)
    change = _change(mod, x, (0, 0), train)
    assert change[0, 0] > 1e-3 and change[1, 1] > 1e-3  # the pixel's own neighbourhood does change
    for corner in [(0, size - 1), (size - 1, 0), (size - 1, size - 1)]:  # same rolled region, other seam side
        assert change[corner] < 1e-6, (corner, float(change[corner]))
    # and the same for the bottom-right pixel, seen from the top-left corner
    assert _change(mod, x, (size - 1, size - 1), train)[0, 0] < 1e-6
