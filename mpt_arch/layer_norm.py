"""Channel LayerNorm (the ``LN`` of Sec. 3.1, Fig. 2) with a cheaper training backward.

PyTorch's CPU ``native_layer_norm_backward`` is slow at computing the bias gradient for narrow channel counts
(about 1.5 ms of its 2.5 ms on a 32768 x 40 map, against 0.3 ms for a plain column sum). This module is
``nn.LayerNorm`` (same parameters, same state-dict keys, same forward) whose autograd backward asks the native
kernel for the input and weight gradients only and sums the bias gradient itself.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.autograd.function import once_differentiable

from .custom_backward import custom_backward


class _LayerNormFunction(torch.autograd.Function):
    """Layer normalisation over the last dim; backward = native kernel (input, weight) + column sum (bias)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float) -> torch.Tensor:
        y, mean, rstd = torch.native_layer_norm(x, (x.shape[-1],), weight, bias, eps)
        ctx.save_for_backward(x, weight, bias, mean, rstd)
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor):
        x, weight, bias, mean, rstd = ctx.saved_tensors
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        dx = dw = db = None
        if need_x or need_w:
            dx, dw, _ = torch.ops.aten.native_layer_norm_backward(
                grad, x, (x.shape[-1],), mean, rstd, weight, bias, [need_x, need_w, False])
        if need_b:
            db = grad.reshape(-1, grad.shape[-1]).sum(0)
        return dx, dw, db, None


class ChannelLayerNorm(nn.LayerNorm):
    """``nn.LayerNorm(dim)`` over the channel (last) dim of a channels-last map; see the module docstring."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if custom_backward(x) and self.weight is not None and self.bias is not None and \
                len(self.normalized_shape) == 1:
            return _LayerNormFunction.apply(x, self.weight, self.bias, self.eps)
        return super().forward(x)
