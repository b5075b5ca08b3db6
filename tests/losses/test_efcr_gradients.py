"""EFCR's gradients (the plugin's difference from the authors' ``no_grad`` terms) against finite differences of
an independent PyWavelets formulation: each term, and Eq. 7 with respect to the output and the re-blurred output."""

import numpy as np
import pytest
import torch
from test_efcr_loss import _np_terms

from mpt_losses import EFCRLoss

EPS = 1e-12  # the loss's denominator guard; the reference has none


def _np_value(out, gt, lq, b_out, b_in, b_src, positive):
    pos, neg, ext = _np_terms(out, gt, lq, b_out, b_in, b_src, positive)
    return float(np.mean(pos / (neg + ext + EPS)))


def _finite_difference(fn, x: np.ndarray, step: float = 1e-6) -> np.ndarray:
    grad = np.zeros_like(x)
    for idx in np.ndindex(*x.shape):
        plus, minus = x.copy(), x.copy()
        plus[idx] += step
        minus[idx] -= step
        grad[idx] = (fn(plus) - fn(minus)) / (2 * step)
    return grad


def _inputs(seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.rand(2, 1, 6, 8, generator=g, dtype=torch.float64) for _ in range(5)]


@pytest.mark.parametrize('positive', ['all', 'high'])
def test_eq7_gradient_matches_finite_differences(positive):
    out, gt, lq, b_out, b_in = _inputs()
    loss = EFCRLoss(loss_weight=1.0, positive_bands=positive, eps=EPS)
    out_t, b_out_t = out.clone().requires_grad_(), b_out.clone().requires_grad_()
    loss(out_t, gt, lq, reblur_out=b_out_t, reblur_in=b_in).backward()
    n = [t.numpy() for t in (out, gt, lq, b_out, b_in)]
    fd_out = _finite_difference(lambda o: _np_value(o, n[1], n[2], n[3], n[4], n[2], positive), n[0])
    fd_reblur = _finite_difference(lambda b: _np_value(n[0], n[1], n[2], b, n[4], n[2], positive), n[3])
    np.testing.assert_allclose(out_t.grad.numpy(), fd_out, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(b_out_t.grad.numpy(), fd_reblur, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize('term', ['positive', 'negative', 'extended'])
def test_each_term_gradient_matches_finite_differences(term):
    """L+ (Eq. 4), L- (Eq. 5) and Lext (Eq. 6) separately, each with respect to the tensor the network made."""
    out, gt, lq, b_out, b_in = _inputs(seed=1)
    loss = EFCRLoss(loss_weight=1.0, eps=EPS)
    n = [t.numpy() for t in (out, gt, lq, b_out, b_in)]
    index = {'positive': 0, 'negative': 1, 'extended': 2}[term]
    if term == 'extended':
        x = b_out.clone().requires_grad_()
        loss.extended(x, b_in, lq).sum().backward()
        fd = _finite_difference(lambda b: _np_terms(n[0], n[1], n[2], b, n[4], n[2])[index].sum(), n[3])
    else:
        x = out.clone().requires_grad_()
        (loss.positive(x, gt) if term == 'positive' else loss.negative(x, lq)).sum().backward()
        fd = _finite_difference(lambda o: _np_terms(o, n[1], n[2])[index].sum(), n[0])
    assert np.abs(fd).max() > 1e-3  # the term does depend on the tensor
    np.testing.assert_allclose(x.grad.numpy(), fd, rtol=1e-4, atol=1e-8)
