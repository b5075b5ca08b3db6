"""Validation and ``mpt-test`` inference of EFCRModel (``val.amp``, ``val.tile``): whole image by default, tiles as
``mpt-deblur`` runs them, autocast, bad values refused before anything runs."""

import pytest
import torch
from test_model_efcr import make_opt

import mpt_arch  # noqa: F401  (registers MPT)
from mpt_common.option_checks import check_val_options
from mpt_common.tiling import tiled_forward
from mpt_models import EFCRModel
from mpt_plugin.smoke import TINY_MPT

pytestmark = pytest.mark.usefixtures('one_thread')


def _model(**val):
    torch.manual_seed(0)
    opt = make_opt(network=TINY_MPT)
    opt['val'] = dict(val)
    return EFCRModel(opt)


def _lq(n=2, size=(40, 52)):
    return torch.rand(n, 1, *size, generator=torch.Generator().manual_seed(3))


def test_default_is_the_whole_image_as_sr_models_test():
    model = _model()
    model.lq = _lq()
    model.test()
    assert model.net_g.training  # put back as SRModel.test does
    model.net_g.eval()
    with torch.no_grad():
        whole = model.net_g(model.lq)
    assert model.val_tile == 'auto'
    torch.testing.assert_close(model.output, whole, rtol=0, atol=1e-6)


def test_val_tile_runs_mpt_deblurs_tiles_sample_by_sample():
    model = _model(tile=100)
    model.lq = _lq(size=(120, 104))
    model.test()
    model.net_g.eval()
    expected = torch.cat([tiled_forward(model.net_g, s, 100) for s in model.lq.split(1)])
    with torch.no_grad():
        whole = model.net_g(model.lq)
    torch.testing.assert_close(model.output, expected, rtol=0, atol=1e-6)
    assert (model.output - whole).abs().max() > 1e-5  # tiles, not the whole image


def test_auto_tiles_an_image_that_does_not_fit_the_free_memory(monkeypatch):
    from mpt_common import tiling

    monkeypatch.setattr(tiling, 'free_memory', lambda device: 2 * 128 * 128 * 130 * TINY_MPT['dim'])  # 128^2 fits
    model = _model()
    model.lq = _lq(n=1, size=(300, 120))
    model.test()
    model.net_g.eval()
    tile, _ = tiling.auto_tile(model.net_g, 300, 120, torch.device('cpu'))
    assert 0 < tile < 300
    torch.testing.assert_close(model.output, tiled_forward(model.net_g, model.lq, tile), rtol=0, atol=1e-6)


def test_val_amp_bf16_runs_under_autocast_and_returns_float32():
    fp32, bf16 = _model(), _model(amp='bf16')
    bf16.net_g.load_state_dict(fp32.net_g.state_dict())
    seen = []
    bf16.net_g.register_forward_hook(lambda m, i, o: seen.append(torch.is_autocast_enabled('cpu')))
    for model in (fp32, bf16):
        model.lq = _lq()
        model.test()
    assert seen == [True, True] and bf16.output.dtype == torch.float32
    assert (bf16.output - fp32.output).abs().max() < 0.05
    assert not torch.equal(bf16.output, fp32.output)


@pytest.mark.parametrize('val, message', [({'amp': 'fp8'}, "val.amp: 'fp8' is not one of bf16, fp16, false"),
                                          ({'tile': -4}, 'val.tile: -4 must be auto'),
                                          ({'tile': 64}, 'a tile size of at least 97 pixels')])
def test_bad_values_are_refused_at_start_up_and_by_the_model(val, message):
    opt = make_opt(network=TINY_MPT)
    opt['val'] = val
    problems = check_val_options(opt)
    assert len(problems) == 1 and message in problems[0]
    with pytest.raises(ValueError, match=f'val.{next(iter(val))} must be'):
        EFCRModel(opt)


def test_the_schema_knows_the_models_val_keys_and_refuses_others():
    from mpt_common.option_checks import check_schema

    opt = make_opt(network=TINY_MPT)
    opt['val'] = {'amp': 'bf16', 'tile': 'auto', 'metrics': {}}
    assert check_schema(opt, required=False).problems == []
    opt['val'] = {'tiles': 64}
    assert any("'tiles'" in p and "'tile'" in p for p in check_schema(opt, required=False).problems)
    opt['val'] = {'tile': 'big'}
    assert any('val.tile' in p for p in check_schema(opt, required=False).problems)
