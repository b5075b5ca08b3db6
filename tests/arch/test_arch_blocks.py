"""ISCA (Eq. 2) and FEFN (Eq. 3) against direct transcriptions of the paper's formulas."""

import pytest
import torch
import torch.nn.functional as F

import mpt_arch.inference.strips as row_strips
from mpt_arch.authors_compat import AuthorsFEFN
from mpt_arch.fefn import FeatureEnhancingFFN
from mpt_arch.inference.isca_strips import isca_strips, output_rows, values_and_mixing
from mpt_arch.isca import IntraScaleChannelAttention


def _isca_formula(mod, x):
    """Eq. 2 written out: per-head softmax(temperature * q_hat k_hat^T) v, q and k L2-normalised over space."""
    b, h, w, c = x.shape
    heads, d = mod.heads, c // mod.heads
    qkv = mod.qkv_dw(mod.qkv(x).permute(0, 3, 1, 2))  # b, 3c, h, w
    q, k, v = qkv.flatten(2).chunk(3, dim=1)  # b, c, hw each
    q = F.normalize(q.reshape(b, heads, d, -1), dim=-1)  # normalised along the spatial axis
    k = F.normalize(k.reshape(b, heads, d, -1), dim=-1)
    attn = (q @ k.transpose(-2, -1) * mod.temperature).softmax(-1)  # b, heads, d, d
    out = (attn @ v.reshape(b, heads, d, -1)).reshape(b, c, h, w).permute(0, 2, 3, 1)
    return mod.proj(out)


def _isca(heads):
    torch.manual_seed(1)
    mod = IntraScaleChannelAttention(12, heads)
    with torch.no_grad():
        mod.temperature.uniform_(0.5, 2.0)
    return mod


@pytest.mark.parametrize('heads', [1, 3])
@pytest.mark.parametrize('with_residual', [True, False])
def test_isca_matches_formula(heads, with_residual):
    """Output and gradients (input and every parameter) against the formula, one head and several."""
    mod = _isca(heads)
    x = torch.randn(2, 9, 7, 12, requires_grad=True)
    expected = _isca_formula(mod, x) + x if with_residual else _isca_formula(mod, x)
    g = torch.randn_like(expected)
    want = torch.autograd.grad(expected, [x, *mod.parameters()], g)
    got_out = mod(x, residual=x if with_residual else None)
    torch.testing.assert_close(got_out, expected, rtol=1e-5, atol=1e-5)
    got = torch.autograd.grad(got_out, [x, *mod.parameters()], g)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize('heads', [1, 3])
@pytest.mark.parametrize('budget', [1, None])
def test_isca_inference_matches_formula(monkeypatch, heads, budget):
    """Inference (two passes over row strips: one row each with budget 1) and its row-wise output against Eq. 2."""
    if budget is not None:
        monkeypatch.setattr(row_strips, 'STRIP_BYTES', budget)
    mod = _isca(heads)
    x, res = torch.randn(2, 9, 7, 12), torch.randn(2, 9, 7, 12)
    with torch.no_grad():
        expected = _isca_formula(mod, x)
        torch.testing.assert_close(mod(x), expected, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(isca_strips(mod, x), expected, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(isca_strips(mod, x, res), expected + res, rtol=1e-5, atol=1e-5)
        values, mixing = values_and_mixing(mod, x)
        rows = output_rows(values, mixing, res, 1, 3, 6)
        torch.testing.assert_close(rows, (expected + res)[1:2, 3:6], rtol=1e-5, atol=1e-5)


def test_isca_initial_temperature_and_flat_maps():
    """The temperature starts at 1 per head; an all-zero map (zero q and k norms) gives finite outputs and
    gradients."""
    for heads in (1, 3):
        mod = IntraScaleChannelAttention(12, heads)
        assert torch.equal(mod.temperature, torch.ones(heads, 1, 1))
        x = torch.zeros(1, 5, 6, 12, requires_grad=True)
        out = mod(x)
        out.sum().backward()
        assert torch.isfinite(out).all() and all(torch.isfinite(p.grad).all() for p in mod.parameters())
        with torch.no_grad():
            assert torch.isfinite(isca_strips(mod, x)).all()


@pytest.mark.parametrize('heads', [1, 3])
def test_isca_is_scale_equivariant(heads):
    """q and k are L2-normalised (cosine attention) and Q, K, V are linear in x: ISCA(s x) = s ISCA(x), also for
    maps whose norms are far below 1 (training and inference)."""
    mod = _isca(heads)
    x = torch.randn(1, 6, 5, 12)
    ref = mod(x).detach()
    for s in (1e-4, 1e3):
        torch.testing.assert_close(mod(s * x), s * ref, rtol=1e-4, atol=1e-6 * s)
        with torch.no_grad():
            torch.testing.assert_close(isca_strips(mod, s * x), s * ref, rtol=1e-4, atol=1e-6 * s)


def test_isca_heads_must_divide_dim():
    with pytest.raises(ValueError) as err:
        IntraScaleChannelAttention(12, 5)
    assert str(err.value) == 'ISCA dim 12 is not divisible by heads 5'


def test_fefn_matches_eq3_with_cswa_shortcut():
    mod = FeatureEnhancingFFN(10, 2.6)
    x1, x2 = torch.randn(1, 5, 6, 10), torch.randn(1, 5, 6, 10)
    assert mod.spatial_in.out_features == 26
    gate = mod.channel_dw(mod.channel_in(mod.norm_channel(x2)).permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
    expected = mod.proj(F.gelu(gate) * mod.spatial_in(mod.norm_spatial(x1))) + x1
    torch.testing.assert_close(mod(x1, x2), expected)


def test_fefn_defaults_and_smallest_width():
    mod = FeatureEnhancingFFN(10)
    assert mod.proj.in_features == 26 and mod.channel_dw.bias is None  # alpha 2.6
    x1, x2 = torch.randn(1, 2, 3, 10), torch.randn(1, 2, 3, 10)
    assert mod.shortcut_of(x1, x2) is x1 and AuthorsFEFN(10).shortcut_of(x1, x2) is x2
    assert FeatureEnhancingFFN(1, 1.0).proj.in_features == 1  # one hidden channel is enough
    with pytest.raises(ValueError) as err:
        FeatureEnhancingFFN(10, 0.05)
    assert str(err.value) == 'FEFN expansion 0.05 gives no hidden channels for dim 10'
