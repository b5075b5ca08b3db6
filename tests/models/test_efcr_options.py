"""The EFCR option files are valid YAML with the paper's hyper-parameters (one also runs: test_model_efcr_pipeline)."""

import glob
import os

import pytest
import yaml
from basicsr.archs import build_network  # noqa: F401  (imports BasicSR's archs: SwinIR registered)
from basicsr.losses import build_loss
from basicsr.utils.options import ordered_yaml
from basicsr.utils.registry import ARCH_REGISTRY, DATASET_REGISTRY

import mpt_arch  # noqa: F401
import mpt_data  # noqa: F401
import mpt_losses  # noqa: F401
import mpt_models  # noqa: F401
from helpers import REPO
from mpt_models.efcr_model import EFCR_MODES

ROOT = str(REPO)
OPTION_FILES = sorted(glob.glob(os.path.join(ROOT, 'options', 'train_*EFCR*.yml'))
                      + glob.glob(os.path.join(ROOT, 'options', 'efcr', '*.yml')))
TABLE_DATASETS = ('BBBC006_w1', 'BBBC006_w2', '3DHistech', 'CaDISBlur', 'DPDD')  # Tables 1 and 2
EXPECTED_MODES = {**{f'train_MPT_{name}_EFCR.yml': 'basic' for name in TABLE_DATASETS},
                  **{f'train_MPT_{name}_EFCRex.yml': 'extra_labeled' for name in TABLE_DATASETS},
                  'train_MPT_BBBC006_w1_EFCR_V1.yml': 'basic_v1',
                  'train_MPT_BBBC006_w1_EFCRex_Vex1.yml': 'extra_labeled_v1',
                  'train_MPT_LFDOF_EFCRex_WNLO_unlabeled.yml': 'extra_unlabeled',
                  'train_SwinIR_BBBC006_w1_EFCR.yml': 'basic'}


def _load(path):
    with open(path, encoding='utf-8') as f:
        return yaml.load(f, Loader=ordered_yaml()[0])


def test_every_mode_has_an_option_file():
    assert sorted(os.path.basename(p) for p in OPTION_FILES) == sorted(EXPECTED_MODES)
    assert set(EXPECTED_MODES.values()) == set(EFCR_MODES)


@pytest.mark.parametrize('path', OPTION_FILES, ids=os.path.basename)
def test_option_file_uses_paper_settings(path):
    opt = _load(path)
    train = opt['train']
    assert opt['model_type'] == 'EFCRModel'
    assert train['efcr_mode'] == EXPECTED_MODES[os.path.basename(path)]
    mode = EFCR_MODES[train['efcr_mode']]
    loss = build_loss(train['efcr_opt'])
    assert loss.loss_weight == 1e-5 and loss.positive_bands == mode.positive_bands
    assert train['pixel_opt']['type'] == 'L1Loss'
    assert train['optim_g'] == {'type': 'AdamW', 'fused': True, 'lr': 1e-4, 'betas': [0.9, 0.999],
                                'weight_decay': 1e-4}
    assert train['scheduler']['type'] == 'CosineAnnealingRestartLR'
    assert train['scheduler']['periods'] == [300000] and train['scheduler']['eta_min'] == 1e-6
    assert train['total_iter'] == 300000
    assert train['efcr_reblur'] == {'kernel_sizes': [3, 5, 7], 'sigma': 10}
    data = opt['datasets']['train']
    assert data['batch_size_per_gpu'] == 8 and data['gt_size'] == 256
    assert opt['network_g']['type'] in ARCH_REGISTRY
    for dataset in (data, opt['datasets']['val'], data.get('extra_dataset')):
        if dataset is not None:
            assert dataset['type'] in DATASET_REGISTRY
    extra = data.get('extra_dataset')
    if 'extra_gt' in mode.batch_keys:
        assert extra['type'] in ('PairedDefocusDataset', 'BBBC006Dataset')
    elif 'extra_lq' in mode.batch_keys:
        assert extra is not None
    else:
        assert extra is None


@pytest.mark.parametrize('name', TABLE_DATASETS)
@pytest.mark.parametrize('variant', ['EFCR', 'EFCRex'])
def test_efcr_variant_differs_from_the_plain_file_only_in_efcr_settings(name, variant):
    """A table row's EFCR run must train on exactly the data and schedule of its plain MPT row."""
    plain = _load(os.path.join(ROOT, 'options', f'train_MPT_{name}.yml'))
    other = _load(os.path.join(ROOT, 'options', f'train_MPT_{name}_{variant}.yml'))
    assert other['name'] == f"{plain['name']}_{variant}"
    for key in ('efcr_opt', 'efcr_mode', 'efcr_reblur'):
        assert key not in plain['train'] and key in other['train']
        other['train'].pop(key)
    extra = other['datasets']['train'].pop('extra_dataset', None)
    other['datasets']['train'].pop('extra_sampling', None)
    assert (extra is not None) == (variant == 'EFCRex')
    if extra is not None:
        assert extra['layout'] == 'lfdof' and extra['in_chans'] == plain['network_g']['in_chans']
    plain.pop('name'), other.pop('name')
    assert other == plain
