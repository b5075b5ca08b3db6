"""End-to-end demo on CPU: demo data -> train a small MPT with EFCR -> PSNR/SSIM of output vs blurry input.

1. Builds ``demo_data/`` with ``scripts/make_demo_data.py`` if it is absent (real images bundled with
   scikit-image, disk-PSF defocus; nothing is downloaded).
2. Trains ``options/train_MPT_demo.yml`` (``model_type: EFCRModel``, ``efcr_mode: basic``) through BasicSR's
   ``basicsr.train.train_pipeline`` (via the plugin's entry point, experiments under ``./experiments``).
3. Evaluates the final network on the validation pairs with BasicSR's ``calculate_psnr``/``calculate_ssim``
   (8-bit RGB, no border crop, as in BasicSR's validation), for the network output and for the blurry input,
   and writes blurry | output | sharp strips to ``experiments/<name>/demo_images``.

Exit status 0 when the output's validation PSNR is above the blurry input's, 1 otherwise.

    python scripts/run_demo.py                 # about 3-5 minutes on 2 CPU cores
    python scripts/run_demo.py --iters 50      # quicker smoke run
"""

from __future__ import annotations

import argparse
import os
import os.path as osp
import sys
import time
from typing import Dict, Optional, Sequence

import numpy as np

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
DEFAULT_OPT = osp.join(REPO, 'options', 'train_MPT_demo.yml')


def default_threads() -> int:
    """Up to 2 intra-op threads, but 1 when the CPUs are already busy: small ops with OpenMP threads that wait
    for each other on an oversubscribed machine run several times slower than a single thread."""
    cpus = os.cpu_count() or 1
    busy = hasattr(os, 'getloadavg') and os.getloadavg()[0] > cpus - 1
    return 1 if busy else max(1, min(2, cpus))


def ensure_demo_data(data_root: str) -> None:
    """Create the demo pairs unless ``data_root`` already holds them."""
    if osp.isdir(osp.join(data_root, 'rgb', 'val', 'gt')) and osp.isdir(osp.join(data_root, 'rgb', 'train', 'gt')):
        print(f'Using existing demo data in {data_root}')
        return
    sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
    from make_demo_data import build_demo_data

    counts = build_demo_data(data_root)
    print(f'Built demo data in {data_root}: {counts}')


def train(opt_path: str, data_root: str, iters: Optional[int]) -> dict:
    """Run BasicSR's train_pipeline on the demo option file; returns the resolved options."""
    from mpt_plugin.cli import train_main
    from mpt_plugin.option_file import load_options

    data_root = osp.abspath(data_root)
    force = [f'datasets:{phase}:dataroot_{side}={osp.join(data_root, "rgb", split, side)}'
             for phase, split in (('train', 'train'), ('val', 'val')) for side in ('lq', 'gt')]
    if iters:
        force += [f'train:total_iter={iters}', f'train:scheduler:periods=[{iters}]']
    train_main(['-opt', opt_path, '--force_yml', *force])
    opt = load_options(opt_path)
    opt['datasets']['val']['dataroot_lq'] = osp.join(data_root, 'rgb', 'val', 'lq')
    opt['datasets']['val']['dataroot_gt'] = osp.join(data_root, 'rgb', 'val', 'gt')
    return opt


