"""What EFCR does at the paper's weight and at a weight where its gradient matters (``docs/reference/efcr.md``).

Trains the grayscale starter recipe, shortened to ``--iters`` iterations, in three arms and ``--seeds`` seeds:

* ``mpt``: L1 only (``options/train_MPT_starter_gray.yml``);
* ``efcr_paper``: L1 + EFCR (basic mode, Eq. 7) at the paper's beta = 1e-5
  (``options/study_MPT_starter_gray_EFCR.yml``);
* ``efcr_calibrated``: the same at each of ``--betas`` (default 0.3: EFCR's gradient is then a few tenths of L1's;
  measured with ``log_grad_norm_freq``); one arm ``efcr_b<beta>`` per weight.

Each run is BasicSR's ``train_pipeline`` (``scripts/train.py``), two at a time with one thread each. The EFCR runs
log ``grad_pix`` and ``grad_efcr`` (L2 norms of each term's gradient w.r.t. the weights); their medians over the
run are reported. Each final network is scored on the held-out gray images of ``tools/make_starter_data.py``
over every PSF type and noise level of ``tools/benchmark_quality.py``. ``--markdown PAGE`` writes the table into
the page's ``<!-- efcr-study:begin -->``/``<!-- efcr-study:end -->`` block.

Seeds go through BasicSR's ``--force_yml manual_seed=N``; the plugin re-seeds after ``--force_yml`` applies
(BasicSR 1.4.2 alone would seed before it, :mod:`mpt_plugin.patches`).

Example: ``python -m tools.efcr_study --iters 600 --markdown docs/reference/efcr.md``
"""

from __future__ import annotations

import argparse
import os
import os.path as osp
import platform
import re
import subprocess
import sys
import time
from typing import Dict, List, NamedTuple, Optional, Sequence

import numpy as np

from mpt_metrics.image_quality import psnr, scores
from mpt_metrics.table_output import write_markdown
from tools.benchmark_quality import NOISE_LEVELS, make_pairs, network_method

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))

ARMS = {'mpt': 'options/train_MPT_starter_gray.yml', 'efcr_paper': 'options/study_MPT_starter_gray_EFCR.yml',
        'efcr_calibrated': 'options/study_MPT_starter_gray_EFCR.yml'}
PAPER_BETA = 1e-5
MARKS = ('<!-- efcr-study:begin -->', '<!-- efcr-study:end -->')
GRAD_RE = re.compile(r'grad_pix: ([0-9.e+-]+) grad_efcr: ([0-9.e+-]+)')


class Arm(NamedTuple):
    """One arm of the study: its label, option family (a key of ARMS) and EFCR weight (None: no EFCR)."""

    label: str
    family: str
    beta: Optional[float]


def study_arms(families: Sequence[str], betas: Sequence[float]) -> List[Arm]:
    arms = []
    for family in families:
        if family == 'mpt':
            arms.append(Arm('mpt', family, None))
        elif family == 'efcr_paper':
            arms.append(Arm('efcr_paper', family, PAPER_BETA))
        else:
            arms += [Arm(f'efcr_b{beta:g}', family, beta) for beta in betas]
    return arms


def run_name(arm: Arm, seed: int, iters: int) -> str:
    return f'efcr_study_{arm.label}_s{seed}_i{iters}'


def log_file(arm: Arm, seed: int, iters: int) -> str:
    return osp.join(ROOT, 'experiments', run_name(arm, seed, iters) + '.log')


def weights_file(arm: Arm, seed: int, iters: int) -> str:
    return osp.join(ROOT, 'experiments', run_name(arm, seed, iters), 'models', 'net_g_latest.pth')


def command(arm: Arm, seed: int, iters: int) -> List[str]:
    """``scripts/train.py`` with BasicSR's ``--force_yml`` overrides of the arm's option file."""
    force = [f'name={run_name(arm, seed, iters)}', f'manual_seed={seed}', f'train:total_iter={iters}',
             f'train:scheduler:periods=[{iters}]', f'val:val_freq={iters}', f'logger:save_checkpoint_freq={iters}']
    if arm.family == 'efcr_calibrated':
        force.append(f'train:efcr_opt:loss_weight=!!float {arm.beta}')
    return [sys.executable, osp.join(ROOT, 'scripts', 'train.py'), '-opt', osp.join(ROOT, ARMS[arm.family]),
            '--force_yml', *force]


def train_all(jobs: List[tuple], iters: int, parallel: int) -> Dict[tuple, str]:
    """Run every (arm, seed) job, ``parallel`` at a time; returns the log file of each."""
    env = dict(os.environ, OMP_NUM_THREADS='1', MKL_NUM_THREADS='1')
    logs, running, pending = {}, [], list(jobs)
    os.makedirs(osp.join(ROOT, 'experiments'), exist_ok=True)
    while pending or running:
        while pending and len(running) < parallel:
            arm, seed = pending.pop(0)
            log_path = log_file(arm, seed, iters)
            log = open(log_path, 'w')
            proc = subprocess.Popen(command(arm, seed, iters), cwd=ROOT, env=env, stdout=log,
                                    stderr=subprocess.STDOUT)
            running.append(((arm, seed), proc, log))
            logs[(arm, seed)] = log_path
            print(f'started {arm.label} seed {seed} > {log_path}', flush=True)
        time.sleep(5)
        for item in list(running):
            job, proc, log = item
            if proc.poll() is not None:
                log.close()
                running.remove(item)
                if proc.returncode != 0:
                    raise SystemExit(f'{job} failed (exit {proc.returncode}); see {logs[job]}.')
                print(f'finished {job[0].label} seed {job[1]}', flush=True)
    return logs


