"""EFCRLoss (paper Eqs. 4-10) against an independent numpy / PyWavelets computation."""

import numpy as np
import pytest
import pywt
import torch
from basicsr.losses import build_loss

from helpers.raised import raised
from mpt_losses import EFCRLoss


def _np_bands(img: np.ndarray):
    """(LL, concatenated high bands) of one C x H x W image with pywt."""
    coeffs = [pywt.dwt2(channel, 'haar') for channel in img]
    low = np.stack([c[0] for c in coeffs])
    high = np.stack([band for c in coeffs for band in c[1]])
    return low, high


def _l1(a, b):
    return np.abs(a - b).sum()


def _np_terms(out, gt, lq, b_out=None, b_in=None, b_src=None, positive='all'):
    """Per-sample L+, L-, Lext with the paper's L1 norms (sums) divided by the element count."""
    pos, neg, ext = [], [], []
    for i in range(out.shape[0]):
        o_l, o_h = _np_bands(out[i])
        g_l, g_h = _np_bands(gt[i])
        _, q_h = _np_bands(lq[i])
        p = _l1(o_h, g_h) / o_h.size
        if positive == 'all':
            p += _l1(o_l, g_l) / o_l.size
        pos.append(p)
        neg.append(_l1(o_h, q_h) / o_h.size)
        if b_out is not None:
            _, bo_h = _np_bands(b_out[i])
            _, bi_h = _np_bands(b_in[i])
            _, s_h = _np_bands(b_src[i])
            ext.append(_l1(bo_h, bi_h) / _l1(s_h, bi_h))  # Eq. 6 / 10: ratio of L1 norms
    return np.array(pos), np.array(neg), (np.array(ext) if ext else None)


def _batch(n=3, c=2, h=10, w=14, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.rand(n, c, h, w, generator=g, dtype=torch.float64) for _ in range(5)]


def test_eq4_eq5_eq6_eq7_basic_cr():
    out, gt, lq, b_out, b_in = _batch()
    loss = EFCRLoss(loss_weight=0.5, positive_bands='all', eps=1e-12)
    value, terms = loss(out, gt, lq, reblur_out=b_out, reblur_in=b_in, return_terms=True)
    pos, neg, ext = _np_terms(*(t.numpy() for t in (out, gt, lq, b_out, b_in, lq)))
    np.testing.assert_allclose(loss.positive(out, gt).numpy(), pos, rtol=1e-10)  # Eq. 4
    np.testing.assert_allclose(loss.negative(out, lq).numpy(), neg, rtol=1e-10)  # Eq. 5
    np.testing.assert_allclose(loss.extended(b_out, b_in, lq).numpy(), ext, rtol=1e-10)  # Eq. 6
    np.testing.assert_allclose(value.item(), 0.5 * np.mean(pos / (neg + ext)), rtol=1e-10)  # Eq. 7
    np.testing.assert_allclose(terms['l_pos'].item(), pos.mean(), rtol=1e-10)
    np.testing.assert_allclose(terms['l_neg'].item(), neg.mean(), rtol=1e-10)
    np.testing.assert_allclose(terms['l_ext'].item(), ext.mean(), rtol=1e-10)
    assert set(loss.last_terms) == {'l_pos', 'l_neg', 'l_ext', 'l_efcr'}
    assert loss.last_terms['l_efcr'].item() == pytest.approx(value.item())


def test_eq8_eq9_eq10_extra_pair_high_bands_and_odd_size():
    out, gt, lq, b_out, b_in = _batch(n=2, c=3, h=9, w=11, seed=1)
    loss = EFCRLoss(loss_weight=1.0, positive_bands='high', eps=1e-12)
    value = loss(out, gt, lq, reblur_out=b_out, reblur_in=b_in)
    pos, neg, ext = _np_terms(*(t.numpy() for t in (out, gt, lq, b_out, b_in, lq)), positive='high')
    np.testing.assert_allclose(loss.positive(out, gt).numpy(), pos, rtol=1e-10)  # Eq. 8
    np.testing.assert_allclose(loss.negative(out, lq).numpy(), neg, rtol=1e-10)  # Eq. 9
    np.testing.assert_allclose(loss.extended(b_out, b_in, lq).numpy(), ext, rtol=1e-10)  # Eq. 10
    np.testing.assert_allclose(value.item(), np.mean(pos / (neg + ext)), rtol=1e-10)
    # 'all' must differ from 'high' by the LL term
    assert not np.allclose(EFCRLoss(positive_bands='all').positive(out, gt).numpy(), pos)


