"""ChannelLayerNorm: same parameters, outputs and gradients as nn.LayerNorm."""

import pytest
import torch

from mpt_arch.layer_norm import ChannelLayerNorm


@pytest.mark.parametrize('shape', [(2, 9, 7, 40), (3, 5, 1)])
def test_matches_torch_layer_norm(shape):
    dim = shape[-1]
    ours = ChannelLayerNorm(dim)
    with torch.no_grad():
        ours.weight.uniform_(0.5, 1.5)
        ours.bias.normal_()
    ref = torch.nn.LayerNorm(dim)
    ref.load_state_dict(ours.state_dict())
    assert list(ours.state_dict()) == list(ref.state_dict())
    x = torch.randn(*shape, requires_grad=True)
    x_ref = x.detach().clone().requires_grad_()
    g = torch.randn(*shape)
    out, out_ref = ours(x), ref(x_ref)
    torch.testing.assert_close(out, out_ref)
    out.backward(g)
    out_ref.backward(g)
    torch.testing.assert_close(x.grad, x_ref.grad)
    torch.testing.assert_close(ours.weight.grad, ref.weight.grad)
    torch.testing.assert_close(ours.bias.grad, ref.bias.grad)


def test_frozen_affine_and_no_grad():
    ln = ChannelLayerNorm(8)
    ln.requires_grad_(False)
    x = torch.randn(4, 8, requires_grad=True)
    ln(x).sum().backward()
    assert ln.weight.grad is None and ln.bias.grad is None
    torch.testing.assert_close(x.grad, torch.zeros_like(x), atol=1e-5, rtol=0)  # LN output rows sum to a constant
    with torch.no_grad():
        torch.testing.assert_close(ln(x), torch.nn.functional.layer_norm(x, (8,)))
