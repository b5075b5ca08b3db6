"""End-to-end demo on CPU: the starter model beside Richardson-Lucy, then a short fine-tune through BasicSR.

1. Builds ``demo_data/`` with :mod:`mpt_data.demo_data` if it is absent (real images bundled with
   scikit-image, disk-PSF defocus; nothing is downloaded).
2. Scores on the validation pairs, in the files' own 8-bit units with BasicSR's ``calculate_psnr``/
   ``calculate_ssim``: the blurry input; Richardson-Lucy given each pair's true disk PSF (an oracle, its
   iteration count tuned on the training pairs); the shipped RGB starter model as ``mpt-deblur`` applies it.
3. Fine-tunes the starter model on the training pairs (``options/finetune_MPT_starter_demo.yml``) with BasicSR's
   ``train_pipeline`` (experiments under ``./experiments``) and scores the result the same way; writes
   blurry | Richardson-Lucy | starter | fine-tuned | sharp strips to ``experiments/<name>/demo_images``.

Exit status 0 when the fine-tuned model's validation PSNR is above the blurry input's, 1 otherwise.

    python scripts/run_demo.py                 # a few minutes on 2 CPU cores
    python scripts/run_demo.py --iters 50      # quicker
"""

from __future__ import annotations

import argparse
import os
import os.path as osp
import re
import sys
import time
from typing import Dict, Optional, Sequence

import numpy as np

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
DEFAULT_OPT = osp.join(REPO, 'options', 'finetune_MPT_starter_demo.yml')
RL_ITERATIONS = (10, 20, 40, 80)
NAME_RADIUS = re.compile(r'_r(\d+(?:p\d+)?)\.png$')


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
    from mpt_data.demo_data import build_demo_data

    counts = build_demo_data(data_root)
    print(f'Built demo data in {data_root}: {counts}')


def train(opt_path: str, data_root: str, iters: Optional[int]) -> dict:
    """Run BasicSR's train_pipeline on the option file (data under ``data_root``); returns the resolved options."""
    from mpt_common.option_file import load_options
    from mpt_plugin.cli import train_main

    data_root = osp.abspath(data_root)
    opt = load_options(opt_path)
    force = [f'datasets:{phase}:dataroot_{side}={osp.join(data_root, "rgb", split, side)}'
             for phase, split in (('train', 'train'), ('val', 'val')) for side in ('lq', 'gt')]
    pretrain = (opt.get('path') or {}).get('pretrain_network_g')
    if pretrain and not osp.isabs(pretrain):  # relative to the repository, whatever the working directory
        force.append(f'path:pretrain_network_g={osp.join(REPO, pretrain)}')
    if iters:
        force += [f'train:total_iter={iters}', f'train:scheduler:periods=[{iters}]']
    train_main(['-opt', opt_path, '--force_yml', *force])
    return opt


def read_rgb(path: str) -> np.ndarray:
    import cv2

    img = cv2.imread(path, cv2.IMREAD_COLOR)
    if img is None:
        raise OSError(f'Cannot read {path!r}.')
    return np.ascontiguousarray(img[:, :, ::-1])


def load_pairs(folder: str) -> list:
    """``(name, blurry, sharp, disk radius)`` of the RGB pairs of a demo split (radius from the file name)."""
    pairs = []
    for name in sorted(os.listdir(osp.join(folder, 'gt'))):
        match = NAME_RADIUS.search(name)
        if match:
            radius = float(match.group(1).replace('p', '.'))
            pairs.append((name, read_rgb(osp.join(folder, 'lq', name)), read_rgb(osp.join(folder, 'gt', name)),
                          radius))
    if not pairs:
        raise FileNotFoundError(f'No demo pairs (<name>_r<radius>.png) in {folder!r}.')
    return pairs


def richardson_lucy(lq: np.ndarray, radius: float, iterations: int) -> np.ndarray:
    """Richardson-Lucy with the pair's true disk PSF (the benchmarks' oracle), back to 8 bit."""
    from mpt_data.defocus import disk_psf
    from mpt_metrics.deconvolution import richardson_lucy as rl

    out = rl(lq.astype(np.float32) / 255.0, disk_psf(radius), iterations)
    return np.clip(np.round(out * 255.0), 0, 255).astype(np.uint8)


def score(out: np.ndarray, gt: np.ndarray) -> tuple:
    from basicsr.metrics import calculate_psnr, calculate_ssim

    return float(calculate_psnr(out, gt, crop_border=0)), float(calculate_ssim(out, gt, crop_border=0))


