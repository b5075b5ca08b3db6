"""EFCRModel (L1 + EFCR, paper Eq. 7) on a tiny SwinIR: modes, extra forward passes, optimizers, errors."""

import copy

import pytest
import torch
from basicsr.models.sr_model import SRModel

import mpt_losses  # noqa: F401  (registers EFCRLoss)
from mpt_models import EFCRModel
from mpt_models.efcr_model import EFCR_MODES

pytestmark = pytest.mark.usefixtures('one_thread')


TINY_SWINIR = {'type': 'SwinIR', 'img_size': 16, 'embed_dim': 12, 'depths': [1], 'num_heads': [1],
               'window_size': 4, 'mlp_ratio': 2, 'upscale': 1, 'upsampler': '', 'in_chans': 1}
EXPECTED_FORWARDS = {'basic': 2, 'basic_v1': 1, 'extra_labeled': 3, 'extra_labeled_v1': 2, 'extra_unlabeled': 2}


def make_opt(network=None, efcr_opt=None, efcr_mode=None, optim=None, **train):
    train_opt = {'optim_g': optim or {'type': 'Adam', 'lr': 1e-3},
                 'scheduler': {'type': 'CosineAnnealingRestartLR', 'periods': [10], 'eta_min': 1e-6},
                 'total_iter': 10, 'pixel_opt': {'type': 'L1Loss', 'loss_weight': 1.0}, **train}
    if efcr_opt is not None:
        train_opt['efcr_opt'] = efcr_opt
    if efcr_mode is not None:
        train_opt['efcr_mode'] = efcr_mode
    return {'name': 'efcr_unit', 'model_type': 'EFCRModel', 'num_gpu': 0, 'is_train': True, 'dist': False,
            'rank': 0, 'world_size': 1, 'network_g': copy.deepcopy(network or TINY_SWINIR),
            'path': {'pretrain_network_g': None, 'strict_load_g': True}, 'train': train_opt}


