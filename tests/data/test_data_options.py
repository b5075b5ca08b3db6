"""Every dataset section of the Table 1/2 option files (train_/test_MPT_*.yml) builds on miniature replicas."""

import re
from pathlib import Path

import pytest
import yaml
from basicsr.data import build_dataset

from helpers import REPO
from helpers.layouts import make_bbbc006, make_dpdd, make_paired_folder
from mpt_data.bbbc006_dataset import is_test_well

OPTIONS = REPO / 'options'
EXPERIMENTS = ('BBBC006_w1', 'BBBC006_w2', 'BBBC006', '3DHistech', 'CaDISBlur', 'DPDD')


@pytest.fixture(scope='module')
def replica_root(tmp_path_factory):
    root = tmp_path_factory.mktemp('replicas')
    wells = [f'{r}{c:02d}' for r in 'abcdefgh' for c in range(1, 4)]
    assert any(is_test_well(w, 0.2) for w in wells) and not all(is_test_well(w, 0.2) for w in wells)
    make_bbbc006(root / 'BBBC006', wells=wells, sites=('1',))
    for split in ('train', 'val', 'test'):
        make_dpdd(root / 'DPDD', split, n=1)
    for split in ('train', 'test'):
        make_paired_folder(root / '3DHistech' / split / 'blur', root / '3DHistech' / split / 'gt', ['p1.png'])
        for folder in ('blur_anatomy', 'blur_instruments'):
            make_paired_folder(root / 'CaDISBlur' / split / folder, root / 'CaDISBlur' / split / 'sharp', ['f.png'])
    return root


def _load(path: Path) -> dict:
    text = path.read_text()
    return yaml.safe_load(text)


@pytest.mark.parametrize('experiment', EXPERIMENTS)
def test_option_files_build_their_datasets(experiment, replica_root):
    for kind in ('train', 'test'):
        path = OPTIONS / f'{kind}_MPT_{experiment}.yml'
        opt = _load(path)
        assert opt['model_type'] == 'EFCRModel' and opt['network_g']['type'] == 'MPT'
        assert opt['network_g']['dim'] == 40 and opt['network_g']['num_blocks'] == [6, 6, 6, 6]
        if kind == 'train':
            train = opt['train']
            assert train['optim_g']['type'] == 'AdamW' and train['optim_g']['weight_decay'] == 1e-4
            assert train['scheduler']['periods'] == [300000] and train['total_iter'] == 300000
            assert train['pixel_opt']['type'] == 'L1Loss' and 'efcr_opt' not in train
            ds_opt = opt['datasets']['train']
            assert ds_opt['batch_size_per_gpu'] == 8 and ds_opt['gt_size'] == 256
        for phase, ds_opt in opt['datasets'].items():
            ds_opt = yaml.safe_load(re.sub(r'datasets/', f'{replica_root}/', yaml.safe_dump(ds_opt)))
            ds_opt['phase'] = phase.split('_')[0]
            if ds_opt['phase'] == 'train':
                ds_opt['gt_size'] = 16
            dataset = build_dataset(ds_opt)
            sample = dataset[0]
            assert sample['lq'].shape[0] == opt['network_g']['in_chans'] == sample['gt'].shape[0]


def test_demo_option_file():
    opt = _load(OPTIONS / 'train_MPT_demo.yml')
    assert opt['model_type'] == 'EFCRModel' and opt['train']['efcr_mode'] == 'basic'
    assert opt['num_gpu'] == 0 and opt['datasets']['train']['type'] == 'PairedDefocusDataset'
