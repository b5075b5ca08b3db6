"""End to end on a miniature BBBC006 replica: train with the default options, then ``mpt-deblur`` the test split.

The outputs of ``mpt-deblur -opt <train yml>`` must equal, value for value, what BasicSR's validation path
(``feed_data`` / ``test`` / ``get_current_visuals``) computes for the same inputs, mapped back to raw units
with the dataset's map; ``scripts/eval_deblur_psnr.py`` then prints the raw-unit PSNR table.
"""

import sys
import uuid

import cv2
import numpy as np
import pytest
import tifffile
import yaml
from basicsr.models import build_model
from basicsr.train import train_pipeline

import mpt_data  # noqa: F401  (registers BBBC006Dataset)
import mpt_models  # noqa: F401  (registers EFCRModel)
from helpers.scripts import load_script
from mpt_data.bbbc006_dataset import BBBC006Dataset, plane_folder
from mpt_deploy import deblur
from mpt_plugin.smoke import TINY_MPT

pytestmark = pytest.mark.usefixtures('one_thread')

H, W = 520, 696  # BBBC006 frames, 16 bit
WELLS = ('a01', 'b02', 'c03')
TEST_WELL = 'c03'


def write_replica(root):
    """Published layout: per plane a folder, file names with a trailing identifier that differs per plane."""
    rng = np.random.default_rng(0)
    for index, well in enumerate(WELLS):
        nuclei = np.zeros((H, W), np.float32)
        for y, x in rng.integers(0, (H, W), (60, 2)):
            cv2.circle(nuclei, (int(x), int(y)), int(rng.integers(4, 12)), 1.0, -1)
        sharp = 300 + 150 * index + 2500 * cv2.GaussianBlur(nuclei, (0, 0), 1.0)
        for plane in (2, 6, 10, 16):
            img = sharp if plane == 16 else cv2.GaussianBlur(sharp, (0, 0), (16 - plane) / 2.0)
            noisy = img + rng.normal(0, 15, img.shape)
            suffix = str(uuid.UUID(int=plane * 1000 + index)).upper()
            folder = root / plane_folder(plane)
            folder.mkdir(parents=True, exist_ok=True)
            name = f'mcf-z-stacks-03212011_{well}_s1_w1{suffix}.tif'
            tifffile.imwrite(folder / name, np.clip(np.round(noisy), 0, 65535).astype(np.uint16))


def test_train_then_deblur_equals_validation_path(tmp_path, monkeypatch, fresh_basicsr_logger, capsys):  # noqa: F811
    root = tmp_path / 'BBBC006'
    write_replica(root)
    common = {'type': 'BBBC006Dataset', 'dataroot': str(root), 'test_wells': [TEST_WELL]}  # normalize: default
    opt = {
        'name': 'bbbc_e2e', 'model_type': 'EFCRModel', 'scale': 1, 'num_gpu': 0, 'manual_seed': 0,
        'datasets': {
            'train': {**common, 'name': 'train', 'split': 'train', 'gt_size': 32, 'use_hflip': True,
                      'use_vflip': True, 'use_shuffle': True, 'num_worker_per_gpu': 0, 'batch_size_per_gpu': 2,
                      'dataset_enlarge_ratio': 1, 'prefetch_mode': None},
            'val': {**common, 'name': 'test', 'split': 'test'}},
        'network_g': dict(TINY_MPT),
        'path': {'pretrain_network_g': None, 'strict_load_g': True, 'resume_state': None},
        'train': {'optim_g': {'type': 'AdamW', 'lr': 2e-3, 'betas': [0.9, 0.999], 'weight_decay': 1e-4},
                  'scheduler': {'type': 'CosineAnnealingRestartLR', 'periods': [4], 'eta_min': 1e-6},
                  'total_iter': 4, 'warmup_iter': -1, 'pixel_opt': {'type': 'L1Loss', 'loss_weight': 1.0},
                  'efcr_opt': {'type': 'EFCRLoss', 'loss_weight': 1e-5}, 'efcr_mode': 'basic'},
        'logger': {'print_freq': 2, 'save_checkpoint_freq': 1000, 'use_tb_logger': False},
    }
    opt_file = tmp_path / 'train_bbbc.yml'
    opt_file.write_text(yaml.safe_dump(opt))
    monkeypatch.setattr(sys, 'argv', ['train.py', '-opt', str(opt_file)])
    train_pipeline(str(tmp_path))
    ckpt = tmp_path / 'experiments' / 'bbbc_e2e' / 'models' / 'net_g_latest.pth'
    assert ckpt.is_file()

    # the validation path: BasicSR's model (checkpoint through path.pretrain_network_g) on the test split
    test_opt = {**opt, 'is_train': False, 'dist': False, 'rank': 0, 'world_size': 1,
                'path': {'pretrain_network_g': str(ckpt), 'strict_load_g': True, 'param_key_g': 'params'}}
    test_opt.pop('train')
    model = build_model(test_opt)
    dataset = BBBC006Dataset({**opt['datasets']['val'], 'phase': 'val'})
    assert dataset.normalize == 'input_percentile' and len(dataset) == 3  # z 2, 6, 10 of the test well
    expected = {}
    for i in range(len(dataset)):
        sample = dataset[i]
        model.feed_data({'lq': sample['lq'][None], 'gt': sample['gt'][None]})
        model.test()
        result = model.get_current_visuals()['result'][0, 0].numpy()
        raw_lq = tifffile.imread(sample['lq_path'])
        expected[sample['lq_path']] = dataset.norm.map_for(raw_lq, sample['lq_path']).inverse(result, raw_lq.dtype)

    out_dir = tmp_path / 'deblurred'
    inputs = list(expected)
    assert deblur.main(['-opt', str(opt_file), '-w', str(ckpt), '-i', *inputs, '-o', str(out_dir),
                        '--tile', '0']) == 0
    for lq_path, want in expected.items():
        got = tifffile.imread(out_dir / lq_path.split('/')[-1])
        assert got.dtype == np.uint16 and got.shape == (H, W)
        assert np.array_equal(got, want), lq_path
        assert not np.array_equal(got, tifffile.imread(lq_path))  # the network did change the image

    # the network saw the input's own 0.1/99.9th percentiles as 0/1, not the few % of 65535 the data fill
    raw = tifffile.imread(inputs[0])
    unit = dataset.norm.map_for(raw, inputs[0]).forward(raw)
    assert np.percentile(unit, 99.9) == pytest.approx(1.0, abs=1e-3) and raw.max() / 65535 < 0.1

    capsys.readouterr()
    script = load_script('eval_deblur_psnr')
    assert script.main(['-opt', str(opt_file), '--dataset', 'val', '--deblurred', str(out_dir)]) == 0
    printed = capsys.readouterr().out
    gt = tifffile.imread(dataset.samples[0][1])
    first = dataset.samples[0][0]
    want_in = script.psnr(gt, tifffile.imread(first), 65535.0)
    want_out = script.psnr(gt, tifffile.imread(out_dir / first.split('/')[-1]), 65535.0)
    assert f'| {first.split("/")[-1]} | {want_in:.2f} | {want_out:.2f} |' in printed
    assert 'mean of 3' in printed
    print(printed, file=sys.stderr)
