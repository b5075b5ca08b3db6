"""linear_add.Projection / linear_add: same parameters, outputs and gradients as nn.Linear(bias=False) (+ add)."""

import pytest
import torch

from mpt_arch.linear_add import Projection, linear_add


@pytest.mark.parametrize('shape', [(2, 5, 7, 6), (11, 6)])
def test_projection_matches_linear(shape):
    ours = Projection(6, 9)
    ref = torch.nn.Linear(6, 9, bias=False)
    ref.load_state_dict(ours.state_dict())
    assert list(ours.state_dict()) == ['weight']
    x = torch.randn(*shape, requires_grad=True)
    x_ref = x.detach().clone().requires_grad_()
    g = torch.randn(*shape[:-1], 9)
    out, out_ref = ours(x), ref(x_ref)
    torch.testing.assert_close(out, out_ref)
    out.backward(g)
    out_ref.backward(g)
    torch.testing.assert_close(x.grad, x_ref.grad)
    torch.testing.assert_close(ours.weight.grad, ref.weight.grad)


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
