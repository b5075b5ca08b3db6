"""No-reference validation: an unlabeled val set with calculate_sharpness works in EFCRModel/SRModel validation."""

import pytest
import torch
from basicsr.data import build_dataloader, build_dataset
from basicsr.models import build_model
from basicsr.utils.registry import METRIC_REGISTRY

from mpt_plugin import autoload, patches
from mpt_plugin.smoke import smoke_options, write_pairs

CALLS = []


pytestmark = pytest.mark.usefixtures('one_thread')


def spy_no_reference(img, img2=None, **kwargs):
    CALLS.append(img2 is None)
    return 1.0


if 'spy_no_reference' not in METRIC_REGISTRY:
    METRIC_REGISTRY.register(spy_no_reference)


@pytest.mark.parametrize('model_type', ['EFCRModel', 'SRModel'])
def test_unlabeled_validation_scores_outputs_without_a_stale_gt(tmp_path, model_type):
    patches.apply()
    autoload.import_plugins()  # registrations, also when MPT_BASICSR_PLUGIN=0
    write_pairs(str(tmp_path / 'data'), count=2, size=16)
    opt = smoke_options(str(tmp_path / 'data'), model_type=model_type, efcr=model_type == 'EFCRModel')
    opt['datasets']['val'] = {'type': 'UnlabeledDefocusDataset', 'name': 'unlabeled', 'phase': 'val', 'in_chans': 1,
                              'dataroot_lq': str(tmp_path / 'data' / 'lq'), 'io_backend': {'type': 'disk'}}
    opt['val']['metrics'] = {'sharpness': {'type': 'calculate_sharpness'}, 'spy': {'type': 'spy_no_reference'}}
    if model_type == 'SRModel':  # BasicSR 1.4.2's own models know only Adam
        opt['train']['optim_g'] = {'type': 'Adam', 'lr': 1.0e-3}
    opt.update(is_train=True, dist=False, rank=0, world_size=1, auto_resume=False)
    opt['path'].update(models=str(tmp_path), training_states=str(tmp_path), visualization=str(tmp_path))
    model = build_model(opt)
    model.feed_data({'lq': torch.rand(2, 1, 16, 16), 'gt': torch.rand(2, 1, 16, 16)})  # a training batch
    model.optimize_parameters(1)
    val_loader = build_dataloader(build_dataset(opt['datasets']['val']), opt['datasets']['val'], num_gpu=0)
    CALLS.clear()
    model.validation(val_loader, current_iter=1, tb_logger=None, save_img=False)
    assert CALLS == [True, True]  # no image was paired with the stale training gt
    assert model.metric_results['sharpness'] > 0