def test_v1_without_extended_term_and_separate_reblur_source():
    out, gt, lq, b_out, b_in = _batch(seed=2)
    loss = EFCRLoss(loss_weight=2.0, eps=1e-12)
    pos, neg, _ = _np_terms(out.numpy(), gt.numpy(), lq.numpy())
    assert loss(out, gt, lq).item() == pytest.approx(2.0 * np.mean(pos / neg), rel=1e-10)
    assert 'l_ext' not in loss.last_terms
    # unlabeled-extra use: Lext' from another image of another size, normalised by that image (Eq. 10)
    src, e_in, e_out = (torch.rand(3, 2, 6, 8, dtype=torch.float64) for _ in range(3))
    value = loss(out, gt, lq, reblur_out=e_out, reblur_in=e_in, reblur_source=src)
    _, _, ext = _np_terms(e_out.numpy(), e_out.numpy(), e_out.numpy(), e_out.numpy(), e_in.numpy(), src.numpy())
    assert value.item() == pytest.approx(2.0 * np.mean(pos / (neg + ext)), rel=1e-10)


def test_gradients_flow_into_output_and_reblur_out():
    out, gt, lq, b_out, b_in = (t.float() for t in _batch(seed=3))
    out.requires_grad_(True)
    b_out.requires_grad_(True)
    EFCRLoss(loss_weight=1.0)(out, gt, lq, reblur_out=b_out, reblur_in=b_in).backward()
    for grad in (out.grad, b_out.grad):
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0
    # larger Lext lowers the loss: the gradient pushes B_out away from B_in in the high bands
    b_out2 = b_out.detach().clone().requires_grad_(True)
    loss = EFCRLoss(loss_weight=1.0)
    base = loss(out.detach(), gt, lq, reblur_out=b_out2, reblur_in=b_in)
    base.backward()
    stepped = loss(out.detach(), gt, lq, reblur_out=b_out2 - 1e-3 * b_out2.grad.sign(), reblur_in=b_in)
    assert stepped.item() < base.item()


def test_flat_patches_are_finite():
    flat = torch.full((2, 1, 8, 8), 0.3)
    out = flat.clone().requires_grad_(True)
    b_out = flat.clone().requires_grad_(True)
    loss = EFCRLoss(loss_weight=1e-5)
    value = loss(out, flat, flat, reblur_out=b_out, reblur_in=flat, reblur_source=flat)
    value.backward()
    assert torch.isfinite(value) and value.item() == 0.0
    assert torch.isfinite(out.grad).all() and torch.isfinite(b_out.grad).all()
    # zero normaliser (re-blur changed nothing) but a non-zero numerator: Lext vanishes instead of exploding
    noisy = (flat + 0.1 * torch.rand_like(flat)).requires_grad_(True)
    gt = torch.rand_like(flat)
    value = loss(noisy, gt, flat, reblur_out=noisy, reblur_in=flat, reblur_source=flat)
    value.backward()
    assert loss.last_terms['l_ext'].item() == 0.0
    assert torch.isfinite(value) and torch.isfinite(noisy.grad).all()
    # out == lq with gt different: denominator 0, eps keeps it finite
    out = flat.clone().requires_grad_(True)
    value = loss(out, gt, flat)
    value.backward()
    assert torch.isfinite(value) and value.item() > 0 and torch.isfinite(out.grad).all()