def tune_rl(train_folder: str, crop: int = 128) -> int:
    """RL iteration count with the best mean PSNR on centre crops of the training pairs."""
    pairs = load_pairs(train_folder)
    best = {}
    for n in RL_ITERATIONS:
        vals = []
        for _, lq, gt, radius in pairs:
            top, left = max(0, (lq.shape[0] - crop) // 2), max(0, (lq.shape[1] - crop) // 2)
            sl = (slice(top, top + crop), slice(left, left + crop))
            vals.append(score(richardson_lucy(lq[sl], radius, n), gt[sl])[0])
        best[n] = float(np.mean(vals))
    return max(best, key=best.get)


def network_method(opt_file: str, weights: str):
    """The network of ``opt_file`` + ``weights`` applied as ``mpt-deblur`` applies it (whole image)."""
    from mpt_deploy.inference import deblur_plane
    from mpt_deploy.model_loading import inference_normalization, load_network, network_in_chans, network_options

    net_opt = network_options(opt_file)
    net = load_network(net_opt, weights, 'params')
    norm = inference_normalization(opt_file)
    return lambda lq, name: deblur_plane(net, lq, name, norm, network_in_chans(net_opt), tile=0)


def evaluate(methods: Dict[str, object], pairs: list, image_dir: str, n_images: int = 4,
             figure: Optional[str] = None) -> Dict[str, tuple]:
    """Mean (PSNR, SSIM) of every method on the pairs; strips of the first ``n_images`` pairs."""
    import cv2

    os.makedirs(image_dir, exist_ok=True)
    scores: Dict[str, list] = {name: [] for name in ('input', *methods)}
    strips = []
    for i, (name, lq, gt, radius) in enumerate(pairs):
        outs = {'input': lq}
        for method, fn in methods.items():
            outs[method] = fn(lq, name, radius)
        for method, out in outs.items():
            scores[method].append(score(out, gt))
        if i < n_images:
            strip = np.hstack([*outs.values(), gt])[:, :, ::-1]
            strips.append(strip)
            cv2.imwrite(osp.join(image_dir, name.replace('.png', '_blurry_rl_starter_finetuned_sharp.png')),
                        cv2.resize(strip, None, fx=2, fy=2, interpolation=cv2.INTER_NEAREST))
    if figure and strips:
        os.makedirs(osp.dirname(osp.abspath(figure)), exist_ok=True)
        cv2.imwrite(figure, cv2.resize(np.vstack(strips), None, fx=2, fy=2, interpolation=cv2.INTER_NEAREST))
    return {method: tuple(np.mean(np.array(vals), axis=0)) for method, vals in scores.items()}


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--data', default='demo_data', help='demo data folder (created if absent)')
    parser.add_argument('--opt', default=DEFAULT_OPT, help='fine-tuning option file')
    parser.add_argument('--iters', type=int, help='override total_iter (and the cosine period)')
    parser.add_argument('--figure', help='also write the blurry | RL | starter | fine-tuned | sharp rows as a PNG')
    parser.add_argument('--threads', type=int, help='torch intra-op threads (default: 2, or 1 on a busy machine)')
    args = parser.parse_args(argv)

    import torch

    import mpt_common.basicsr_compat  # noqa: F401  (before any basicsr import)
    from mpt_common.option_file import load_options
    from mpt_deploy.starter_models import starter_model

    load_options(args.opt)  # an unsafe or broken option file is refused before any data is built
    torch.set_num_threads(args.threads or default_threads())
    start = time.time()
    ensure_demo_data(args.data)
    val = load_pairs(osp.join(args.data, 'rgb', 'val'))
    iters_rl = tune_rl(osp.join(args.data, 'rgb', 'train'))
    starter = starter_model('rgb')
    starter_fn = network_method(starter.options, starter.weights)
    opt = train(args.opt, args.data, args.iters)
    experiment_dir = osp.join(os.getcwd(), 'experiments', opt['name'])
    tuned_fn = network_method(args.opt, osp.join(experiment_dir, 'models', 'net_g_latest.pth'))
    methods = {f'Richardson-Lucy (true PSF, {iters_rl} it)': lambda lq, name, r: richardson_lucy(lq, r, iters_rl),
               'starter model': lambda lq, name, r: starter_fn(lq, name),
               'starter + fine-tune': lambda lq, name, r: tuned_fn(lq, name)}
    with torch.no_grad():
        scores = evaluate(methods, val, osp.join(experiment_dir, 'demo_images'), figure=args.figure)
    minutes = (time.time() - start) / 60
    print('\n=== MPT demo: starter model, Richardson-Lucy, fine-tune ===')
    print(f'experiment (log, options, weights): {experiment_dir}')
    print(f'before/after images: {osp.join(experiment_dir, "demo_images")}')
    print(f'validation: {len(val)} pairs, 8-bit RGB, BasicSR PSNR / SSIM')
    for name, (psnr, ssim) in scores.items():
        print(f'  {name:<34} {psnr:6.2f} dB  {ssim:.4f}  ({psnr - scores["input"][0]:+.2f} dB)')
    print(f'total time {minutes:.1f} min')
    return 0 if scores['starter + fine-tune'][0] > scores['input'][0] else 1


if __name__ == '__main__':
    sys.exit(main())
