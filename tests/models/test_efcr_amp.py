"""Mixed precision in EFCRModel (train.amp): bf16 tracks fp32, the fp16 scaler survives a resume, bad values refused."""

import pytest
import torch
from test_model_efcr import make_batch, make_opt

import mpt_arch  # noqa: F401  (registers MPT)
import mpt_losses  # noqa: F401  (registers EFCRLoss)
from mpt_models import EFCRModel
from mpt_plugin.smoke import TINY_MPT

pytestmark = pytest.mark.usefixtures('one_thread')
EFCR = {'efcr_opt': {'type': 'EFCRLoss', 'loss_weight': 1e-5}, 'efcr_mode': 'basic'}


def _train(amp, iterations=30):
    torch.manual_seed(0)
    model = EFCRModel(make_opt(network=TINY_MPT, amp=amp, **EFCR))
    losses = []
    for it in range(1, iterations + 1):
        model.feed_data(make_batch(size=16, seed=it % 4))
        model.optimize_parameters(it)
        losses.append(float(model.log_dict['l_pix']))
    return model, losses


def test_bf16_training_ends_within_5_percent_of_fp32():
    _, fp32 = _train(False)
    model, bf16 = _train('bf16')
    final32, final16 = sum(fp32[-5:]) / 5, sum(bf16[-5:]) / 5
    assert final16 < 0.8 * bf16[0]  # it trains
    assert abs(final16 - final32) < 0.05 * final32, (final16, final32)
    assert model.output.dtype == torch.float32 and model.scaler is None  # losses see float32; no scaler for bf16


def test_fp16_scaler_state_is_saved_in_the_training_state_and_restored(tmp_path):
    from mpt_plugin import patches

    model, _ = _train('fp16', iterations=2)
    model.scaler.update(new_scale=512.0)
    model.opt['path']['training_states'] = str(tmp_path)
    patches.save_training_state(model, 0, 2)
    state = torch.load(tmp_path / '2.state', weights_only=True)
    assert state['grad_scaler']['scale'] == 512.0
    torch.manual_seed(1)
    resumed = EFCRModel(make_opt(network=TINY_MPT, amp='fp16', **EFCR))
    assert resumed.scaler.get_scale() != 512.0
    resumed.resume_training(state)
    assert resumed.scaler.get_scale() == 512.0
    plain = EFCRModel(make_opt(network=TINY_MPT, **EFCR))
    assert plain.extra_training_state() == {}


def test_amp_values_are_checked():
    from mpt_common.option_checks import check_train_options

    opt = make_opt(network=TINY_MPT, amp='fp8', **EFCR)
    assert check_train_options(opt) == ["train.amp: 'fp8' is not one of bf16, fp16, false"]
    with pytest.raises(ValueError, match='train.amp must be bf16, fp16 or false'):
        EFCRModel(opt)
