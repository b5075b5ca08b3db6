"""Extended Frequency Contrastive Regularization (EFCR), paper Sec. 3.2, Eqs. 4-10.

For every sample ``i`` of a batch (``f^l`` / ``f^h``: LL band / concatenated LH, HL, HH bands of
:func:`mpt_losses.haar.haar_dwt`; ``|.|`` below is the mean absolute value over the band's elements, the
paper's L1 norm divided by the element count):

* positive term (Eq. 4, ``positive_bands='all'``; Eq. 8, ``positive_bands='high'``)
  ``L+_i = |f^h(out) - f^h(gt)| (+ |f^l(out) - f^l(gt)|)``
* negative term (Eqs. 5, 9) ``L-_i = |f^h(out) - f^h(lq)|``
* extended term (Eqs. 6, 10) ``Lext_i = |f^h(B_out) - f^h(B_in)| / |f^h(src) - f^h(B_in)|`` with
  ``B_in`` the re-blurred input, ``B_out`` the network's output for it and ``src`` the image that was
  re-blurred (``lq`` unless ``reblur_source`` is given). A ratio of two L1 norms over equally sized tensors,
  so using means instead of sums leaves it unchanged.
* value (Eq. 7) ``loss_weight * mean_i L+_i / (L-_i + Lext_i + eps)``; without ``reblur_out`` the
  extended term is left out (Table 5's V1 / V_ex1).

Numerical safety: ``eps`` keeps the ratio finite when ``L-_i + Lext_i`` is 0 (a flat patch where
out = lq = gt gives 0 / eps = 0). When the normaliser of Eq. 6 is (below) ``eps`` the re-blur did not change
the high frequencies of that sample at all (e.g. a constant patch): the relative measure is undefined and
carries no deblur signal, so ``Lext_i`` is set to 0 for that sample (the term vanishes) rather than
amplifying its numerator by ``1/eps``.

Unlike the authors' code, which evaluates every contrastive term under ``torch.no_grad``, gradients flow into
``output`` and ``reblur_out`` here, so the regularizer actually trains the network.
"""

from __future__ import annotations

from typing import Dict, Optional

import torch
from basicsr.utils.registry import LOSS_REGISTRY
from torch import nn

from .haar import haar_dwt

__all__ = ['EFCRLoss']

_POSITIVE_BANDS = ('all', 'high')


