"""What ``mpt-finetune`` gains: a fine-tune for one microscope, scored on images it never saw (issue: a model for
your microscope in one command).

1. A "specimen": procedural fluorescence-like scenes of a few kinds (:data:`SPECIMEN`), written as 16-bit TIFFs
   (``--rgb``: three-channel composites, each channel its own structures); ``train/`` goes to the fine-tune as
   ``--sharp``, ``test/`` (other seeds) is only used for scoring.
2. ``mpt-finetune --sharp train/ <optics> --minutes M -o model/`` as a user runs it (all cores).
3. Test pairs: ``test/`` blurred with the same optics (defocus drawn from the same range) and shot noise, seeded;
   PSNR of the blurry input, of the starter model ``mpt-deblur`` applies by default (RGB: the gray one per channel)
   and of the fine-tuned model, each through ``mpt-deblur``'s normalisation.

    python -m tools.finetune_gain --minutes 10 --markdown docs/guides/finetune.md

``--minutes`` is wall time; on 2 cores, 10 minutes are 20 CPU-minutes.
"""

from __future__ import annotations

import argparse
import os
import os.path as osp
import platform
import subprocess
import sys
import time
from typing import Dict, List, Optional, Sequence

import numpy as np

from mpt_plugin.finetune import finetuned_weights

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
OPTICS_PRESETS = {
    # the example of mpt-finetune --help: inside the starter recipe's ranges (Airy 3.5 px, up to 3.6 waves)
    'oil100': {'na': 1.4, 'immersion_index': 1.518, 'wavelength_um': 0.52, 'pixel_size_um': 0.065,
               'defocus_um': [0.0, 2.0]},
    # 60x/1.2 water on a 6.5 um sCMOS, up to 4 um out of focus: Airy 2.4 px but up to 5.8 waves of defocus,
    # beyond the starter recipe's 3.5 (docs/guides/synthetic_data.md)
    'water60': {'na': 1.2, 'immersion_index': 1.33, 'wavelength_um': 0.52, 'pixel_size_um': 0.108,
                'defocus_um': [0.0, 4.0]},
}
OPTICS = OPTICS_PRESETS['oil100']
PHOTONS = [100.0, 3000.0]  # mpt-finetune's default noise range
SPECIMEN = {'kinds': ['nuclei', 'puncta'], 'size': 384, 'train': 10, 'test': 6}


def write_specimen(folder: str, seed: int = 0, channels: int = 1) -> Dict[str, str]:
    """``train/`` and ``test/`` folders of 16-bit scenes of ``channels`` channels (seeds from ``seed`` and ``seed +
    10000``); returns their paths. The documented figures use seed 0; a study of the fine-tune's settings uses
    another specimen."""
    import tifffile

    from mpt_data.scenes import make_scene

    paths = {}
    for split, count, first in (('train', SPECIMEN['train'], seed), ('test', SPECIMEN['test'], seed + 10_000)):
        paths[split] = osp.join(folder, split)
        os.makedirs(paths[split], exist_ok=True)
        for i in range(count):
            scene = make_scene(np.random.default_rng(first + i), (SPECIMEN['size'], SPECIMEN['size']), channels,
                               SPECIMEN['kinds'])
            tifffile.imwrite(osp.join(paths[split], f'scene_{first + i:05d}.tif'),
                             np.round((scene[:, :, 0] if channels == 1 else scene) * 65535).astype(np.uint16))
    return paths


def finetune(sharp: Optional[str], out: str, minutes: float, optics: Dict = OPTICS, extra: Sequence[str] = ()) -> float:
    """Run ``mpt-finetune`` (on ``sharp``, or procedural scenes when None; with ``extra`` options); returns its wall
    time in seconds."""
    cmd = [sys.executable, '-m', 'mpt_plugin.finetune', *(['--sharp', sharp] if sharp else []),
           '--na', str(optics['na']),
           '--immersion-index', str(optics['immersion_index']), '--wavelength', str(optics['wavelength_um']),
           '--pixel-size', str(optics['pixel_size_um']), '--defocus', '{}:{}'.format(*optics['defocus_um']),
           '--photons', '{:g}:{:g}'.format(*PHOTONS), '--minutes', f'{minutes:g}', '-o', out, *extra]
    print(' '.join(cmd), flush=True)
    start = time.time()
    subprocess.run(cmd, check=True, cwd=ROOT)
    return time.time() - start


def blurred_specimen(folder: str, optics: Dict, channels: int = 1, pairs_per_image: int = 2, val_seed: int = 7,
                     val_crop: Optional[int] = 256):
    """Seeded pairs of the scenes in ``folder`` blurred through ``optics`` with :data:`PHOTONS` shot noise and read
    noise (a ``SyntheticDefocusDataset`` in validation mode, intensities in the dtype's range)."""
    from mpt_data.synthetic_defocus_dataset import SyntheticDefocusDataset

    return SyntheticDefocusDataset({'name': f'blurred specimen {folder}', 'phase': 'val', 'dataroot_gt': folder,
                                    'in_chans': channels, 'psf': {'widefield_physical': optics},
                                    'noise': {'photons': PHOTONS, 'read_noise': [0.0, 0.005], 'clean_fraction': 0.0},
                                    'pairs_per_image': pairs_per_image, 'val_seed': val_seed, 'val_crop': val_crop})