def make_batch(channels=1, size=16, n=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    keys = ('lq', 'gt', 'extra_lq', 'extra_gt')
    return {key: torch.rand(n, channels, size, size, generator=g) for key in keys}


def build(cls=EFCRModel, seed=0, **kwargs):
    torch.manual_seed(seed)
    return cls(make_opt(**kwargs))


def count_forwards(model, batch):
    """Run one optimisation step; return the outputs of every net_g forward (grad retained)."""
    outputs = []

    def hook(_module, _inputs, output):
        output.retain_grad()
        outputs.append(output)

    handle = model.net_g.register_forward_hook(hook)
    model.feed_data(batch)
    model.optimize_parameters(1)
    handle.remove()
    return outputs


@pytest.mark.parametrize('mode', list(EFCR_MODES))
def test_each_mode_runs_the_extra_forwards_in_the_graph_and_logs_terms(mode):
    model = build(efcr_opt={'type': 'EFCRLoss', 'loss_weight': 1.0}, efcr_mode=mode)
    outputs = count_forwards(model, make_batch())
    assert len(outputs) == EXPECTED_FORWARDS[mode]
    for out in outputs:  # every forward (main, extra pair, re-blurred input) receives a gradient
        assert out.grad is not None and out.grad.abs().sum() > 0
    expected = {'l_pix', 'l_pos', 'l_neg', 'l_efcr'} | ({'l_ext'} if EFCR_MODES[mode].reblur_source else set())
    assert set(model.log_dict) == expected
    assert all(torch.isfinite(torch.tensor(v)) for v in model.log_dict.values())


def test_extended_forward_gradient_comes_only_from_efcr():
    """The re-blur forward's output gets a gradient only through Lext (Eq. 6); with V1 it has none."""
    model = build(efcr_opt={'type': 'EFCRLoss', 'loss_weight': 1.0}, efcr_mode='basic')
    outputs = count_forwards(model, make_batch())
    main, reblurred = outputs
    assert reblurred.grad.abs().sum() > 0
    assert not torch.equal(main.grad, reblurred.grad)


def test_efcr_on_and_off_give_different_weights_and_off_equals_srmodel():
    batches = [make_batch(seed=s) for s in range(3)]

    def train(cls, **kwargs):
        model = build(cls, **kwargs)
        for it, batch in enumerate(batches, 1):
            model.feed_data(batch)
            model.optimize_parameters(it)
        return torch.cat([p.detach().flatten() for p in model.net_g.parameters()])

    off = train(EFCRModel)
    on = train(EFCRModel, efcr_opt={'type': 'EFCRLoss', 'loss_weight': 1e-2}, efcr_mode='basic')
    plain = train(SRModel)
    assert torch.equal(off, plain)  # no efcr_opt: exactly SRModel's training
    assert not torch.allclose(on, off, rtol=0, atol=1e-7)


def test_adamw_and_other_torch_optimizers():
    model = build(optim={'type': 'AdamW', 'lr': 1e-4, 'betas': [0.9, 0.999], 'weight_decay': 1e-4})
    assert type(model.optimizer_g) is torch.optim.AdamW
    group = model.optimizer_g.param_groups[0]
    assert group['weight_decay'] == 1e-4 and tuple(group['betas']) == (0.9, 0.999) and group['lr'] == 1e-4
    assert type(build(optim={'type': 'Adam', 'lr': 1e-4}).optimizer_g) is torch.optim.Adam
    assert type(build(optim={'type': 'SGD', 'lr': 1e-2, 'momentum': 0.9}).optimizer_g) is torch.optim.SGD
    with pytest.raises(NotImplementedError, match='NoSuchOptimizer'):
        build(optim={'type': 'NoSuchOptimizer', 'lr': 1e-4})


def test_positive_bands_default_per_mode_and_override():
    assert build(efcr_opt={'type': 'EFCRLoss'}).cri_efcr.positive_bands == 'all'
    assert build(efcr_opt={'type': 'EFCRLoss'}, efcr_mode='extra_labeled').cri_efcr.positive_bands == 'high'
    explicit = build(efcr_opt={'type': 'EFCRLoss', 'positive_bands': 'all'}, efcr_mode='extra_labeled_v1')
    assert explicit.cri_efcr.positive_bands == 'all'
    assert build(efcr_opt={'type': 'EFCRLoss'}).efcr_mode_name == 'basic'  # default mode


def test_efcr_value_matches_loss_on_the_mode_tensors():
    """extra_unlabeled: L+/L- from the training pair, Lext' normalised by extra_lq (Eq. 10)."""
    model = build(efcr_opt={'type': 'EFCRLoss', 'loss_weight': 1.0}, efcr_mode='extra_unlabeled',
                  efcr_reblur={'seed': 3})
    batch = make_batch()
    model.feed_data(batch)
    model.net_g.eval()  # deterministic forwards to recompute the value
    with torch.no_grad():
        model.output = model.net_g(model.lq)
        value = model.compute_efcr()
        b_in = mpt_losses.random_gaussian_reblur(batch['extra_lq'], generator=torch.Generator().manual_seed(3))
        expected = model.cri_efcr(model.output, batch['gt'], batch['lq'], reblur_out=model.net_g(b_in),
                                  reblur_in=b_in, reblur_source=batch['extra_lq'])
    assert value.item() == pytest.approx(expected.item(), rel=1e-6)


@pytest.mark.parametrize('mode, drop', [('extra_labeled', 'extra_gt'), ('extra_labeled_v1', 'extra_lq'),
                                        ('extra_unlabeled', 'extra_lq')])
def test_missing_extra_keys_give_a_clear_error(mode, drop):
    model = build(efcr_opt={'type': 'EFCRLoss'}, efcr_mode=mode)
    batch = make_batch()
    del batch[drop]
    model.feed_data(batch)
    with pytest.raises(ValueError, match=f'{mode}.*{drop}.*extra_dataset'):
        model.optimize_parameters(1)


def test_unknown_mode_and_unknown_reblur_key():
    with pytest.raises(ValueError, match="Unknown train.efcr_mode 'fancy'"):
        build(efcr_opt={'type': 'EFCRLoss'}, efcr_mode='fancy')
    with pytest.raises(ValueError, match='efcr_reblur has unknown'):
        build(efcr_opt={'type': 'EFCRLoss'}, efcr_reblur={'sizes': [3]})
    with pytest.raises(ValueError, match='efcr_reblur: .*odd'):
        build(efcr_opt={'type': 'EFCRLoss'}, efcr_reblur={'kernel_sizes': [3, 4]})


def test_rgb_swinir_and_custom_reblur_sizes():
    model = build(network={**TINY_SWINIR, 'in_chans': 3}, efcr_opt={'type': 'EFCRLoss'},
                  efcr_reblur={'kernel_sizes': [5], 'sigma': 2.0})
    assert model.reblur_kernel_sizes == (5,) and model.reblur_sigma == 2.0
    assert len(count_forwards(model, make_batch(channels=3))) == 2


TINY_MPT = {'type': 'MPT', 'in_chans': 1, 'dim': 8, 'num_blocks': [2, 2, 2, 2], 'heads': [1, 1, 2, 2],
            'scales': [[0.5, 1], [0.5, 1], [0.5, 1], [1, 1]], 'window_size': 4}


def test_mpt_extra_labeled_step_trains_through_every_forward():
    import mpt_arch  # noqa: F401  (registers MPT)

    model = build(network=TINY_MPT, efcr_opt={'type': 'EFCRLoss', 'loss_weight': 1.0}, efcr_mode='extra_labeled',
                  optim={'type': 'AdamW', 'lr': 1e-3, 'betas': [0.9, 0.999], 'weight_decay': 1e-4})
    assert type(model.net_g).__name__ == 'MPT'
    before = [p.detach().clone() for p in model.net_g.parameters()]
    outputs = count_forwards(model, make_batch(n=1))
    assert len(outputs) == 3  # net(lq), net(extra_lq), net(reblur(extra_lq))
    assert all(out.grad is not None and out.grad.abs().sum() > 0 for out in outputs)
    assert {'l_pix', 'l_pos', 'l_neg', 'l_ext', 'l_efcr'} == set(model.log_dict)
    assert any(not torch.equal(b, p) for b, p in zip(before, model.net_g.parameters()))