def _per_sample_l1(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference per sample (length-N vector)."""
    return (a - b).abs().flatten(1).mean(dim=1)


def _check_4d(name: str, tensor: torch.Tensor) -> None:
    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f'EFCRLoss: {name} must be a torch.Tensor, got {type(tensor).__name__}')
    if tensor.dim() != 4:
        raise ValueError(f'EFCRLoss: {name} must be N x C x H x W, got shape {tuple(tensor.shape)}')


def _check_same_shape(reference_name: str, reference: torch.Tensor, **others: torch.Tensor) -> None:
    _check_4d(reference_name, reference)
    for name, tensor in others.items():
        _check_4d(name, tensor)
        if tensor.shape != reference.shape:
            raise ValueError(f'EFCRLoss: {name} has shape {tuple(tensor.shape)} but {reference_name} has '
                             f'{tuple(reference.shape)}; they must match')


@LOSS_REGISTRY.register()
class EFCRLoss(nn.Module):
    """EFCR regularizer ``beta * L_CR`` of Eq. 7 (see module docstring for the terms).

    Args:
        loss_weight: the scaling factor beta (paper: 1e-5).
        positive_bands: ``'all'`` (LL + high bands, Eq. 4) or ``'high'`` (high bands only, Eq. 8).
        eps: added to the denominator of Eq. 7; normalisers of Eq. 6 at or below it make ``Lext_i`` vanish.

    Call ``loss(output, gt, lq, reblur_out=None, reblur_in=None, reblur_source=None, return_terms=False)``.
    ``output``, ``gt`` and ``lq`` share one shape; ``reblur_out``, ``reblur_in`` and ``reblur_source``
    (default ``lq``) share one shape with the same batch size (their spatial size may differ, e.g. an extra
    image of another size). After each call ``self.last_terms`` holds detached batch means ``l_pos``,
    ``l_neg``, ``l_ext`` (only when the extended term was computed) and ``l_efcr`` (the returned value);
    with ``return_terms=True`` the call returns ``(value, terms)`` with the same (non-detached) entries.
    """

    def __init__(self, loss_weight: float = 1e-5, positive_bands: str = 'all', eps: float = 1e-6) -> None:
        super().__init__()
        if positive_bands not in _POSITIVE_BANDS:
            raise ValueError(f"EFCRLoss: positive_bands must be one of {_POSITIVE_BANDS}, got '{positive_bands}'")
        if not eps > 0:
            raise ValueError(f'EFCRLoss: eps must be > 0, got {eps}')
        self.loss_weight = float(loss_weight)
        self.positive_bands = positive_bands
        self.eps = float(eps)
        self.last_terms: Dict[str, torch.Tensor] = {}

    def extra_repr(self) -> str:
        return f'loss_weight={self.loss_weight}, positive_bands={self.positive_bands!r}, eps={self.eps}'

    def positive(self, output: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
        """Per-sample ``L+`` (Eq. 4 or Eq. 8 depending on ``positive_bands``)."""
        out_low, out_high = haar_dwt(output)
        gt_low, gt_high = haar_dwt(gt)
        term = _per_sample_l1(out_high, gt_high)
        if self.positive_bands == 'all':
            term = term + _per_sample_l1(out_low, gt_low)
        return term

    @staticmethod
    def negative(output: torch.Tensor, lq: torch.Tensor) -> torch.Tensor:
        """Per-sample ``L-`` (Eqs. 5, 9)."""
        return _per_sample_l1(haar_dwt(output)[1], haar_dwt(lq)[1])

    def extended(self, reblur_out: torch.Tensor, reblur_in: torch.Tensor, reblur_source: torch.Tensor) -> torch.Tensor:
        """Per-sample ``Lext`` (Eqs. 6, 10); 0 where the normaliser is <= eps (see module docstring)."""
        blurred_high = haar_dwt(reblur_in)[1]
        numerator = _per_sample_l1(haar_dwt(reblur_out)[1], blurred_high)
        normaliser = _per_sample_l1(haar_dwt(reblur_source)[1], blurred_high)
        valid = normaliser > self.eps
        return torch.where(valid, numerator / normaliser.clamp_min(self.eps), torch.zeros_like(numerator))

    def forward(self, output: torch.Tensor, gt: torch.Tensor, lq: torch.Tensor,
                reblur_out: Optional[torch.Tensor] = None, reblur_in: Optional[torch.Tensor] = None,
                reblur_source: Optional[torch.Tensor] = None, return_terms: bool = False):
        _check_same_shape('output', output, gt=gt, lq=lq)
        pos = self.positive(output, gt)
        neg = self.negative(output, lq)
        terms: Dict[str, torch.Tensor] = {'l_pos': pos.mean(), 'l_neg': neg.mean()}
        denominator = neg
        if reblur_out is None:
            if reblur_in is not None or reblur_source is not None:
                raise ValueError('EFCRLoss: reblur_in / reblur_source were given without reblur_out')
        else:
            if reblur_in is None:
                raise ValueError('EFCRLoss: reblur_out needs reblur_in (the re-blurred input it was computed from)')
            if reblur_source is None:
                reblur_source = lq
            _check_same_shape('reblur_in', reblur_in, reblur_out=reblur_out, reblur_source=reblur_source)
            if reblur_in.shape[0] != output.shape[0]:
                raise ValueError(f'EFCRLoss: the extended samples have batch size {reblur_in.shape[0]} but output '
                                 f'has {output.shape[0]}; Eq. 7 pairs them per sample')
            ext = self.extended(reblur_out, reblur_in, reblur_source)
            terms['l_ext'] = ext.mean()
            denominator = denominator + ext
        value = self.loss_weight * (pos / (denominator + self.eps)).mean()
        terms['l_efcr'] = value
        self.last_terms = {name: term.detach() for name, term in terms.items()}
        return (value, terms) if return_terms else value
