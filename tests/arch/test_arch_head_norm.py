"""head_norm: per-head L2 normalisation (CSWA's cosine attention) against autograd of the plain formula."""

import pytest
import torch

from mpt_arch.head_norm import EPS, normalize_heads


def _reference(t, heads, scale):
    th = t.view(*t.shape[:-1], heads, t.shape[-1] // heads)
    out = th / torch.linalg.vector_norm(th, dim=-1, keepdim=True).clamp_min(EPS)
    if scale is not None:
        out = out * scale.view(heads, 1)
    return out.view(t.shape)


@pytest.mark.parametrize('heads', [1, 2, 4])
@pytest.mark.parametrize('with_scale', [True, False])
def test_gradients_match_autograd(heads, with_scale):
    t = torch.randn(2, 5, 7, 8)
    t[0, 1, 2, :8 // heads] = 0  # a token whose first head has zero norm (clamped)
    t[1, 0, 0] *= 1e-8
    scale = torch.rand(heads) * 5 + 1 if with_scale else None
    g = torch.randn_like(t)
    results = []
    for fn in (normalize_heads, lambda *a: _reference(*a)):
        tt = t.clone().requires_grad_()
        ss = None if scale is None else scale.clone().requires_grad_()
        out = fn(tt, heads, ss)
        out.backward(g)
        results.append((out.detach(), tt.grad, None if ss is None else ss.grad))
    (o1, dt1, ds1), (o2, dt2, ds2) = results
    torch.testing.assert_close(o1, o2)
    torch.testing.assert_close(dt1, dt2, rtol=1e-4, atol=1e-5)
    if with_scale:
        torch.testing.assert_close(ds1, ds2, rtol=1e-4, atol=1e-4)


def test_strided_input_and_out_buffer():
    kv = torch.randn(3, 10, 16)
    k = kv[..., :8]  # a split view, as CSWA passes it
    out = torch.empty(3, 10, 8)
    scale = torch.tensor([2.0, 3.0])
    normalize_heads(k, 2, scale, out=out)
    torch.testing.assert_close(out, _reference(k.contiguous(), 2, scale))
    with torch.no_grad():
        torch.testing.assert_close(normalize_heads(k, 2), _reference(k.contiguous(), 2, None))
