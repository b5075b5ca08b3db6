"""End-to-end: BasicSR's ``train_pipeline`` with ``model_type: EFCRModel`` for every EFCR mode (tiny data)."""

import glob
import sys

import cv2
import numpy as np
import pytest
import tifffile
import yaml
from basicsr.train import train_pipeline

import mpt_data  # noqa: F401  (registers PairedDefocusDataset, UnlabeledDefocusDataset)
import mpt_losses  # noqa: F401  (registers EFCRLoss)
import mpt_models  # noqa: F401  (registers EFCRModel)
from helpers import REPO as ROOT
from mpt_data.bbbc006_dataset import is_test_well, plane_folder
from mpt_models.efcr_model import EFCR_MODES

pytestmark = pytest.mark.usefixtures('one_thread')


TINY_SWINIR = {'type': 'SwinIR', 'img_size': 16, 'embed_dim': 12, 'depths': [1], 'num_heads': [1],
               'window_size': 4, 'mlp_ratio': 2, 'upscale': 1, 'upsampler': '', 'in_chans': 1}


def _write_pairs(root, count=4, size=20, seed=0):
    rng = np.random.default_rng(seed)
    for sub in ('gt', 'lq'):
        (root / sub).mkdir(parents=True)
    for i in range(count):
        gt = (rng.random((size, size)) * 255).astype(np.uint8)
        lq = cv2.GaussianBlur(gt, (5, 5), 1.5)
        cv2.imwrite(str(root / 'gt' / f'{i:03d}.png'), gt)
        cv2.imwrite(str(root / 'lq' / f'{i:03d}.png'), lq)
    return {'dataroot_gt': str(root / 'gt'), 'dataroot_lq': str(root / 'lq')}


def _run(tmp_path, monkeypatch, name, train, extra=None, val=False):
    main = _write_pairs(tmp_path / 'train')
    dataset = {'name': 'tiny', 'type': 'PairedDefocusDataset', **main, 'in_chans': 1, 'io_backend': {'type': 'disk'},
               'gt_size': 16, 'use_shuffle': True, 'num_worker_per_gpu': 0, 'batch_size_per_gpu': 2,
               'dataset_enlarge_ratio': 1, 'prefetch_mode': None}
    if extra is not None:  # the contract's extra_dataset: every sample also carries extra_lq (+ extra_gt)
        paths = _write_pairs(tmp_path / 'extra', count=3, size=24, seed=1)
        if extra == 'labeled':
            dataset['extra_dataset'] = {'type': 'PairedDefocusDataset', **paths}
        else:
            dataset['extra_dataset'] = {'type': 'UnlabeledDefocusDataset', 'dataroot_lq': paths['dataroot_lq']}
    opt = {
        'name': name, 'model_type': 'EFCRModel', 'scale': 1, 'num_gpu': 0, 'manual_seed': 0,
        'datasets': {'train': dataset},
        'network_g': TINY_SWINIR,
        'path': {'pretrain_network_g': None, 'strict_load_g': True, 'resume_state': None},
        'train': {'optim_g': {'type': 'AdamW', 'lr': 1e-3, 'betas': [0.9, 0.999], 'weight_decay': 1e-4},
                  'scheduler': {'type': 'CosineAnnealingRestartLR', 'periods': [4], 'eta_min': 1e-6},
                  'total_iter': 4, 'warmup_iter': -1, 'pixel_opt': {'type': 'L1Loss', 'loss_weight': 1.0}, **train},
        'logger': {'print_freq': 1, 'save_checkpoint_freq': 1000, 'use_tb_logger': False},
    }
    if val:
        val_pairs = _write_pairs(tmp_path / 'val', count=1, size=16, seed=2)
        opt['datasets']['val'] = {'name': 'tiny_val', 'type': 'PairedDefocusDataset', **val_pairs, 'in_chans': 1,
                                  'io_backend': {'type': 'disk'}}
        opt['val'] = {'val_freq': 2, 'save_img': False,
                      'metrics': {'psnr': {'type': 'calculate_psnr', 'crop_border': 0, 'test_y_channel': False}}}
    return _train(tmp_path, monkeypatch, opt)


def _train(tmp_path, monkeypatch, opt):
    """Write ``opt`` as YAML, run BasicSR's train_pipeline rooted at tmp_path, return the training log."""
    name = opt['name']
    opt_file = tmp_path / f'{name}.yml'
    opt_file.write_text(yaml.safe_dump(opt))
    monkeypatch.setattr(sys, 'argv', ['train.py', '-opt', str(opt_file)])
    train_pipeline(str(tmp_path))
    logs = glob.glob(str(tmp_path / 'experiments' / name / f'train_{name}_*.log'))
    assert len(logs) == 1
    assert (tmp_path / 'experiments' / name / 'models' / 'net_g_latest.pth').is_file()
    return open(logs[0], encoding='utf-8').read()


