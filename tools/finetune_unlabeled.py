"""Does fine-tuning from a user's blurry images alone help? EFCR's unlabeled mode inside ``mpt-finetune``, measured
(issue: a model for your microscope in one command, "optionally also from the user's blurry images alone").

Without in-focus images, ``mpt-finetune`` trains on procedural scenes blurred with the user's optics. The blurry
images of the specimen can join that run as EFCR's unlabeled extra data (``train.efcr_mode: extra_unlabeled``, paper
Sec. 3.2 / 4.2: L+ and L- on the synthetic pair, Lext' on a crop of a real blurry image, weight ``beta``). Arms, all
with the same iteration count (the one ``mpt-finetune --minutes M`` plans for the first), on one specimen
(:func:`tools.finetune_gain.write_specimen`):

* ``procedural``: ``mpt-finetune`` without ``--sharp``, as shipped;
* ``unlabeled beta=B`` (per ``--beta``): the same plan plus ``extra_dataset`` (the specimen's ``train`` scenes,
  blurred through the optics and noise: the user's blurry images) and the EFCR term at weight ``B``.

Each arm is scored as :func:`tools.finetune_gain.score` does, on the specimen's ``test`` scenes (never seen by any
arm, blurred or sharp). Gradient norms of the pixel and EFCR terms are logged (``log_grad_norm_freq``), so the
table shows how much the EFCR term steers the update.

    python -m tools.finetune_unlabeled --minutes 5 --beta 1e-5 --beta 1e-2
"""

from __future__ import annotations

import argparse
import glob
import os
import os.path as osp
import re
import sys
import time
from typing import Dict, List, Optional, Sequence

import numpy as np

from tools.finetune_gain import OPTICS_PRESETS, blurred_specimen, finetune, score, write_specimen


def write_blurry(sharp: str, folder: str, optics: Dict) -> str:
    """The scenes of ``sharp`` blurred through ``optics`` with shot and read noise (one seeded draw each), as 16-bit
    TIFFs in ``folder``: what a user would have instead of in-focus images."""
    import tifffile

    os.makedirs(folder, exist_ok=True)
    ds = blurred_specimen(sharp, optics, pairs_per_image=1, val_seed=3, val_crop=None)
    for i in range(len(ds)):
        pair = ds.pair(i)
        tifffile.imwrite(osp.join(folder, f'blurry_{i:03d}.tif'),
                         np.round(np.clip(pair.lq[:, :, 0], 0, 1) * 65535).astype(np.uint16))
    return folder


def unlabeled_plan(plan: Dict, blurry: str, beta: float, grad_freq: int) -> Dict:
    """``plan`` (an ``mpt-finetune`` plan) with ``blurry`` as EFCR's unlabeled extra data at weight ``beta``."""
    import copy

    out = copy.deepcopy(plan)
    train = out['datasets']['train']
    train['extra_dataset'] = {'type': 'UnlabeledDefocusDataset', 'dataroot_lq': blurry, 'in_chans': 1,
                              'normalize': train['normalize'], 'use_scale': False, 'use_hflip': True,
                              'use_vflip': True, 'use_rot': True}
    out['train'].update(efcr_opt={'type': 'EFCRLoss', 'loss_weight': beta}, efcr_mode='extra_unlabeled',
                        log_grad_norm_freq=grad_freq)
    return out


def gradient_ratio(run_dir: str) -> Optional[float]:
    """Median ratio of the EFCR term's gradient norm to the pixel loss's in the run's log (None if not logged)."""
    ratios = []
    for log in glob.glob(osp.join(run_dir, 'experiments', 'finetune', 'train_finetune_*.log')):
        with open(log, encoding='utf-8') as handle:
            for line in handle:
                pix = re.search(r'grad_pix: ([0-9.e+-]+)', line)
                efcr = re.search(r'grad_efcr: ([0-9.e+-]+)', line)
                if pix and efcr and float(pix.group(1)) > 0:
                    ratios.append(float(efcr.group(1)) / float(pix.group(1)))
    return float(np.median(ratios)) if ratios else None


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--minutes', type=float, default=5.0, help='mpt-finetune --minutes of the procedural arm')
    parser.add_argument('--beta', type=float, action='append', help='EFCR weight of an unlabeled arm (repeatable; '
                        'default: the paper\'s 1e-5)')
    parser.add_argument('--optics', choices=sorted(OPTICS_PRESETS), default='oil100')
    parser.add_argument('--seed', type=int, default=50_000, help='first seed of the specimen (default 50000, the '
                        'study specimen of tools.finetune_gain)')
    parser.add_argument('--work', default=osp.join('experiments', 'finetune_unlabeled'), help='scratch folder')
    args = parser.parse_args(argv)
    import torch

    from mpt_common.option_file import dump_options, load_options

    optics = OPTICS_PRESETS[args.optics]
    work = osp.abspath(args.work)
    paths = write_specimen(work, args.seed)
    blurry = write_blurry(paths['train'], osp.join(work, 'blurry'), optics)
    arms: List[tuple] = []
    base = osp.join(work, 'procedural')
    wall = finetune(None, base, args.minutes, optics)
    plan = load_options(osp.join(base, 'finetune_plan.yml'))
    arms.append(('procedural', base, wall))
    for beta in args.beta or [1e-5]:
        run = osp.join(work, f'unlabeled_{beta:g}')
        os.makedirs(run, exist_ok=True)
        grad_freq = max(1, plan['train']['total_iter'] // 20)
        with open(osp.join(run, 'finetune_plan.yml'), 'w', encoding='utf-8') as handle:
            dump_options(unlabeled_plan(plan, blurry, beta, grad_freq), handle)
        start = time.time()
        finetune(None, run, args.minutes, optics, ['--auto_resume'])  # runs the saved plan
        arms.append((f'unlabeled beta={beta:g}', run, time.time() - start))
    torch.set_grad_enabled(False)
    rows = ['| arm | iterations | wall min | test PSNR (dB) | - procedural arm (dB) | - starter (dB) | '
            'EFCR / pixel gradient |', '|---|---|---|---|---|---|---|']
    reference = None
    for name, run, seconds in arms:
        psnrs = score(paths['test'], run, optics=optics)
        mean = {k: float(np.mean(v)) for k, v in psnrs.items()}
        reference = mean['fine-tuned'] if reference is None else reference
        ratio = gradient_ratio(run)
        rows.append(f'| {name} | {plan["train"]["total_iter"]} | {seconds / 60:.1f} | {mean["fine-tuned"]:.2f} | '
                    f'{mean["fine-tuned"] - reference:+.2f} | {mean["fine-tuned"] - mean["starter"]:+.2f} | '
                    f'{"-" if ratio is None else f"{ratio:.2g}"} |')
    print(f'Test: {len(psnrs["input"])} pairs, input {np.mean(psnrs["input"]):.2f} dB, starter '
          f'{np.mean(psnrs["starter"]):.2f} dB ({args.optics}, specimen seed {args.seed}).')
    print('\n'.join(rows))
    return 0


if __name__ == '__main__':
    sys.exit(main())