def score(test: str, model_dir: str, pairs_per_image: int = 2, optics: Dict = OPTICS,
          channels: int = 1) -> Dict[str, List[float]]:
    """PSNR per test pair: ``input``, ``starter`` (the shipped model ``mpt-deblur`` applies by default) and
    ``fine-tuned``."""
    from mpt_deploy.inference import deblur_plane
    from mpt_deploy.model_loading import inference_normalization, load_weights, network_in_chans
    from mpt_deploy.starter_models import StarterNetworks
    from mpt_metrics.image_quality import psnr

    ds = blurred_specimen(test, optics, channels, pairs_per_image)
    starter_net, starter_opt, starter_norm, _ = StarterNetworks().for_channels(channels, test)
    opt_file = osp.join(model_dir, 'model.yml')
    tuned_net, tuned_opt = load_weights(finetuned_weights(model_dir), opt_file)
    tuned_norm = inference_normalization(opt_file)
    out: Dict[str, List[float]] = {'input': [], 'starter': [], 'fine-tuned': []}
    for i in range(len(ds)):
        pair = ds.pair(i)
        out['input'].append(psnr(pair.lq, pair.gt))
        for name, net, opt, norm in (('starter', starter_net, starter_opt, starter_norm),
                                     ('fine-tuned', tuned_net, tuned_opt, tuned_norm)):
            result = deblur_plane(net, pair.lq, pair.name, norm, network_in_chans(opt), 'auto', tile=0)
            out[name].append(psnr(result, pair.gt))
    return out


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--minutes', type=float, default=10.0, help='mpt-finetune --minutes (wall time)')
    parser.add_argument('--work', default=osp.join(ROOT, 'experiments', 'finetune_gain'), help='scratch folder')
    parser.add_argument('--optics', choices=sorted(OPTICS_PRESETS), default='oil100',
                        help='microscope (default oil100: 100x/1.4 oil, the mpt-finetune example)')
    parser.add_argument('--seed', type=int, default=0, help='first seed of the specimen (default 0, the documented '
                        'one; choose mpt-finetune settings on another)')
    parser.add_argument('--crop', type=int, help='mpt-finetune --crop')
    parser.add_argument('--lr', type=float, help='mpt-finetune --lr')
    parser.add_argument('--rgb', action='store_true', help='an RGB specimen (three-channel composites)')
    parser.add_argument('--kind', choices=['gray', 'rgb'], help='mpt-finetune --kind (the starter column stays the '
                        'model mpt-deblur applies by default)')
    parser.add_argument('--markdown', help='docs page whose finetune:<optics> block receives the table')
    args = parser.parse_args(argv)
    extra = [f'--{k}={getattr(args, k):g}' for k in ('crop', 'lr') if getattr(args, k) is not None]
    extra += [f'--kind={args.kind}'] if args.kind else []
    channels = 3 if args.rgb else 1
    optics = OPTICS_PRESETS[args.optics]
    import torch

    paths = write_specimen(args.work, args.seed, channels)
    model_dir = osp.join(args.work, 'model')
    wall = finetune(paths['train'], model_dir, args.minutes, optics, extra)
    torch.set_grad_enabled(False)
    psnrs = score(paths['test'], model_dir, optics=optics, channels=channels)
    mean = {k: float(np.mean(v)) for k, v in psnrs.items()}
    with open(osp.join(model_dir, 'model.pth'), 'rb') as a, open(finetuned_weights(model_dir), 'rb') as b:
        kept = 'the fine-tuned weights' if a.read() == b.read() else 'the starter model'
    gains = np.array(psnrs['fine-tuned']) - np.array(psnrs['starter'])
    table = [f'mpt-finetune for {wall / 60:.1f} min wall ({os.cpu_count()} CPU cores: '
             f'{wall / 60 * (os.cpu_count() or 1):.0f} CPU-min), scored on {len(gains)} test pairs of '
             f'{SPECIMEN["test"]} scenes it never saw', '',
             '| | input | starter model | fine-tuned | fine-tuned - starter | fine-tuned - input |',
             '|---|---|---|---|---|---|',
             f'| mean PSNR (dB) | {mean["input"]:.2f} | {mean["starter"]:.2f} | {mean["fine-tuned"]:.2f} | '
             f'{mean["fine-tuned"] - mean["starter"]:+.2f} | {mean["fine-tuned"] - mean["input"]:+.2f} |', '',
             f'Per pair, fine-tuned - starter: min {gains.min():+.2f}, max {gains.max():+.2f} dB.',
             '', f'mpt-finetune shipped as model.pth: {kept} (chosen by its own validation on held-out --sharp '
             'images).']
    report = '\n'.join(table)
    print(report)
    if args.markdown:
        from mpt_metrics.table_output import write_markdown

        described = ', '.join(f'{k} {v}' for k, v in optics.items())
        notes = [f'Optics ({args.optics}): {described}; shot noise {PHOTONS[0]:g}-{PHOTONS[1]:g} photons at full '
                 'scale, read noise 0-0.005.',
                 f'Specimen: {"RGB composites of " if args.rgb else ""}procedural scenes of kinds '
                 f'{SPECIMEN["kinds"]}, {SPECIMEN["size"]} px, '
                 f'{SPECIMEN["train"]} for --sharp (seeds {args.seed}-{args.seed + SPECIMEN["train"] - 1}), '
                 f'{SPECIMEN["test"]} for the test (seeds from {args.seed + 10_000}).']
        env = {'cpu': platform.processor() or platform.machine(), 'torch': torch.__version__}
        block = args.optics + ('-rgb' if args.rgb else '') + (f'-{args.kind}' if args.kind else '')
        marks = (f'<!-- finetune:{block}:begin -->', f'<!-- finetune:{block}:end -->')
        write_markdown(args.markdown, [report], notes, env, argv, '-m tools.finetune_gain', marks)
    return 0


if __name__ == '__main__':
    sys.exit(main())
