"""``mpt-finetune``: a model for your microscope in one command, from its optics (and, optionally, in-focus images).

    mpt-finetune --sharp my_in_focus_planes/ --na 1.4 --immersion-index 1.518 --wavelength 0.52 \\
                 --pixel-size 0.065 --defocus 0:2 --minutes 20 -o my_scope_model/
    mpt-deblur -opt my_scope_model/model.yml -w my_scope_model/model.pth -i blurry/ -o deblurred/

The shipped starter model that ``mpt-deblur`` applies to the images by default (gray; for RGB images the gray model
per colour channel, trained here on one channel per sample; ``--kind rgb``: the RGB model) is fine-tuned through
BasicSR's training loop on :class:`~mpt_data.synthetic_defocus_dataset.SyntheticDefocusDataset` pairs blurred with
exactly this microscope's widefield PSF (``widefield_physical``: the exact scalar defocus phase for the given NA,
immersion, wavelength and pixel size, defocus drawn from ``--defocus``) and the given noise. Without ``--sharp``
the sharp images are procedural fluorescence-like scenes (:mod:`mpt_data.scenes`).

* Validation: every fifth image of ``--sharp`` (at least one, when there are two or more) is held out and never
  trained on; with a single image (or none), validation uses procedural scenes with their own seed.
* Length: a short timing of the network's training step sets the iteration count that fits ``--minutes`` (the
  cosine schedule then ends with the run); the plan is saved in ``<out>/finetune_plan.yml``, so ``--auto_resume``
  continues the same run after an interruption. BasicSR logs the progress with an ETA.
* Scale: the images are used at their own pixel size (no rescaling augmentation), the one the PSF is computed
  for; up-scaled crops would also teach the network softer targets.
* Loss: MSE by default (``--loss``, :data:`LOSSES`): L1, the starter recipe's loss, taught the fine-tune to
  under-predict sparse puncta and lost PSNR against the starter model.
* Learning rate: :data:`FINETUNE_LR` (a tenth of the starter recipe's 2e-3 peak, over 5 % warm-up, cosine to a
  tenth of it): fine-tuning a trained model at a training run's rate first undoes what it learned.
* Output: ``model.pth`` (the fine-tuned weights, or the starter model's when the fine-tune ends below it on
  validation), ``model.yml`` (the option file it was trained with: network and
  intensity normalisation for ``mpt-deblur``), ``model.md`` (a model card: optics, data, iterations, validation
  PSNR of the input, the starter model and the fine-tuned model), and the BasicSR run in ``experiments/``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

PLAN = 'finetune_plan.yml'
FINETUNE_LR = 2.0e-4
LOSSES = {'mse': 'MSELoss', 'l1': 'L1Loss'}
"""``--loss``: BasicSR's pixel losses. MSE (default) is minimised by the conditional mean, L1 by the median, which
under-predicts sparse bright structures whose position the blur leaves uncertain (docs/guides/finetune.md)."""
NORM_CONTEXT = 256
"""Training crops are normalised by the percentiles of a region of this size around them (``norm_context`` of
:class:`~mpt_data.synthetic_defocus_dataset.SyntheticDefocusDataset`), as ``mpt-deblur`` normalises a whole image."""
RUN = 'finetune'


def _range(text: str, option: str) -> List[float]:
    try:
        low, high = (float(v) for v in text.split(':')) if ':' in text else (float(text), float(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f'{option} expects MIN:MAX (or one number), got {text!r}') from None
    if not 0 <= low <= high:
        raise argparse.ArgumentTypeError(f'{option} needs 0 <= MIN <= MAX, got {text!r}')
    return [low, high]


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog='mpt-finetune', description=__doc__.split('\n')[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--sharp', help='folder of in-focus images of your specimens (default: procedural scenes)')
    parser.add_argument('--na', type=float, required=True, help='objective numerical aperture, e.g. 1.4')
    parser.add_argument('--immersion-index', type=float, default=1.0, help='1.0 air, 1.33 water, 1.518 oil')
    parser.add_argument('--wavelength', type=float, required=True, help='emission wavelength in um, e.g. 0.52')
    parser.add_argument('--pixel-size', type=float, required=True, help='pixel size in the sample plane, um')
    parser.add_argument('--defocus', type=lambda t: _range(t, '--defocus'), default=[0.0, 2.0],
                        help='defocus range in um, MIN:MAX (default 0:2)')
    parser.add_argument('--photons', type=lambda t: _range(t, '--photons'), default=[100.0, 3000.0],
                        help='photons at full scale, MIN:MAX (shot noise; default 100:3000)')
    parser.add_argument('--minutes', type=float, default=20.0, help='training time (default 20)')
    parser.add_argument('--crop', type=int, help='training crop side in pixels (default: the starter recipe\'s); '
                        'the batch shrinks to keep the pixels per step')
    parser.add_argument('--lr', type=float, default=FINETUNE_LR, help=f'peak learning rate (default {FINETUNE_LR:g})')
    parser.add_argument('--loss', choices=sorted(LOSSES), default='mse',
                        help='pixel loss: mse (default; unbiased intensities, what PSNR measures) or l1')
    parser.add_argument('--kind', choices=['gray', 'rgb'], help='starter model (default: the one mpt-deblur '
                        'applies to the images: gray, RGB images per colour channel)')
    parser.add_argument('-o', '--output', required=True, help='folder for model.pth, model.yml, model.md')
    parser.add_argument('--auto_resume', '--auto-resume', action='store_true', dest='auto_resume',
                        help='continue an interrupted run in --output with its saved plan')
    parser.add_argument('--iters', type=int, help=argparse.SUPPRESS)  # tests: a fixed iteration count
    args = parser.parse_args(argv)
    if args.minutes <= 0:
        parser.error(f'--minutes must be > 0, got {args.minutes}')
    try:
        from mpt_data.psf import physical_widefield_psf

        physical_widefield_psf(args.na, args.wavelength, args.pixel_size, args.defocus[1], args.immersion_index)
    except ValueError as err:
        parser.error(str(err))
    if args.photons[0] <= 0:
        parser.error('--photons needs MIN > 0')
    if args.crop is not None and args.crop < 16:
        parser.error(f'--crop must be >= 16 pixels, got {args.crop}')
    if not args.lr > 0:
        parser.error(f'--lr must be > 0, got {args.lr}')
    return args


def sharp_images(folder: Optional[str]) -> List[str]:
    """The image files of ``folder`` (sorted); [] without a folder."""
    if not folder:
        return []
    from mpt_data.image_io import is_image_file

    if not os.path.isdir(folder):
        raise FileNotFoundError(f'--sharp {folder!r} is not a folder.')
    files = sorted(n for n in os.listdir(folder) if is_image_file(n) and os.path.isfile(os.path.join(folder, n)))
    if not files:
        raise FileNotFoundError(f'--sharp {folder!r} holds no image (png, tif, ...).')
    return files


def split(files: List[str]) -> Tuple[List[str], List[str]]:
    """(training files, held-out validation files): every fifth file is held out, at least one of two or more."""
    if len(files) < 2:
        return files, []
    held = files[4::5] or files[-1:]
    return [f for f in files if f not in held], held


def plan_options(args: argparse.Namespace, files: List[str], kind: str, total_iter: int) -> Dict[str, Any]:
    """The BasicSR option file of the fine-tune (the starter's network and normalisation, this microscope's PSF)."""
    from mpt_common.option_file import load_options
    from mpt_deploy.starter_models import CHANNELS, starter_model

    starter = starter_model(kind)
    base = load_options(starter.options)
    train_files, val_files = split(files)
    out = os.path.abspath(args.output)
    optics = {'na': args.na, 'immersion_index': args.immersion_index, 'wavelength_um': args.wavelength,
              'pixel_size_um': args.pixel_size, 'defocus_um': list(args.defocus)}
    noise = {'photons': list(args.photons), 'read_noise': [0.0, 0.01], 'clean_fraction': 0.1}
    common = {'type': 'SyntheticDefocusDataset', 'in_chans': CHANNELS[kind], 'io_backend': {'type': 'disk'},
              'normalize': base['datasets']['train'].get('normalize', 'dtype'), 'psf': {'widefield_physical': optics},
              'noise': noise}
    if CHANNELS[kind] == 1:
        common['gray_channels'] = True  # RGB images: one colour channel per sample, as mpt-deblur applies the model
    recipe = base['datasets']['train']  # the starter recipe's crops; --crop keeps their pixels per step
    crop = args.crop or recipe['gt_size']
    batch = max(1, round(recipe['batch_size_per_gpu'] * (recipe['gt_size'] / crop) ** 2))
    train = {**common, 'name': 'finetune_train', 'gt_size': crop,
             'use_scale': False, 'use_hflip': True, 'use_vflip': True, 'use_rot': True,
             'use_shuffle': True, 'num_worker_per_gpu': 0, 'batch_size_per_gpu': batch, 'dataset_enlarge_ratio': 1000,
             'prefetch_mode': None, 'cache_images': True, 'norm_context': NORM_CONTEXT}
    val = {**common, 'name': 'finetune_val', 'pairs_per_image': 4, 'val_seed': 1, 'val_crop': 128}
    if train_files:
        train.update(dataroot_gt=os.path.abspath(args.sharp), meta_info_file=os.path.join(out, 'train_files.txt'))
    else:
        train['procedural'] = {'images': 64, 'size': 192}
    if val_files:
        val.update(dataroot_gt=os.path.abspath(args.sharp), meta_info_file=os.path.join(out, 'val_files.txt'))
    else:
        val['procedural'] = {'images': 6, 'size': 128}
    return {
        'name': RUN, 'model_type': 'EFCRModel', 'scale': 1, 'num_gpu': 0, 'manual_seed': 0,
        'datasets': {'train': train, 'val': val}, 'network_g': dict(base['network_g']),
        'path': {'pretrain_network_g': starter.weights, 'param_key_g': 'params', 'strict_load_g': True,
                 'resume_state': None},
        'train': {'ema_decay': 0, 'optim_g': {'type': 'AdamW', 'lr': args.lr, 'betas': [0.9, 0.999],
                                              'weight_decay': 1.0e-4},
                  'scheduler': {'type': 'CosineAnnealingRestartLR', 'periods': [total_iter], 'restart_weights': [1],
                                'eta_min': args.lr / 10},
                  'total_iter': total_iter, 'warmup_iter': max(1, total_iter // 20),
                  'pixel_opt': {'type': LOSSES[args.loss], 'loss_weight': 1.0, 'reduction': 'mean'}},
        'val': {'val_freq': max(1, total_iter // 2), 'save_img': False,
                'metrics': {'psnr': {'type': 'calculate_psnr', 'crop_border': 0, 'test_y_channel': False}}},
        'logger': {'print_freq': max(1, total_iter // 20), 'save_checkpoint_freq': max(1, total_iter // 4),
                   'use_tb_logger': False},
        'dist_params': {'backend': 'gloo', 'port': 29500},
    }


def finetuned_weights(out: str) -> str:
    """The fine-tune's own last weights in output folder ``out`` (``model.pth`` is a copy of them, or of the
    starter model when the fine-tune lost on validation)."""
    return os.path.join(out, 'experiments', RUN, 'models', 'net_g_latest.pth')


def release_basicsr_logger() -> None:
    """Undo what building a network did to BasicSR's logger: the first ``get_root_logger`` call of a process sets it
    up and later calls return it unchanged, so without this the training run would get neither its log file nor its
    progress lines (the timing's ``build_network`` made that first call, without a file and at level WARNING)."""
    import logging

    from basicsr.utils import logger as basicsr_logger

    log = logging.getLogger('basicsr')
    for handler in list(log.handlers):
        log.removeHandler(handler)
    basicsr_logger.initialized_logger.pop('basicsr', None)


def seconds_per_iteration(opt: Dict[str, Any]) -> float:
    """Median time of a few training steps of the starter network at the fine-tune's batch and crop size, plus
    the time the training set takes to synthesise a batch (blur, noise, the ``norm_context`` region)."""
    import numpy as np
    import torch

    from mpt_data import SyntheticDefocusDataset
    from mpt_deploy.model_loading import build_network

    net = build_network(dict(opt['network_g']))
    optim = torch.optim.AdamW(net.parameters(), lr=1e-4)
    train = opt['datasets']['train']
    x = torch.rand(train['batch_size_per_gpu'], train['in_chans'], train['gt_size'], train['gt_size'])
    times = []
    for _ in range(6):  # the first two steps of a fresh process also pay one-off set-up: not timed
        start = time.perf_counter()
        optim.zero_grad()
        (net(x) - x).abs().mean().backward()
        optim.step()
        times.append(time.perf_counter() - start)
    times = times[2:]
    data = SyntheticDefocusDataset({**train, 'phase': 'train'})
    state = np.random.get_state()
    batch = range(train['batch_size_per_gpu'])
    for _ in range(2):  # the same draws twice: the second finds its images decoded and PSFs computed, as
        start = time.perf_counter()  # nearly every draw of a run does
        for i in batch:
            np.random.seed(i)
            data[i % len(data)]
    np.random.set_state(state)
    return (sorted(times)[len(times) // 2] + time.perf_counter() - start) * 1.05  # + logging


def validation_psnr(opt: Dict[str, Any], weights: str, param_key: Optional[str]) -> Tuple[float, float]:
    """(mean PSNR of the inputs, of the network) on the validation pairs, in the images' own units (the dtype's
    range), the network run as ``mpt-deblur`` runs it: its normalisation computed from each input and inverted.

    Not BasicSR's validation units: under ``input_percentile`` those clip a sharp image's peaks above the blurry
    input's 99.9th percentile, which is where deblurring concentrates fluorescence."""
    import numpy as np
    import torch
    from basicsr.metrics import calculate_psnr

    from mpt_data import SyntheticDefocusDataset
    from mpt_data.normalization import from_train_options
    from mpt_deploy.inference import deblur_plane
    from mpt_deploy.model_loading import load_network

    def psnr(img: np.ndarray, gt: np.ndarray) -> float:
        return float(calculate_psnr(np.clip(img, 0, 1) * 255, np.clip(gt, 0, 1) * 255, 0, input_order='HWC'))

    net = load_network(dict(opt['network_g']), weights, param_key)
    norm = from_train_options(opt, 'the mpt-finetune plan')
    ds = SyntheticDefocusDataset({**opt['datasets']['val'], 'phase': 'val', 'normalize': 'dtype'})
    scores: List[Tuple[float, float]] = []
    for i in range(len(ds)):
        pair = ds.pair(i)
        with torch.no_grad():
            out = deblur_plane(net, pair.lq, pair.name, norm, opt['network_g'].get('in_chans'), tile=0)
        scores.append((psnr(pair.lq, pair.gt), psnr(out, pair.gt)))
    return float(np.mean([s[0] for s in scores])), float(np.mean([s[1] for s in scores]))


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Command-line entry point of ``mpt-finetune`` (exit 0 written, 1 failed, 2 bad arguments)."""
    args = parse_args(argv)
    import shutil

    from mpt_common.option_file import dump_options, load_options
    from mpt_deploy.starter_models import CHANNELS, deblur_kind

    out = os.path.abspath(args.output)
    os.makedirs(out, exist_ok=True)
    plan_path = os.path.join(out, PLAN)
    try:
        from mpt_data.image_io import read_header

        files = sharp_images(args.sharp)
        first = os.path.join(args.sharp, files[0]) if files else None
        channels = read_header(first, first).channels if first else 1  # the images' colours: model and card
        if args.auto_resume and os.path.isfile(plan_path):
            opt = load_options(plan_path)
            print(f'mpt-finetune: continuing the run planned in {plan_path}', file=sys.stderr)
        else:
            # without --kind, the model mpt-deblur would apply (gray without --sharp)
            kind = args.kind or (deblur_kind(channels, first) if first else 'gray')
            train_files, val_files = split(files)
            if args.crop:
                for name in train_files:
                    path = os.path.join(args.sharp, name)
                    header = read_header(path, path)
                    if min(header.height, header.width) < args.crop:
                        raise ValueError(f'--crop {args.crop} is larger than {path} ({header.height} x '
                                         f'{header.width}); choose a crop that fits the training images')
            for name, listed in (('train_files.txt', train_files), ('val_files.txt', val_files)):
                with open(os.path.join(out, name), 'w', encoding='utf-8') as handle:
                    handle.write(''.join(f'{f}\n' for f in listed))
            opt = plan_options(args, files, kind, 10)
            per_iter = seconds_per_iteration(opt)
            release_basicsr_logger()
            total = args.iters or max(10, int(args.minutes * 60 * 0.9 / per_iter))
            opt = plan_options(args, files, kind, total)
            print(f'mpt-finetune: starter model {kind}, {len(train_files) or "procedural"} training image(s), '
                  f'{len(val_files) or "procedural"} held out; about {per_iter:.2f} s per iteration: {total} '
                  f'iterations for {args.minutes:g} min', file=sys.stderr)
            with open(plan_path, 'w', encoding='utf-8') as handle:
                dump_options(opt, handle)
        from mpt_plugin.cli import train_main

        cwd = os.getcwd()
        os.chdir(out)
        try:
            train_main(['-opt', plan_path] + (['--auto_resume'] if args.auto_resume else []))
        finally:
            os.chdir(cwd)
        weights = finetuned_weights(out)
        model_opt = {k: v for k, v in opt.items() if k in ('name', 'model_type', 'scale', 'network_g', 'datasets')}
        with open(os.path.join(out, 'model.yml'), 'w', encoding='utf-8') as handle:
            dump_options(model_opt, handle)
        from mpt_deploy.starter_models import starter_model

        kind = 'gray' if CHANNELS['gray'] == opt['network_g']['in_chans'] else 'rgb'
        source, starter = validation_psnr(opt, starter_model(kind).weights, 'params')
        _, tuned = validation_psnr(opt, weights, 'params')
        kept = weights if tuned >= starter else starter_model(kind).weights  # never ship a model worse than its start
        shutil.copyfile(kept, os.path.join(out, 'model.pth'))
        write_card(out, args, opt, kind, source, starter, tuned, channels > 1)
        print(f'mpt-finetune: validation PSNR: input {source:.2f} dB, starter {starter:.2f} dB, fine-tuned '
              f'{tuned:.2f} dB ({tuned - starter:+.2f} dB).' + ('' if kept == weights else
              ' The fine-tune did not beat the starter model on validation: model.pth is the starter model (the '
              f'fine-tuned weights stay in {weights}).') + f' Deblur with: mpt-deblur -opt {out}/model.yml '
              f'-w {out}/model.pth -i IN -o OUT', file=sys.stderr)
    except (OSError, ValueError) as err:
        print(f'mpt-finetune: error: {err}', file=sys.stderr)
        return 1
    return 0


def write_card(out: str, args: argparse.Namespace, opt: Dict[str, Any], kind: str, source: float, starter: float,
               tuned: float, rgb_sharp: bool = False) -> None:
    """``model.md``: what the model is, the optics it was made for, its data and its validation gain
    (``rgb_sharp``: the ``--sharp`` images have colour channels)."""
    val = opt['datasets']['val']
    held = 'procedural scenes' if 'procedural' in val else f'held-out images of {args.sharp}'
    lines = [
        f'# MPT fine-tuned for one microscope ({kind})', '',
        f'Fine-tuned from the shipped starter model `{kind}` with `mpt-finetune` for '
        f'{opt["train"]["total_iter"]} iterations on synthetic pairs.', '',
        '## Optics', '',
        f'- NA {args.na}, immersion index {args.immersion_index}, emission {args.wavelength} um, pixel size '
        f'{args.pixel_size} um (sample plane); defocus {args.defocus[0]}-{args.defocus[1]} um; widefield PSF with the '
        'exact scalar defocus phase.',
        f'- Shot noise: {args.photons[0]:g}-{args.photons[1]:g} photons at full scale.', '',
        '## Data', '',
        f'- Sharp images: {args.sharp or "procedural fluorescence-like scenes (mpt_data.scenes)"}.',
        f'- Validation: {held}, never trained on.',
        *(['- Colour: a one-channel network; `mpt-deblur` applies it to each colour channel of RGB images'
           + ('; it was trained on one colour channel of an RGB image per sample.' if rgb_sharp else
              '.')] if kind == 'gray' else []),
        f'- Loss: {opt["train"]["pixel_opt"]["type"]} at learning rate {opt["train"]["optim_g"]["lr"]:g}.', '',
        '## Validation PSNR (dB, in the images\' own units)', '',
        '| input | starter model | fine-tuned |', '|---|---|---|',
        f'| {source:.2f} | {starter:.2f} | {tuned:.2f} |', '',
        ('`model.pth` holds the fine-tuned weights.' if tuned >= starter else
         '`model.pth` holds the **starter model**: the fine-tune ended below it on validation (its weights are in '
         f'`experiments/{RUN}/models/net_g_latest.pth`).'), '',
        '## Limits', '',
        '- Trained on synthetic blur of this PSF family: blur or noise outside these ranges is not covered.',
    ]
    with open(os.path.join(out, 'model.md'), 'w', encoding='utf-8') as handle:
        handle.write('\n'.join(lines) + '\n')


if __name__ == '__main__':
    sys.exit(main())