EXTRA_FOR_MODE = {'basic': None, 'basic_v1': None, 'extra_labeled': 'labeled', 'extra_labeled_v1': 'labeled',
                  'extra_unlabeled': 'unlabeled'}


@pytest.mark.parametrize('mode', list(EFCR_MODES))
def test_train_pipeline_each_mode_logs_every_term(tmp_path, monkeypatch, fresh_basicsr_logger, mode):
    text = _run(tmp_path, monkeypatch, f'efcr_{mode}', {'efcr_opt': {'type': 'EFCRLoss', 'loss_weight': 1e-5},
                                                       'efcr_mode': mode},
                extra=EXTRA_FOR_MODE[mode], val=mode == 'basic')
    assert 'iter:       4' in text
    for term in ('l_pix', 'l_pos', 'l_neg', 'l_efcr'):
        assert f'{term}: ' in text
    assert ('l_ext: ' in text) == (EFCR_MODES[mode].reblur_source is not None)
    assert f"EFCR mode '{mode}'" in text
    if mode == 'basic':
        assert '# psnr:' in text  # validation ran through the model


def test_train_pipeline_without_efcr_is_plain_training(tmp_path, monkeypatch, fresh_basicsr_logger):
    text = _run(tmp_path, monkeypatch, 'efcr_off', {})
    assert 'l_pix: ' in text and 'l_pos' not in text and 'l_efcr' not in text


def _write_bbbc006(root, wells, size=(40, 48)):
    rng = np.random.default_rng(0)
    for well in wells:
        sharp = cv2.GaussianBlur((rng.random(size) * 3000 + 200).astype(np.float32), (3, 3), 0.8)
        for plane in (2, 6, 10, 16):
            folder = root / plane_folder(plane)
            folder.mkdir(parents=True, exist_ok=True)
            img = sharp if plane == 16 else cv2.GaussianBlur(sharp, (7, 7), (16 - plane) / 4)
            name = f'mcf-z-stacks-03212011_{well}_s1_w1{plane:02d}ABCDEF.tif'
            tifffile.imwrite(folder / name, img.astype(np.uint16))


def _write_lfdof(root, scenes=2, size=(24, 28)):
    rng = np.random.default_rng(1)
    for s in range(scenes):
        gt = (rng.random((*size, 3)) * 255).astype(np.uint8)
        (root / 'train_data' / 'input' / f'scene{s}').mkdir(parents=True)
        (root / 'train_data' / 'ground_truth').mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / 'train_data' / 'ground_truth' / f'scene{s}.png'), gt)
        for k in (3, 5):
            cv2.imwrite(str(root / 'train_data' / 'input' / f'scene{s}' / f'{k}.png'), cv2.GaussianBlur(gt, (k, k), 1))


def test_efcrex_option_file_trains_on_tiny_data(tmp_path, monkeypatch, fresh_basicsr_logger):
    """The shipped EFCR_ex file, with data roots, network size and schedule shrunk, runs through train_pipeline."""
    wells = [f'{row}{col:02d}' for row in 'ABCDEFGH' for col in range(1, 13)]
    train_wells = [w for w in wells if not is_test_well(w, 0.2)][:2]
    test_wells = [w for w in wells if is_test_well(w, 0.2)][:1]
    _write_bbbc006(tmp_path / 'BBBC006', train_wells + test_wells)
    _write_lfdof(tmp_path / 'LFDOF')

    opt = yaml.safe_load((ROOT / 'options' / 'train_MPT_BBBC006_w1_EFCRex.yml').read_text())
    train_set = opt['datasets']['train']
    train_set.update(dataroot=str(tmp_path / 'BBBC006'), gt_size=16, batch_size_per_gpu=2, num_worker_per_gpu=0)
    train_set['extra_dataset']['dataroot'] = str(tmp_path / 'LFDOF')
    opt['datasets']['val']['dataroot'] = str(tmp_path / 'BBBC006')
    opt['network_g'].update(dim=8, heads=[1, 1, 2, 2], num_blocks=[2, 2, 2, 2], window_size=4,
                            scales=[[0.5, 1], [0.5, 1], [0.5, 1], [1, 1]])
    opt['train'].update(total_iter=2, scheduler={**opt['train']['scheduler'], 'periods': [2]})
    opt['val']['val_freq'] = 2
    opt.update(num_gpu=0, logger={'print_freq': 1, 'save_checkpoint_freq': 1000, 'use_tb_logger': False})
    text = _train(tmp_path, monkeypatch, opt)
    assert "EFCR mode 'extra_labeled'" in text and "positive_bands='high'" in text
    for term in ('l_pix', 'l_pos', 'l_neg', 'l_ext', 'l_efcr'):
        assert f'{term}: ' in text
    assert '# psnr:' in text and '# ssim:' in text