def evaluate(opt: dict, experiment_dir: str, n_images: int = 4, figure: Optional[str] = None) -> Dict[str, float]:
    """PSNR/SSIM (BasicSR metrics) of the trained network's output and of the blurry input vs the sharp image."""
    import cv2
    import torch
    from basicsr.archs import build_network
    from basicsr.data import build_dataset
    from basicsr.metrics import calculate_psnr, calculate_ssim
    from basicsr.utils import tensor2img

    import mpt_arch  # noqa: F401  (registers MPT)
    import mpt_data  # noqa: F401  (registers the datasets)

    net = build_network(dict(opt['network_g']))
    weights = osp.join(experiment_dir, 'models', 'net_g_latest.pth')
    from mpt_plugin.checkpoint import load_checkpoint, select_params

    net.load_state_dict(select_params(load_checkpoint(weights), weights, 'params'))
    net.eval()
    val_opt = dict(opt['datasets']['val'], phase='val')
    dataset = build_dataset(val_opt)
    image_dir = osp.join(experiment_dir, 'demo_images')
    os.makedirs(image_dir, exist_ok=True)
    scores = {'psnr_out': [], 'psnr_in': [], 'ssim_out': [], 'ssim_in': []}
    strips = []
    with torch.no_grad():
        for i in range(len(dataset)):
            sample = dataset[i]
            output = net(sample['lq'][None]).clamp(0, 1)[0]
            out_img, lq_img, gt_img = (tensor2img(t) for t in (output, sample['lq'], sample['gt']))
            scores['psnr_out'].append(calculate_psnr(out_img, gt_img, crop_border=0))
            scores['psnr_in'].append(calculate_psnr(lq_img, gt_img, crop_border=0))
            scores['ssim_out'].append(calculate_ssim(out_img, gt_img, crop_border=0))
            scores['ssim_in'].append(calculate_ssim(lq_img, gt_img, crop_border=0))
            if i < n_images:
                name = osp.splitext(osp.basename(sample['lq_path']))[0]
                strip = np.hstack([lq_img, out_img, gt_img])
                strips.append(strip)
                cv2.imwrite(osp.join(image_dir, f'{name}_blurry_output_sharp.png'),
                            cv2.resize(strip, None, fx=2, fy=2, interpolation=cv2.INTER_NEAREST))
    if figure and strips:  # blurry | output | sharp rows of the first n_images validation pairs
        os.makedirs(osp.dirname(osp.abspath(figure)), exist_ok=True)
        cv2.imwrite(figure, cv2.resize(np.vstack(strips), None, fx=2, fy=2, interpolation=cv2.INTER_NEAREST))
    return {key: float(np.mean(values)) for key, values in scores.items()}


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--data', default='demo_data', help='demo data folder (created if absent)')
    parser.add_argument('--opt', default=DEFAULT_OPT, help='training option file')
    parser.add_argument('--iters', type=int, help='override total_iter (and the cosine period)')
    parser.add_argument('--figure', help='also write the blurry | output | sharp rows as one PNG here')
    parser.add_argument('--threads', type=int, help='torch intra-op threads (default: 2, or 1 on a busy machine)')
    args = parser.parse_args(argv)

    import torch

    import mpt_plugin.compat  # noqa: F401  (before any basicsr import)
    from mpt_plugin.option_file import load_options

    load_options(args.opt)  # an unsafe or broken option file is refused before any data is built
    torch.set_num_threads(args.threads or default_threads())
    start = time.time()
    ensure_demo_data(args.data)
    opt = train(args.opt, args.data, args.iters)
    experiment_dir = osp.join(os.getcwd(), 'experiments', opt['name'])
    scores = evaluate(opt, experiment_dir, figure=args.figure)
    minutes = (time.time() - start) / 60
    print('\n=== MPT + EFCR demo ===')
    print(f'experiment (log, options, weights): {experiment_dir}')
    print(f'before/after images (blurry | output | sharp): {osp.join(experiment_dir, "demo_images")}')
    print(f'validation ({len(os.listdir(opt["datasets"]["val"]["dataroot_gt"]))} pairs): '
          f'blurry input PSNR {scores["psnr_in"]:.2f} dB / SSIM {scores["ssim_in"]:.4f} -> '
          f'MPT output PSNR {scores["psnr_out"]:.2f} dB / SSIM {scores["ssim_out"]:.4f} '
          f'({scores["psnr_out"] - scores["psnr_in"]:+.2f} dB)')
    print(f'total time {minutes:.1f} min')
    return 0 if scores['psnr_out'] > scores['psnr_in'] else 1


if __name__ == '__main__':
    sys.exit(main())
