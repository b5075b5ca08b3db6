"""Equal-wall-time study of starter model sizes (``docs/guides/starter_models.md``, "Network size").

Each candidate network (``dim:blocks``, e.g. ``24:1,1,1``) is trained from the starter option file of ``--kind`` for
the same wall time: a timing of its training step (data synthesis included, one thread) sets its iteration count,
then all candidates train at once through BasicSR (one thread each) and their last validation PSNR on the tune
images is compared::

    python -m tools.starter_size_study --kind gray --minutes 10 --candidates 24:1,1,1 32:1,1,1

Prints one Markdown row per candidate: parameters, seconds per iteration, iterations, wall time, tune PSNR.
"""

from __future__ import annotations

import argparse
import os
import os.path as osp
import re
import subprocess
import sys
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from tools.train_starter_models import ROOT, option_file


def candidate(text: str) -> Tuple[int, List[int]]:
    dim, _, blocks = text.partition(':')
    return int(dim), [int(b) for b in (blocks or '1,1,1').split(',')]


def study_options(kind: str, dim: int, blocks: List[int], total_iter: int) -> Dict[str, Any]:
    from mpt_common.option_file import load_options

    opt = load_options(option_file(kind))
    opt['name'] = f'size_study_{kind}_d{dim}_b{"".join(map(str, blocks))}'
    opt['network_g'].update(dim=dim, num_blocks=list(blocks))
    opt['train']['total_iter'] = total_iter
    opt['train']['scheduler']['periods'] = [total_iter]
    opt['val']['val_freq'] = total_iter
    opt['logger']['save_checkpoint_freq'] = total_iter
    opt['logger']['print_freq'] = max(1, total_iter // 10)
    return opt


def seconds_per_iteration(opt: Dict[str, Any], steps: int = 6) -> float:
    """Median wall time of a training step with its batch synthesised by the dataset (one thread)."""
    import torch

    from mpt_data import SyntheticDefocusDataset
    from mpt_deploy.model_loading import build_network

    torch.set_num_threads(1)
    train = dict(opt['datasets']['train'], phase='train', scale=1)
    ds = SyntheticDefocusDataset(train)
    net = build_network(dict(opt['network_g']))
    optim = torch.optim.AdamW(net.parameters(), lr=1e-4)
    rng = np.random.default_rng(0)
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        batch = [ds[int(rng.integers(len(ds)))] for _ in range(train['batch_size_per_gpu'])]
        lq = torch.stack([b['lq'] for b in batch])
        gt = torch.stack([b['gt'] for b in batch])
        optim.zero_grad()
        (net(lq) - gt).abs().mean().backward()
        optim.step()
        times.append(time.perf_counter() - start)
    return float(np.median(times[1:]))


def last_psnr(log: str) -> Optional[float]:
    found = re.findall(r'# psnr: ([0-9.]+)', open(log).read())
    return float(found[-1]) if found else None


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--kind', default='gray', choices=('gray', 'rgb'))
    parser.add_argument('--minutes', type=float, default=10.0, help='wall time of each run (default 10)')
    parser.add_argument('--candidates', nargs='+', default=['24:1,1,1', '32:1,1,1'], help='dim:blocks per level')
    args = parser.parse_args(argv)
    from mpt_common.option_file import dump_options

    runs = []
    out_dir = osp.join(ROOT, 'experiments', 'size_study')
    os.makedirs(out_dir, exist_ok=True)
    for text in args.candidates:
        dim, blocks = candidate(text)
        probe = study_options(args.kind, dim, blocks, 1)
        per_iter = seconds_per_iteration(probe)
        total = max(10, int(args.minutes * 60 / per_iter))
        opt = study_options(args.kind, dim, blocks, total)
        path = osp.join(out_dir, opt['name'] + '.yml')
        with open(path, 'w') as fout:
            dump_options(opt, fout)
        runs.append({'text': text, 'opt': opt, 'path': path, 'per_iter': per_iter, 'total': total,
                     'log': osp.join(out_dir, opt['name'] + '.log')})
        print(f'{text}: {per_iter:.2f} s/iteration -> {total} iterations', flush=True)
    env = dict(os.environ, OMP_NUM_THREADS='1', MKL_NUM_THREADS='1')
    for run in runs:
        run['start'] = time.time()
        run['proc'] = subprocess.Popen([sys.executable, osp.join(ROOT, 'scripts', 'train.py'), '-opt', run['path']],
                                       cwd=ROOT, env=env, stdout=open(run['log'], 'w'), stderr=subprocess.STDOUT)
    for run in runs:
        code = run['proc'].wait()
        run['wall'] = time.time() - run['start']
        if code:
            raise SystemExit(f'{run["text"]}: training failed ({code}); see {run["log"]}')
    from mpt_deploy.model_loading import build_network

    print(f'\nEqual-wall-time study, {args.kind}, {args.minutes:g} min per run, {time.strftime("%Y-%m-%d")}, '
          f'{os.cpu_count()} CPU cores (one thread per run); python -m tools.starter_size_study '
          f'--kind {args.kind} --minutes {args.minutes:g} --candidates {" ".join(args.candidates)}\n')
    print('| dim:blocks | parameters | s/iteration | iterations | wall min | tune PSNR (dB) |')
    print('|---|---|---|---|---|---|')
    for run in runs:
        n = sum(p.numel() for p in build_network(dict(run['opt']['network_g'])).parameters())
        psnr = last_psnr(run['log'])
        print(f'| {run["text"]} | {n} | {run["per_iter"]:.2f} | {run["total"]} | {run["wall"] / 60:.1f} | '
              f'{"n/a" if psnr is None else f"{psnr:.2f}"} |')
    return 0


if __name__ == '__main__':
    sys.exit(main())
