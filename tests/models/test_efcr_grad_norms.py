"""EFCRModel's logged gradient norms (train.log_grad_norm_freq) against an independent backward pass."""

from types import SimpleNamespace

import torch

from mpt_models.efcr_model import EFCRModel


def test_gradient_norms_equal_the_norm_of_each_losss_backward_gradients():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.GELU(), torch.nn.Conv2d(4, 1, 1))
    net[2].bias.requires_grad_(False)  # frozen weights are left out
    net.register_parameter('unused', torch.nn.Parameter(torch.zeros(2)))  # trainable, outside the graph
    x, y = torch.rand(2, 1, 8, 8), torch.rand(2, 1, 8, 8)
    out = net(x)
    losses = {'grad_pix': (out - y).abs().mean(), 'grad_efcr': 3.0 * (out ** 2).mean()}
    norms = EFCRModel.gradient_norms(SimpleNamespace(net_g=net), losses)
    for name, loss in losses.items():
        net.zero_grad()
        loss.backward(retain_graph=True)
        expected = torch.sqrt(sum((p.grad ** 2).sum() for p in net.parameters() if p.grad is not None))
        assert torch.allclose(norms[name], expected, rtol=1e-6)
    assert norms['grad_pix'] != norms['grad_efcr']
