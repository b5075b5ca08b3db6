"""ChannelLayerNorm and Projection / linear_add: same parameters, outputs and gradients as the torch modules they
replace (nn.LayerNorm, nn.Linear without bias)."""

import pytest
import torch

from mpt_arch.layer_norm import ChannelLayerNorm
from mpt_arch.linear_add import Projection, linear_add


def _assert_same_as(ours, ref, in_shape):
    """``ref`` loaded with ``ours``' state dict gives the same state-dict keys, output, input and parameter grads."""
    ref.load_state_dict(ours.state_dict())
    assert list(ours.state_dict()) == list(ref.state_dict())
    x = torch.randn(*in_shape, requires_grad=True)
    x_ref = x.detach().clone().requires_grad_()
    out, out_ref = ours(x), ref(x_ref)
    torch.testing.assert_close(out, out_ref)
    g = torch.randn_like(out)
    out.backward(g)
    out_ref.backward(g)
    torch.testing.assert_close(x.grad, x_ref.grad)
    for (name, p), p_ref in zip(ours.named_parameters(), ref.parameters()):
        torch.testing.assert_close(p.grad, p_ref.grad, msg=name)


@pytest.mark.parametrize('shape', [(2, 9, 7, 40), (3, 5, 1)])
def test_layer_norm_matches_torch(shape):
    ours = ChannelLayerNorm(shape[-1])
    with torch.no_grad():
        ours.weight.uniform_(0.5, 1.5)
        ours.bias.normal_()
    _assert_same_as(ours, torch.nn.LayerNorm(shape[-1]), shape)


def test_layer_norm_frozen_affine_and_no_grad():
    ln = ChannelLayerNorm(8)
    ln.requires_grad_(False)
    x = torch.randn(4, 8, requires_grad=True)
    ln(x).sum().backward()
    assert ln.weight.grad is None and ln.bias.grad is None
    torch.testing.assert_close(x.grad, torch.zeros_like(x), atol=1e-5, rtol=0)  # LN output rows sum to a constant
    with torch.no_grad():
        torch.testing.assert_close(ln(x), torch.nn.functional.layer_norm(x, (8,)))


@pytest.mark.parametrize('shape', [(2, 5, 7, 6), (11, 6)])
def test_projection_matches_linear(shape):
    ours = Projection(6, 9)
    assert list(ours.state_dict()) == ['weight']
    _assert_same_as(ours, torch.nn.Linear(6, 9, bias=False), shape)


def test_linear_add_gradients():
    w = torch.randn(4, 6, requires_grad=True)
    x = torch.randn(3, 5, 6, requires_grad=True)
    res = torch.randn(3, 5, 4, requires_grad=True)
    g = torch.randn(3, 5, 4)
    for residual in (res, None):
        got = torch.autograd.grad(linear_add(x, w, residual), [x, w], g)
        ref = x @ w.t() + (0 if residual is None else residual)
        want = torch.autograd.grad(ref, [x, w], g)
        for a, b in zip(got, want):
            torch.testing.assert_close(a, b)
    frozen = Projection(6, 4).requires_grad_(False)
    out = frozen(x)
    assert out.requires_grad and frozen.weight.grad is None
