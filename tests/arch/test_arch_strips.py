"""Inference evaluation by row strips and region groups (``mpt_arch.inference``) equals whole-map evaluation."""

import contextlib

import pytest
import torch
import torch.nn.functional as F

import mpt_arch.inference.strips as row_strips
from mpt_arch import MPT
from mpt_arch.authors_compat import AuthorsFEFN
from mpt_arch.fefn import FeatureEnhancingFFN
from mpt_arch.inference.fefn_strips import fefn_strips
from mpt_arch.inference.isca_strips import isca_strips
from mpt_arch.isca import IntraScaleChannelAttention

TINY = dict(in_chans=1, dim=8, num_blocks=(2, 2, 2, 2), heads=(1, 1, 2, 2),
            scales=((0.5, 1), (0.5, 1), (0.5, 1), (1, 1)), window_size=4)


@pytest.fixture
def small_strips(monkeypatch):
    """Budget of one byte: every strip is a single row and every region group a single region."""
    monkeypatch.setattr(row_strips, 'STRIP_BYTES', 1)


@pytest.mark.parametrize('budget', [1, 7 * 5 * 4 * 3, 10**9])
def test_strips_cover_every_row_once(budget):
    spans = list(row_strips.strips(23, 7, 5, budget))
    assert spans[0][0] == 0 and spans[-1][1] == 23
    assert all(a[1] == b[0] for a, b in zip(spans, spans[1:]))
    assert all(r1 > r0 for r0, r1 in spans)
    assert len(spans) == {1: 23, 7 * 5 * 4 * 3: 8, 10**9: 1}[budget]


def test_depthwise_rows_equals_whole_map_conv():
    conv = torch.nn.Conv2d(6, 6, 3, padding=1, groups=6, bias=True)
    x = torch.randn(1, 9, 11, 6)  # channels-last
    full = conv(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
    for r0, r1 in [(0, 1), (0, 9), (3, 5), (8, 9), (2, 3)]:
        a0, a1 = row_strips.halo(r0, r1, 9)
        part = row_strips.depthwise_rows(x[:, a0:a1], conv, r0, r1, 9)
        torch.testing.assert_close(part, full[:, r0:r1], rtol=0, atol=1e-6)


@pytest.mark.parametrize('fuse', [True, False])
def test_depthwise_rows_with_gelu(monkeypatch, fuse):
    """Conv + GELU rows equal GELU of the whole-map conv, fused into one oneDNN kernel (when this torch has it) or
    as two ops."""
    monkeypatch.setattr(row_strips, '_fused_available', True)
    conv = torch.nn.Conv2d(6, 6, 3, padding=1, groups=6, bias=False)
    x = torch.randn(1, 9, 11, 6)
    with torch.no_grad(), (contextlib.nullcontext() if fuse else row_strips.countable_kernels()):
        full = F.gelu(conv(x.permute(0, 3, 1, 2))).permute(0, 2, 3, 1)
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            for r0, r1 in [(0, 1), (0, 9), (3, 5), (8, 9)]:
                a0, a1 = row_strips.halo(r0, r1, 9)
                part = row_strips.depthwise_rows(x[:, a0:a1], conv, r0, r1, 9, gelu=True)
                torch.testing.assert_close(part, full[:, r0:r1], rtol=1e-5, atol=1e-5)
    fused = any('convolution_pointwise' in e.name for e in prof.events())
    if torch.backends.mkldnn.is_available():  # the torch this package pins has the op: the fast path must run
        assert fused == fuse and row_strips._fused_available  # (a failing call falls back and clears the flag)


def test_depthwise_rows_rejects_other_kernels():
    with pytest.raises(ValueError, match='3x3'):
        row_strips.depthwise_rows(torch.zeros(1, 3, 3, 2), torch.nn.Conv2d(2, 2, 5, padding=2, groups=2), 0, 1, 3)


def test_isca_inference_equals_training_path(small_strips):
    torch.manual_seed(0)
    mod = IntraScaleChannelAttention(12, 3)
    with torch.no_grad():
        mod.temperature.uniform_(0.5, 2.0)
    x, res = torch.randn(2, 7, 5, 12), torch.randn(2, 7, 5, 12)
    expected = mod(x, residual=res)  # autograd path: whole maps
    torch.testing.assert_close(mod(x), expected - res, rtol=1e-5, atol=1e-5)
    with torch.no_grad():
        torch.testing.assert_close(isca_strips(mod, x, res), expected, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(isca_strips(mod, x), expected - res, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('shortcut', ['spatial', 'channel'])
def test_fefn_inference_equals_eq3_and_may_reuse_x1(small_strips, shortcut):
    """Eq. 3 written out (shortcut x1; the authors' code adds x2), against the training path and the row strips."""
    mod = (FeatureEnhancingFFN if shortcut == 'spatial' else AuthorsFEFN)(10, 2.6)
    x1, x2 = torch.randn(2, 13, 5, 10), torch.randn(2, 13, 5, 10)
    gate = mod.channel_dw(mod.channel_in(mod.norm_channel(x2)).permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
    expected = (mod.proj(F.gelu(gate) * mod.spatial_in(mod.norm_spatial(x1))) + (x1 if shortcut == 'spatial'
                                                                                   else x2)).detach()
    torch.testing.assert_close(mod(x1, x2).detach(), expected, rtol=1e-5, atol=1e-5)
    with torch.no_grad():
        torch.testing.assert_close(fefn_strips(mod, x1, x2), expected, rtol=1e-5, atol=1e-5)
        buf = x1.clone()
        out = fefn_strips(mod, buf, x2, out=buf)
    assert out.data_ptr() == buf.data_ptr()
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('budget', [1, 3000, None])
@pytest.mark.parametrize('shape', [(2, 1, 32, 40), (1, 1, 37, 29)])
def test_mpt_inference_equals_autograd_path(monkeypatch, budget, shape):
    """The no-grad path (strips, region groups, fused sub-blocks) against the autograd path (whole maps, explicit
    attention) of the same weights, shifted and padded layouts included."""
    if budget is not None:
        monkeypatch.setattr(row_strips, 'STRIP_BYTES', budget)
    torch.manual_seed(0)
    model = MPT(**TINY)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if 'rpb_table' in name:
                p.normal_(0, 1)
    x = torch.rand(*shape)
    expected = model(x).detach()
    with torch.inference_mode():
        torch.testing.assert_close(model(x), expected, rtol=1e-4, atol=1e-5)
