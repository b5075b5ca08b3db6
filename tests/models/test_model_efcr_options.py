"""EFCRModel's start-up options, messages and step bookkeeping (perceptual terms, EMA, gradient-norm logging)."""

import copy

import pytest
import torch
from test_model_efcr import build, make_batch

from helpers.raised import raised
from mpt_losses.reblur import DEFAULT_KERNEL_SIZES, DEFAULT_SIGMA, random_gaussian_reblur

pytestmark = pytest.mark.usefixtures('one_thread')
EFCR = {'type': 'EFCRLoss'}


def _error(**kwargs) -> str:
    return raised(ValueError, build, **kwargs)


def test_start_up_errors_name_the_key_and_the_choices():
    assert _error(efcr_opt=EFCR, efcr_mode='fancy') == (
        "Unknown train.efcr_mode 'fancy'; choose one of basic, basic_v1, extra_labeled, extra_labeled_v1, "
        'extra_unlabeled')
    assert _error(efcr_opt=None, efcr_mode='fancy').startswith("Unknown train.efcr_mode 'fancy'")
    assert _error(efcr_opt=EFCR, efcr_reblur={'sizes': [3], 'seed': 1, 'blur': 2}) == (
        "train.efcr_reblur has unknown key(s) ['blur', 'sizes']; allowed: kernel_sizes, sigma, seed")
    assert _error(efcr_opt=EFCR, efcr_reblur={'kernel_sizes': [3, 4]}) == (
        'train.efcr_reblur: Gaussian kernel size must be a positive odd integer, got 4')
    assert _error(efcr_opt=EFCR, efcr_reblur={'sigma': 0}) == 'train.efcr_reblur: Gaussian sigma must be > 0, got 0.0'


@pytest.mark.parametrize('mode, drop, missing', [('extra_labeled', ('extra_gt',), 'extra_gt'),
                                                 ('extra_labeled', ('extra_lq', 'extra_gt'), 'extra_lq, extra_gt'),
                                                 ('extra_unlabeled', ('extra_lq',), 'extra_lq')])
def test_missing_batch_keys_message(mode, drop, missing):
    model = build(efcr_opt=EFCR, efcr_mode=mode)
    batch = {k: v for k, v in make_batch().items() if k not in drop}
    model.feed_data(batch)
    with pytest.raises(ValueError) as err:
        model.optimize_parameters(1)
    assert str(err.value) == (
        f"train.efcr_mode {mode!r} needs the batch key(s) {missing}, which the training batch lacks: attach an extra "
        'dataset with datasets.train.extra_dataset (labeled for extra_labeled*, any for extra_unlabeled)')


def test_defaults():
    model = build(efcr_opt=EFCR)
    assert model.efcr_mode_name == 'basic' and model.cri_efcr.positive_bands == 'all'
    assert model.reblur_kernel_sizes == DEFAULT_KERNEL_SIZES and model.reblur_sigma == DEFAULT_SIGMA
    assert model.reblur_generator is None and model.grad_norm_freq == 0
    assert build(efcr_opt=EFCR, log_grad_norm_freq=None).grad_norm_freq == 0


def test_reblur_seed_makes_the_draws_reproducible():
    x = torch.rand(64, 1, 9, 9)
    a, b, c = (build(efcr_opt=EFCR, efcr_reblur={'seed': s, 'sigma': 1.5}) for s in (3, 3, 4))
    assert torch.equal(a.reblur(x), b.reblur(x)) and not torch.equal(a.reblur(x), c.reblur(x))
    expected = random_gaussian_reblur(x, DEFAULT_KERNEL_SIZES, 1.5, torch.Generator().manual_seed(3))
    assert torch.equal(build(efcr_opt=EFCR, efcr_reblur={'seed': 3, 'sigma': 1.5}).reblur(x), expected)


def test_mode_without_efcr_opt_is_ignored_with_a_warning(basicsr_log):
    model = build(efcr_opt=None, efcr_mode='extra_labeled')
    assert model.cri_efcr is None and model.efcr_mode is None and model.efcr_mode_name is None
    assert ("train.efcr_mode 'extra_labeled' is ignored: no train.efcr_opt, so training uses the pixel loss only."
            in basicsr_log.text)


def test_feed_data_sets_and_clears_the_extra_keys():
    model = build(efcr_opt=EFCR, efcr_mode='extra_labeled')
    batch = make_batch()
    model.feed_data(batch)
    assert torch.equal(model.extra_lq, batch['extra_lq']) and torch.equal(model.extra_gt, batch['extra_gt'])
    model.feed_data({'lq': batch['lq'], 'gt': batch['gt']})
    assert model.extra_lq is None and model.extra_gt is None


