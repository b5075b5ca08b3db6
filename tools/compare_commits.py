"""The network of another commit against the working tree's, in one process: outputs and interleaved timings.

On a shared machine the same code's timings move by up to 40 % between runs, so a speed change is only measured
side by side: both networks are built with the same weights, their outputs compared, then forward passes
(``torch.inference_mode``) and training steps (L1 + AdamW, ``fused=True``) alternate, and the median of the
per-pair ratios is printed. The baseline's ``mpt_arch`` is read with ``git archive`` into a temporary folder and
imported under another name.

    python -m tools.compare_commits --baseline 8944acc              # paper configuration, 7 pairs each
    python -m tools.compare_commits --baseline HEAD --quick         # tiny network, 2 pairs (a smoke run)
"""

from __future__ import annotations

import argparse
import importlib
import io
import os
import os.path as osp
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from typing import Callable, Dict, List, Optional, Sequence

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
TINY = {'in_chans': 3, 'dim': 8, 'num_blocks': [1, 1], 'heads': [1, 2], 'scales': [[0.5], [1]], 'window_size': 4}


def baseline_mpt(rev: str, folder: str) -> type:
    """The ``MPT`` class of ``mpt_arch`` at ``rev``, imported as ``mpt_arch_baseline`` from ``folder``."""
    from basicsr.utils.registry import ARCH_REGISTRY

    archive = subprocess.run(['git', 'archive', rev, 'mpt_arch'], cwd=ROOT, check=True, capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(folder, filter='data')
    os.rename(osp.join(folder, 'mpt_arch'), osp.join(folder, 'mpt_arch_baseline'))
    sys.path.insert(0, folder)
    register = ARCH_REGISTRY.register
    ARCH_REGISTRY.register = lambda *a, **k: (lambda cls: cls)  # 'MPT' is registered by the working tree already
    try:
        return importlib.import_module('mpt_arch_baseline.mpt_arch').MPT
    finally:
        ARCH_REGISTRY.register = register
        sys.path.remove(folder)


def interleaved(run: Callable, nets: Dict[str, object], pairs: int) -> Dict[str, List[float]]:
    """Seconds per call of ``run(net)``, alternating which network goes first; one warm-up call each."""
    times: Dict[str, List[float]] = {name: [] for name in nets}
    for net in nets.values():
        run(net)
    for i in range(pairs):
        for name in (list(nets) if i % 2 == 0 else list(nets)[::-1]):
            start = time.perf_counter()
            run(nets[name])
            times[name].append(time.perf_counter() - start)
    return times


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--baseline', required=True, help='git revision whose mpt_arch is the baseline')
    parser.add_argument('--pairs', type=int, default=7, help='interleaved pairs per measurement')
    parser.add_argument('--quick', action='store_true', help='tiny network, 64^2, 2 pairs (a smoke run)')
    args = parser.parse_args(argv)
    import torch

    from mpt_arch import MPT

    config, size, pairs = (TINY, 64, 2) if args.quick else ({'in_chans': 3}, 256, args.pairs)
    with tempfile.TemporaryDirectory() as folder:
        base_cls = baseline_mpt(args.baseline, folder)
        torch.manual_seed(0)
        nets = {'working tree': MPT(**config), args.baseline: base_cls(**config)}
        nets[args.baseline].load_state_dict(nets['working tree'].state_dict())
        x = torch.rand(1, 3, size, size)
        with torch.inference_mode():
            diff = (nets['working tree'](x) - nets[args.baseline](x)).abs().max().item()
        print(f'max |working tree - {args.baseline}| of the forward at 1x3x{size}x{size}: {diff:.3g}')

        def forward(net) -> None:
            with torch.inference_mode():
                net(x)

        xt, yt = torch.rand(2, 3, size // 2, size // 2), torch.rand(2, 3, size // 2, size // 2)
        optims = {id(n): torch.optim.AdamW(n.parameters(), lr=1e-4, fused=True) for n in nets.values()}

        def train_step(net) -> None:
            optim = optims[id(net)]
            optim.zero_grad()
            torch.nn.functional.l1_loss(net(xt), yt).backward()
            optim.step()

        for label, run in ((f'forward 1x3x{size}x{size}', forward), (f'train step 2x3x{size // 2}x{size // 2}',
                                                                       train_step)):
            times = interleaved(run, nets, pairs)
            new, old = times['working tree'], times[args.baseline]
            ratio = statistics.median(a / b for a, b in zip(new, old))
            print(f'{label}: working tree {statistics.median(new):.3f} s, {args.baseline} '
                  f'{statistics.median(old):.3f} s (medians of {pairs}); median ratio working tree / '
                  f'{args.baseline}: {ratio:.3f}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
