"""Intra-scale channel attention (ISCA), Sec. 3.1 and Eq. (2) of the paper."""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn
from torch.autograd.function import once_differentiable

from .custom_backward import custom_backward
from .linear_add import Projection


class _OneHeadProduct(torch.autograd.Function):
    """Training with one head: ``residual + V M`` from ``qkv`` ``(B, N, 3C)``, where ``q^T k`` and the squared norms
    of q and k are all read off one Gram matrix ``G = [q k]^T [q k]``. Backward: ``d[q k] = [q k] (dG + dG^T)`` and
    ``dV = g M^T``, two GEMMs written straight into one ``(B, N, 3C)`` gradient (no element-wise passes, no
    concatenation); the small ``G -> M`` step is re-run under autograd."""

    @staticmethod
    def forward(ctx, qkv: torch.Tensor, residual: Optional[torch.Tensor], isca: IntraScaleChannelAttention,
                temperature: torch.Tensor, proj_weight: torch.Tensor) -> torch.Tensor:
        c = isca.dim
        qk, v = qkv[..., :2 * c], qkv[..., 2 * c:]
        gram = torch.bmm(qk.transpose(1, 2), qk)
        mixing = isca._mixing_from_gram(gram)
        ctx.isca = isca
        ctx.save_for_backward(qkv, gram, mixing)
        return isca.mixed(v, mixing, residual, v.shape)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor):
        qkv, gram, mixing = ctx.saved_tensors
        isca = ctx.isca
        c = isca.dim
        qk, v = qkv[..., :2 * c], qkv[..., 2 * c:]
        with torch.enable_grad():
            leaf = gram.detach().requires_grad_()
            d_gram, d_temp, d_proj = torch.autograd.grad(
                isca._mixing_from_gram(leaf), (leaf, isca.temperature, isca.proj.weight),
                torch.bmm(v.transpose(1, 2), grad))
        d_qkv = torch.empty_like(qkv)
        torch.bmm(qk, d_gram + d_gram.transpose(1, 2), out=d_qkv[..., :2 * c])
        torch.bmm(grad, mixing.transpose(1, 2), out=d_qkv[..., 2 * c:])
        return d_qkv, grad if ctx.needs_input_grad[1] else None, None, d_temp, d_proj


class IntraScaleChannelAttention(nn.Module):
    """ISCA: per-head ``(C/h x C/h)`` channel attention over the whole map (Eq. 2).

    Q = DW3x3(Conv1x1(C->C)), K, V = DW3x3(Conv1x1(C->2C)) (computed as one fused 1x1 + depthwise pass, which is
    the same operation and parameter count); q and k are L2-normalised along the spatial axis (applied to the small
    ``d x d`` product instead of the maps), scaled by a learnable per-head temperature, softmax-ed and applied to V;
    output Linear(C->C). Applying the attention and the output projection is one ``C x C`` product,
    ``V @ (blockdiag(A_h^T) W_p^T)``. Input and output are channels-last ``(B, H, W, C)``.

    Training with one head (level 1 of the paper's MPT) takes ``_OneHeadProduct``, whose backward is two GEMMs.
    Inference on the CPU evaluates the same function in two passes over row strips (``mpt_arch.inference``).
    """

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f'ISCA dim {dim} is not divisible by heads {heads}')
        self.dim, self.heads = dim, heads
        self.qkv = Projection(dim, 3 * dim)
        self.qkv_dw = nn.Conv2d(3 * dim, 3 * dim, 3, padding=1, groups=3 * dim, bias=False)
        self.temperature = nn.Parameter(torch.ones(heads, 1, 1))
        self.proj = Projection(dim, dim)

    def forward(self, x: torch.Tensor, residual: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``x``: layer-normalised ``(B, H, W, C)``; returns ``(B, H, W, C)`` (``+ residual`` if given)."""
        b, h, w, c = x.shape
        qkv = self.qkv_dw(self.qkv(x).permute(0, 3, 1, 2)).permute(0, 2, 3, 1).reshape(b, h * w, 3 * c)
        if self.heads == 1 and custom_backward(x):
            res = None if residual is None else residual.reshape(b, h * w, c)
            return _OneHeadProduct.apply(qkv, res, self, self.temperature, self.proj.weight).view(x.shape)
        q, k, v = qkv.split(c, dim=-1)  # split (not slicing): its backward concatenates instead of zero-filling
        if q.dtype == torch.float16:  # q^T k and the norms sum over all H x W pixels: fp16 overflows at 256^2
            with torch.autocast(x.device.type, enabled=False):
                mixing = self._products(q.float(), k.float()).to(v.dtype)  # M itself is bounded (softmax, W_p)
        else:
            mixing = self._products(q, k)
        return self.mixed(v, mixing, residual, x.shape)

    def _products(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """:meth:`mixing` of ``q``, ``k`` ``(B, HW, C)``: the per-head products ``q_h^T k_h`` and squared norms."""
        d = self.dim // self.heads  # per-head strided views (split, whose backward concatenates) go to bmm
        gram = torch.stack([torch.bmm(qh.transpose(1, 2), kh) for qh, kh in zip(q.split(d, -1), k.split(d, -1))], 1)
        # spatial squared L2 norms; square().sum() is ~2x faster than vector_norm over this strided axis on CPU
        return self.mixing(gram, q.square().sum(1), k.square().sum(1))

    def mixing(self, gram: torch.Tensor, sq_q: torch.Tensor, sq_k: torch.Tensor) -> torch.Tensor:
        """Eq. (2) from the per-head products ``gram = q_h^T k_h`` ``(B, heads, d, d)`` and the squared spatial
        norms ``(B, C)`` of q and k: returns ``M = blockdiag(A_h^T) W_p^T`` ``(B, C, C)``, so the output is ``V M``."""
        b, heads, d = gram.shape[0], self.heads, self.dim // self.heads
        inv_q = sq_q.clamp_min(1e-24).rsqrt().view(b, heads, d, 1)
        inv_k = sq_k.clamp_min(1e-24).rsqrt().view(b, heads, 1, d)
        attn = (gram * (inv_q * inv_k * self.temperature)).softmax(-1)  # b, heads, d, d
        proj_t = self.proj.weight.t().reshape(1, heads, d, self.dim)
        return torch.matmul(attn.transpose(-1, -2), proj_t).view(b, self.dim, self.dim)

    def _mixing_from_gram(self, gram: torch.Tensor) -> torch.Tensor:
        """:meth:`mixing` from the one-head Gram matrix ``[q k]^T [q k]`` ``(B, 2C, 2C)``."""
        c = self.dim
        sq = gram.diagonal(dim1=1, dim2=2)
        return self.mixing(gram[:, :c, c:].unsqueeze(1), sq[:, :c], sq[:, c:])

    @staticmethod
    def mixed(values: torch.Tensor, mixing: torch.Tensor, residual: Optional[torch.Tensor],
              shape: torch.Size) -> torch.Tensor:
        """``V M (+ residual)`` for ``V`` ``(B, H*W, C)``, viewed as ``shape`` ``(B, H, W, C)``."""
        out = torch.bmm(values, mixing) if residual is None else \
            torch.baddbmm(residual.reshape(values.shape), values, mixing)
        return out.view(shape)