def test_gradient_norms_are_logged_every_n_iterations():
    model = build(efcr_opt=EFCR, log_grad_norm_freq=2)
    for it, logged in ((1, False), (2, True), (3, False), (4, True)):
        model.feed_data(make_batch(seed=it))
        model.optimize_parameters(it)
        assert ({'grad_pix', 'grad_efcr'} <= set(model.log_dict)) is logged, it
    assert set(model.log_dict) == {'l_pix', 'l_pos', 'l_neg', 'l_ext', 'l_efcr', 'grad_pix', 'grad_efcr'}
    assert model.log_dict['l_efcr'] == pytest.approx(model.cri_efcr.last_terms['l_efcr'].item())


def _sgd_step(perceptual=None):
    model = build(efcr_opt=EFCR, optim={'type': 'SGD', 'lr': 0.5})
    if perceptual is not None:
        model.cri_perceptual = perceptual
    model.feed_data(make_batch())
    model.optimize_parameters(1)
    return model


@pytest.mark.parametrize('which', ['l_percep', 'l_style'])
def test_perceptual_terms_are_added_and_logged(which):
    def perceptual(out, gt):
        term = 100.0 * (out - gt).pow(2).mean()
        return (term, None) if which == 'l_percep' else (None, term)

    plain, with_term = _sgd_step(), _sgd_step(perceptual)
    assert which in with_term.log_dict and ({'l_percep', 'l_style'} - {which}).isdisjoint(with_term.log_dict)
    assert 'l_percep' not in plain.log_dict
    assert any(not torch.equal(a, b) for a, b in zip(plain.net_g.parameters(), with_term.net_g.parameters()))


def test_ema_follows_the_trained_weights():
    model = build(efcr_opt=EFCR, ema_decay=0.25)
    ema_before = [p.detach().clone() for p in model.net_g_ema.parameters()]
    model.feed_data(make_batch())
    model.optimize_parameters(1)
    for ema, old, new in zip(model.net_g_ema.parameters(), ema_before, model.net_g.parameters()):
        torch.testing.assert_close(ema, 0.25 * old + 0.75 * new.detach())


def test_one_step_descends_the_sum_of_the_losses():
    """One SGD step equals w - lr * grad(L1 + perceptual + style + beta * L_CR), the sum written out by hand with
    the same re-blur draw (Eq. 7 added to the pixel loss)."""
    from mpt_losses import EFCRLoss

    lr, beta, seed = 0.05, 0.5, 7
    model = build(efcr_opt={'type': 'EFCRLoss', 'loss_weight': beta}, efcr_reblur={'seed': seed},
                  optim={'type': 'SGD', 'lr': lr})
    model.cri_perceptual = lambda out, gt: (3.0 * (out - gt).pow(2).mean(), (out - gt).abs().pow(3).mean())
    net = copy.deepcopy(model.net_g)
    batch = make_batch()
    model.feed_data(batch)
    model.optimize_parameters(1)

    lq, gt = batch['lq'], batch['gt']
    out = net(lq)
    reblur_in = random_gaussian_reblur(lq, DEFAULT_KERNEL_SIZES, DEFAULT_SIGMA, torch.Generator().manual_seed(seed))
    l_cr = EFCRLoss(loss_weight=beta)(out, gt, lq, reblur_out=net(reblur_in), reblur_in=reblur_in, reblur_source=lq)
    total = (out - gt).abs().mean() + 3.0 * (out - gt).pow(2).mean() + (out - gt).abs().pow(3).mean() + l_cr
    grads = torch.autograd.grad(total, list(net.parameters()))
    for trained, start, grad in zip(model.net_g.parameters(), net.parameters(), grads):
        torch.testing.assert_close(trained.detach(), start.detach() - lr * grad, rtol=1e-4, atol=1e-6)


def test_start_up_log_lines(basicsr_log):
    model = build(efcr_opt=EFCR, efcr_reblur={'kernel_sizes': [3, 5], 'sigma': 2})
    assert f"EFCR mode 'basic': {model.cri_efcr}, re-blur kernel sizes (3, 5), sigma 2.0" in basicsr_log.text
    basicsr_log.clear()
    build(efcr_opt=None)  # plain pixel-loss training: nothing to warn about
    assert 'ignored' not in basicsr_log.text and 'EFCR mode' not in basicsr_log.text


def test_feed_data_moves_the_extra_keys_to_the_model_device():
    model = build(efcr_opt=EFCR, efcr_mode='extra_labeled')
    model.device = torch.device('meta')  # nothing is computed on meta; only where tensors go is checked
    model.feed_data(make_batch())
    assert model.lq.device.type == model.extra_lq.device.type == model.extra_gt.device.type == 'meta'