def test_shape_and_argument_errors():
    """Each refusal names the argument and both shapes (full messages, so a wrong name is caught)."""
    out, gt, lq, b_out, b_in = (t.float() for t in _batch())
    loss = EFCRLoss()
    shape, gt1 = tuple(out.shape), tuple(gt[:, :1].shape)
    assert raised(ValueError, loss, out, gt[:, :1], lq) == (
        f'EFCRLoss: gt has shape {gt1} but output has {shape}; they must match')
    assert raised(ValueError, loss, out, gt, lq[..., :8]) == (
        f'EFCRLoss: lq has shape {tuple(lq[..., :8].shape)} but output has {shape}; they must match')
    assert raised(ValueError, loss, out, gt, lq, reblur_out=b_out[..., :6], reblur_in=b_in) == (
        f'EFCRLoss: reblur_out has shape {tuple(b_out[..., :6].shape)} but reblur_in has {tuple(b_in.shape)}; '
        'they must match')
    assert raised(ValueError, loss, out, gt, lq, reblur_out=b_out, reblur_in=b_in, reblur_source=b_in[..., :6]) == (
        f'EFCRLoss: reblur_source has shape {tuple(b_in[..., :6].shape)} but reblur_in has {tuple(b_in.shape)}; '
        'they must match')
    assert raised(ValueError, loss, out, gt, lq, reblur_out=b_out[:1], reblur_in=b_in[:1],
                  reblur_source=lq[:1]) == (  # batch 1 (channels 2), output batch 3 (channels 2)
        'EFCRLoss: the extended samples have batch size 1 but output has 3; Eq. 7 pairs them per sample')
    assert raised(ValueError, loss, out, gt, lq, reblur_out=b_out) == (
        'EFCRLoss: reblur_out needs reblur_in (the re-blurred input it was computed from)')
    for extra in ({'reblur_in': b_in}, {'reblur_source': lq}):
        assert raised(ValueError, loss, out, gt, lq, **extra) == (
            'EFCRLoss: reblur_in / reblur_source were given without reblur_out')
    assert raised(ValueError, loss, out[0], gt[0], lq[0]) == (
        f'EFCRLoss: output must be N x C x H x W, got shape {shape[1:]}')
    assert raised(ValueError, loss, out, gt[0], lq) == f'EFCRLoss: gt must be N x C x H x W, got shape {shape[1:]}'
    assert raised(ValueError, loss, out, gt, lq, reblur_out=b_out, reblur_in=b_in[0]) == (
        f'EFCRLoss: reblur_in must be N x C x H x W, got shape {tuple(b_in.shape[1:])}')
    assert raised(TypeError, loss, out.numpy(), gt, lq) == 'EFCRLoss: output must be a torch.Tensor, got ndarray'
    assert raised(TypeError, loss, out, gt, lq, reblur_out=b_out, reblur_in=b_in, reblur_source=[0]) == (
        'EFCRLoss: reblur_source must be a torch.Tensor, got list')
    assert raised(ValueError, EFCRLoss, positive_bands='low') == (
        f"EFCRLoss: positive_bands must be one of {('all', 'high')}, got 'low'")
    for eps in (0.0, -1.0, float('nan')):
        assert raised(ValueError, EFCRLoss, eps=eps) == f'EFCRLoss: eps must be > 0, got {eps}'


def test_registered_in_basicsr():
    loss = build_loss({'type': 'EFCRLoss', 'loss_weight': 3e-5, 'positive_bands': 'high'})
    assert isinstance(loss, EFCRLoss) and loss.loss_weight == 3e-5 and loss.positive_bands == 'high'


def test_defaults_are_the_papers():
    loss = EFCRLoss()
    assert (loss.loss_weight, loss.positive_bands, loss.eps, loss.last_terms) == (1e-5, 'all', 1e-6, {})


def test_extended_term_vanishes_when_the_normaliser_equals_eps():
    """Eq. 6's normaliser at exactly eps counts as degenerate (docstring: "at or below it")."""
    reblur_in = torch.zeros(1, 1, 2, 2, dtype=torch.float64)
    source = torch.tensor([[[[0.5, 0.0], [0.0, 0.0]]]], dtype=torch.float64)  # every high band 0.25
    out = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]], dtype=torch.float64)
    assert EFCRLoss(eps=0.25).extended(out, reblur_in, source).item() == 0.0
    assert EFCRLoss(eps=0.125).extended(out, reblur_in, source).item() == pytest.approx(2.0)  # 0.5 / 0.25
