"""The GPU check: one short call on a lent GPU machine measures what ``docs/reference/performance.md`` reports.

    python -m tools.gpu_check --markdown docs/reference/performance.md       # on a GPU: at most about 8 minutes
    python -m tools.gpu_check --device cpu --quick                            # the same code paths on CPU (< 2 min)

Steps (each one's time is printed; a failing step is reported and the others still run):

1. the ``gpu``-marked tests (``tests/deploy/test_device_paths.py``) on the device (``MPT_TEST_DEVICE``);
2. ``tools/benchmark.py`` at the paper configuration: forward at 256^2 and a training step at batch 8 x 256^2,
   ``fp32`` / ``bf16`` / ``bf16+compile``, peak memory, against the authors' network when ``--authors-net`` is
   given (or found at ``../shared/reference/authors_mpt``); ``--quick``: the tiny test MPT at 32^2, batch 1;
3. with two or more GPUs visible, a 2-process DDP smoke run through ``torchrun`` and BasicSR's launcher (NCCL).

It prints one table; ``--markdown PAGE`` writes it between ``<!-- gpu:begin -->`` and ``<!-- gpu:end -->``.
"""

from __future__ import annotations

import argparse
import json
import os
import os.path as osp
import subprocess
import sys
import tempfile
import time
from typing import List, Optional, Sequence

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
AUTHORS_DEFAULT = osp.join(osp.dirname(ROOT), 'shared', 'reference', 'authors_mpt')
MARKS = ('<!-- gpu:begin -->', '<!-- gpu:end -->')


def step(name: str, cmd: List[str], env: Optional[dict] = None, timeout: int = 300) -> dict:
    """Run one step; returns its name, status, wall time and output tail."""
    print(f'[gpu_check] {name}: {" ".join(cmd)}', flush=True)
    start = time.time()
    try:
        proc = subprocess.run(cmd, cwd=ROOT, env={**os.environ, **(env or {})}, capture_output=True, text=True,
                              timeout=timeout)
        status = 'passed' if proc.returncode == 0 else f'failed (exit {proc.returncode})'
        output = proc.stdout + proc.stderr
    except subprocess.TimeoutExpired as err:
        status, output = f'timed out after {timeout} s', str(err.stdout or '')
    wall = time.time() - start
    print(f'[gpu_check] {name}: {status} in {wall:.0f} s', flush=True)
    if status != 'passed':
        print(output[-3000:], flush=True)
    return {'name': name, 'status': status, 'seconds': wall, 'output': output}


def benchmark_rows(path: str) -> List[str]:
    """Markdown rows of the benchmark's JSON: wall time and peak memory per model, variant and measurement."""
    with open(path, encoding='utf-8') as handle:
        results = json.load(handle)['results']
    rows = ['| model | measurement | input | median wall s | peak MB |', '|---|---|---|---|---|']
    for r in results:
        if 'error' in r:
            rows.append(f'| {r["model"]} | {r["kind"]} | {r["size"]} | {r["error"]} | - |')
        else:
            rows.append(f'| {r["model"]} | {r["kind"]} | {r["size"]} | {r["seconds"]:.4f} | {r["peak_mb"]:.0f} |')
    return rows


def ratio_blocks(output: str) -> List[str]:
    """The benchmark's ratio tables (each headed by its 'Ratio ...' line) from its printed output."""
    lines: List[str] = []
    capture = False
    for line in output.splitlines():
        if line.startswith('Ratio'):
            capture = True
            lines += ['', line, '']
        elif capture and line.startswith('| '):
            lines.append(line)
        elif line.strip():
            capture = False
    return lines


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--device', default='cuda', choices=['cuda', 'cpu'])
    parser.add_argument('--quick', action='store_true', help='smallest sizes (the CPU rehearsal)')
    parser.add_argument('--authors-net', help="the authors' MPT.py folder (default: ../shared/reference/authors_mpt "
                        'when present)')
    parser.add_argument('--markdown', help='page whose gpu block receives the table')
    args = parser.parse_args(argv)
    import torch

    if args.device == 'cuda' and not torch.cuda.is_available():
        parser.error('no CUDA device visible; --device cpu --quick rehearses the check on the CPU')
    authors = args.authors_net or (AUTHORS_DEFAULT if osp.isdir(AUTHORS_DEFAULT) else None)
    py = sys.executable
    steps = [step('gpu-marked tests', [py, '-m', 'pytest', '-q', '-m', 'gpu', '-p', 'no:cacheprovider',
                                       'tests/deploy/test_device_paths.py'], {'MPT_TEST_DEVICE': args.device})]
    with tempfile.TemporaryDirectory(prefix='mpt-gpu-check-') as tmp:
        bench_json = osp.join(tmp, 'bench.json')
        bench = [py, '-m', 'tools.benchmark', '--models', 'mpt-tiny' if args.quick else 'mpt', '--device', args.device,
                 '--no-flops',
                 '--variants', 'fp32', 'bf16', 'bf16+compile', '--json', bench_json]
        bench += ['--quick'] if args.quick else ['--sizes', '256', '--batch', '8', '--patch', '256', '--repeats', '5',
                                                 '--warmup', '2']
        if authors and not args.quick:
            bench += ['--authors-net', authors]
        steps.append(step('benchmark', bench, timeout=420))
        table = benchmark_rows(bench_json) if osp.isfile(bench_json) else []
        ratios = ratio_blocks(steps[-1]['output'])
        gpus = torch.cuda.device_count() if args.device == 'cuda' else 0
        if gpus >= 2:
            from mpt_plugin.smoke import smoke_options, write_options, write_pairs

            write_pairs(osp.join(tmp, 'data'))
            opt = write_options(osp.join(tmp, 'ddp.yml'), {**smoke_options(osp.join(tmp, 'data'), name='gpu_ddp'),
                                                           'num_gpu': 2})
            steps.append(step('DDP, 2 processes (NCCL)', [py, '-m', 'torch.distributed.run', '--nproc_per_node', '2',
                                                          'scripts/train.py', '-opt', opt, '--launcher', 'pytorch'],
                              timeout=240))
        else:
            steps.append({'name': 'DDP, 2 processes', 'status': f'skipped ({gpus} GPU visible)', 'seconds': 0.0})
    device = torch.cuda.get_device_name() if args.device == 'cuda' else 'CPU'
    lines = [f'GPU check on {device} ({"quick" if args.quick else "paper configuration"}), torch {torch.__version__}, '
             f'{time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}', '',
             '| step | status | seconds |', '|---|---|---|',
             *[f'| {s["name"]} | {s["status"]} | {s["seconds"]:.0f} |' for s in steps], '', *table]
    lines += ratios
    report = '\n'.join(lines)
    print(report)
    if args.markdown:
        from mpt_metrics.table_output import write_markdown

        env = {'cpu': device, 'torch': torch.__version__}
        write_markdown(args.markdown, [report], [], env, argv, '-m tools.gpu_check', MARKS)
    return 0 if all(s['status'] in ('passed',) or s['status'].startswith('skipped') for s in steps) else 1


if __name__ == '__main__':
    sys.exit(main())