def grad_medians(log_path: str) -> Optional[tuple]:
    """Median ``grad_pix`` and ``grad_efcr`` logged during a run (None for runs without EFCR)."""
    with open(log_path) as fin:
        found = [(float(a), float(b)) for a, b in GRAD_RE.findall(fin.read())]
    if not found:
        return None
    pix, efcr = np.array(found).T
    return float(np.median(pix)), float(np.median(efcr))


def evaluate(arm: Arm, seed: int, iters: int, data: str, pairs_per_image: int, crop: int) -> Dict[str, float]:
    """Held-out mean PSNR/SSIM of one run's final network over all PSF types and noise levels."""
    from mpt_common.option_file import load_options
    from mpt_deploy.model_loading import inference_normalization, load_network, network_options

    opt_file = osp.join(ROOT, ARMS[arm.family])
    weights = weights_file(arm, seed, iters)
    net_opt = network_options(opt_file)
    method = network_method(load_network(net_opt, weights), net_opt, inference_normalization(opt_file))
    psf_ranges = load_options(opt_file)['datasets']['train']['psf']
    psnrs, ssims, inp = [], [], []
    for i, psf_type in enumerate(psf_ranges):
        spec = {k: v for k, v in psf_ranges[psf_type].items() if k != 'weight'}
        for j, noise in enumerate(NOISE_LEVELS):
            for pair in make_pairs(osp.join(data, 'gray', 'heldout'), 'gray', psf_type, spec, noise,
                                   pairs_per_image, crop, 100 * i + j):
                s = scores(method(pair), pair.gt, False)
                psnrs.append(s['psnr'])
                ssims.append(s['ssim'])
                inp.append(psnr(pair.lq, pair.gt))
    return {'psnr': float(np.mean(psnrs)), 'ssim': float(np.mean(ssims)), 'input_psnr': float(np.mean(inp))}


def table(results: Dict[tuple, dict], arms: Sequence[Arm], seeds: Sequence[int], iters: int) -> str:
    lines = [f'Grayscale starter recipe shortened to {iters} iterations; held-out gray images, all PSF types and',
             'noise levels of the quality benchmark.', '',
             '| arm | beta | seed | held-out PSNR | SSIM | median grad L1 | median grad EFCR | ratio |',
             '|---|---|---|---|---|---|---|---|']
    for arm in arms:
        b = '-' if arm.beta is None else f'{arm.beta:g}'
        for seed in seeds:
            r = results[(arm, seed)]
            g = r.get('grads')
            grads = (f'{g[0]:.3g} | {g[1]:.3g} | {g[1] / g[0]:.2g}' if g else '- | - | -')
            lines.append(f'| {arm.label} | {b} | {seed} | {r["psnr"]:.2f} | {r["ssim"]:.4f} | {grads} |')
        mean_psnr = np.mean([results[(arm, s)]['psnr'] for s in seeds])
        mean_ssim = np.mean([results[(arm, s)]['ssim'] for s in seeds])
        lines.append(f'| **{arm.label} mean** | {b} | | **{mean_psnr:.2f}** | **{mean_ssim:.4f}** | | | |')
    first = results[(arms[0], seeds[0])]
    lines += ['', f'Blurry input on the same pairs: {first["input_psnr"]:.2f} dB.']
    return '\n'.join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--iters', type=int, default=800)
    parser.add_argument('--seeds', type=int, nargs='+', default=[0, 1])
    parser.add_argument('--arms', nargs='+', default=list(ARMS), choices=list(ARMS))
    parser.add_argument('--betas', type=float, nargs='+', default=[0.3], help='EFCR weights of the calibrated arms')
    parser.add_argument('--skip-existing', action='store_true', help='do not retrain runs that have final weights')
    parser.add_argument('--parallel', type=int, default=2, help='runs at a time (one thread each)')
    parser.add_argument('--data', default=osp.join(ROOT, 'starter_data'))
    parser.add_argument('--pairs-per-image', type=int, default=1)
    parser.add_argument('--crop', type=int, default=256)
    parser.add_argument('--eval-only', action='store_true', help='score existing runs')
    parser.add_argument('--markdown', help='docs page whose efcr-study block receives the table')
    args = parser.parse_args(argv)
    if not osp.isdir(osp.join(args.data, 'gray', 'train')):
        from tools.make_starter_data import build

        build(args.data, ['gray'])
    arms = study_arms(args.arms, args.betas)
    jobs = [(arm, seed) for seed in args.seeds for arm in arms]
    start = time.time()
    if not args.eval_only:
        todo = [job for job in jobs if not (args.skip_existing and osp.isfile(weights_file(*job, args.iters)))]
        train_all(todo, args.iters, args.parallel)
    import torch

    torch.set_grad_enabled(False)
    results = {}
    for arm, seed in jobs:
        results[(arm, seed)] = evaluate(arm, seed, args.iters, args.data, args.pairs_per_image, args.crop)
        log = log_file(arm, seed, args.iters)
        results[(arm, seed)]['grads'] = grad_medians(log) if osp.isfile(log) else None
        print(f'{arm.label} seed {seed}: {results[(arm, seed)]}', flush=True)
    report = table(results, arms, args.seeds, args.iters)
    print(report)
    print(f'({(time.time() - start) / 60:.1f} min)', file=sys.stderr)
    if args.markdown:
        env = {'cpu': platform.processor() or platform.machine(), 'torch': torch.__version__}
        note = 'Each run trains on one thread' + ('.' if args.eval_only else f', {args.parallel} at a time.')
        write_markdown(args.markdown, [report], [note], env, argv,
                       '-m tools.efcr_study', MARKS)
    return 0


if __name__ == '__main__':
    sys.exit(main())
