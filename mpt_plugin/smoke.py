"""A tiny synthetic training set-up (images + option file) for smoke runs of the BasicSR entry points.

Used by the tests and the README's copy-paste commands: ``python -m mpt_plugin.smoke <folder>`` writes
``<folder>/data/{lq,gt}/*.png`` (blurred / sharp random blobs) and ``<folder>/smoke.yml`` (tiny MPT,
``EFCRModel`` with EFCR, a few iterations on the CPU). Nothing here is used by training itself.
"""

from __future__ import annotations

import argparse
import os
from typing import Any, Dict, Optional

import cv2
import numpy as np
import yaml

TINY_MPT = {'type': 'MPT', 'in_chans': 1, 'dim': 8, 'num_blocks': [2, 2, 2, 2], 'heads': [1, 1, 1, 1],
            'scales': [[0.5, 1], [0.5, 1], [0.5, 1], [1, 1]], 'window_size': 4, 'ffn_expansion': 2.0}


def write_pairs(folder: str, count: int = 4, size: int = 32, channels: int = 1, seed: int = 0) -> None:
    """Write ``count`` 8-bit PNG pairs: ``gt`` = random sharp blobs, ``lq`` = its Gaussian blur."""
    rng = np.random.default_rng(seed)
    for sub in ('lq', 'gt'):
        os.makedirs(os.path.join(folder, sub), exist_ok=True)
    for i in range(count):
        gt = (rng.random((size // 4, size // 4, channels)) > 0.5).astype(np.float32)
        gt = cv2.resize(gt, (size, size), interpolation=cv2.INTER_NEAREST).reshape(size, size, channels)
        lq = cv2.GaussianBlur(gt, (5, 5), 1.5).reshape(size, size, channels)
        for sub, img in (('gt', gt), ('lq', lq)):
            cv2.imwrite(os.path.join(folder, sub, f'{i:03d}.png'), np.round(img * 255).astype(np.uint8))


def smoke_options(data_root: str, name: str = 'smoke', total_iter: int = 4, save_freq: int = 2,
                  network: Optional[Dict[str, Any]] = None, model_type: str = 'EFCRModel', efcr: bool = True,
                  val: bool = True, gt_size: int = 16, batch_size: int = 2) -> Dict[str, Any]:
    """Options of a tiny CPU run on :func:`write_pairs` data (BasicSR's YAML structure)."""
    network = dict(network or TINY_MPT)
    in_chans = network.get('in_chans', network.get('num_in_ch', 3))
    pairs = {'type': 'PairedDefocusDataset', 'dataroot_lq': os.path.join(data_root, 'lq'),
             'dataroot_gt': os.path.join(data_root, 'gt'), 'io_backend': {'type': 'disk'}, 'in_chans': in_chans}
    train = {'pixel_opt': {'type': 'L1Loss', 'loss_weight': 1.0},
             'optim_g': {'type': 'AdamW', 'lr': 1.0e-3, 'weight_decay': 1.0e-4, 'betas': [0.9, 0.999]},
             'scheduler': {'type': 'CosineAnnealingRestartLR', 'periods': [total_iter], 'restart_weights': [1],
                           'eta_min': 1.0e-6},
             'total_iter': total_iter, 'warmup_iter': -1}
    if efcr:
        train.update(efcr_opt={'type': 'EFCRLoss', 'loss_weight': 1.0e-5}, efcr_mode='basic')
    opt = {
        'name': name, 'model_type': model_type, 'scale': 1, 'num_gpu': 0, 'manual_seed': 0,
        'datasets': {'train': {**pairs, 'name': 'smoke_train', 'gt_size': gt_size, 'use_hflip': True,
                               'use_rot': False, 'num_worker_per_gpu': 0, 'batch_size_per_gpu': batch_size,
                               'dataset_enlarge_ratio': 1, 'prefetch_mode': None}},
        'network_g': network,
        'path': {'pretrain_network_g': None, 'strict_load_g': True, 'resume_state': None},
        'train': train,
        'logger': {'print_freq': 1, 'save_checkpoint_freq': save_freq, 'use_tb_logger': False},
        'dist_params': {'backend': 'gloo', 'port': 29500},
    }
    if val:
        opt['datasets']['val'] = {**pairs, 'name': 'smoke_val'}
        opt['val'] = {'val_freq': save_freq, 'save_img': False,
                      'metrics': {'psnr': {'type': 'calculate_psnr', 'crop_border': 0, 'test_y_channel': False}}}
    return opt


def write_options(path: str, opt: Dict[str, Any]) -> str:
    """Write ``opt`` as a YAML option file and return its path."""
    with open(path, 'w', encoding='utf-8') as handle:
        yaml.safe_dump(opt, handle, sort_keys=False)
    return path


def main(argv: Optional[list] = None) -> None:
    parser = argparse.ArgumentParser(description='Write a tiny synthetic data set and option file for smoke runs.')
    parser.add_argument('folder')
    parser.add_argument('--total-iter', type=int, default=4)
    args = parser.parse_args(argv)
    data_root = os.path.abspath(os.path.join(args.folder, 'data'))
    write_pairs(data_root)
    path = write_options(os.path.join(args.folder, 'smoke.yml'), smoke_options(data_root, total_iter=args.total_iter))
    print(path)


if __name__ == '__main__':
    main()
