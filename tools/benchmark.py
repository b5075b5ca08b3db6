#!/usr/bin/env python
"""Benchmark MPT (paper configuration) against BasicSR's SwinIR: parameters, GFLOPs, forward latency, peak memory
and training-step latency.

GFLOPs come from ``torch.utils.flop_counter.FlopCounterMode`` (2 FLOPs per multiply-accumulate; attention matmuls
included: MPT's attention is run on its explicit matmul path for counting). Latencies are medians over
``--repeats`` runs after ``--warmup`` runs; forward runs under ``torch.inference_mode``; a training step is
forward + L1 loss + backward + AdamW step (``fused=True``, as the training options set it). Process CPU time (all
threads) is reported beside wall time: on a shared machine it shows how much of the wall time was the model's own
work.
Every measurement runs in its own subprocess; on CPU its peak memory is
the growth of the process's max RSS (``resource.getrusage``) over the measurement (model and input already
allocated), on CUDA ``torch.cuda.max_memory_allocated``.

    python -m tools.benchmark                                  # 256x256 forward, batch 2 x 128 train step
    python -m tools.benchmark --sizes 256 520x696 --models mpt --json bench.json
    python -m tools.benchmark --quick                          # smoke run (32x32, one repeat)
    python -m tools.benchmark --models mpt mpt-authors --authors-net ../shared/reference/authors_mpt --sizes 256
    python -m tools.benchmark --models mpt --variants fp32 bf16 bf16+compile    # precision / compiler rows

``--variants``: ``fp32`` (eager), ``bf16`` / ``fp16`` (``torch.autocast`` around forward and loss), ``+compile``
(``nn.Module.compile`` before the warm-up runs, so compilation is not timed), ``+ckpt`` (activation checkpointing
per sub-block, ``network_g.use_checkpoint``: training memory). Variant rows are also printed as
ratios to the same model's ``fp32`` row of the run.

``--authors-net PATH`` (a folder holding the authors' ``MPT.py``, or their repository clone with ``models/MPT.py``)
adds their network (paper configuration) as a row of the same run and prints every figure of the other rows as a
ratio to its row of the same measurement: on a shared machine absolute times move by up to 40 % between runs, so
only ratios from one run mean anything. ``mpt-authors`` is ``MPT(compat='authors')``, which computes their function.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

from mpt_metrics.table_output import MARK_BEGIN, MARK_END, write_markdown

SWINIR_CONFIG = dict(
    upscale=1, in_chans=3, img_size=128, window_size=8, img_range=1.0, depths=[6] * 6, embed_dim=180,
    num_heads=[6] * 6, mlp_ratio=2, upsampler='', resi_connection='1conv',
)
MODEL_NOTES = {
    'mpt': 'MPT() paper configuration (dim 40, blocks 6,6,6,6, heads 1,2,4,8, S1..S4, M=8, alpha=2.6)',
    'swinir': 'basicsr SwinIR(' + ', '.join(f'{k}={v!r}' for k, v in SWINIR_CONFIG.items()) + ')',
    'mpt-authors': "MPT(compat='authors'): the authors' function (raster pairing etc.), paper configuration",
    'authors': "the authors' MPT() from --authors-net (their MPT.py, paper configuration)",
    'mpt-tiny': 'MPT of mpt_plugin.smoke.TINY_MPT (dim 8): smoke runs only',
}
MODELS = ('mpt', 'swinir', 'mpt-authors', 'authors', 'mpt-tiny')
VARIANT_MARKS = ('<!-- variants:begin -->', '<!-- variants:end -->')
VARIANTS = ('fp32', 'bf16', 'fp16', 'fp32+compile', 'bf16+compile', 'fp16+compile', 'fp32+ckpt', 'bf16+ckpt')


def authors_mpt_file(path: str) -> str:
    """The authors' ``MPT.py`` in ``path`` (the file, a folder holding it, or their clone's ``models/``)."""
    for candidate in (path, os.path.join(path, 'MPT.py'), os.path.join(path, 'models', 'MPT.py')):
        if os.path.isfile(candidate):
            return os.path.abspath(candidate)
    raise FileNotFoundError(f'no MPT.py in {path!r} (nor in its models/)')


def result_only(net):
    """The authors' network with its ``'result'`` tensor as output (their forward returns a dict)."""
    import torch

    class ResultOnly(torch.nn.Module):
        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.inner(x)['result']

    return ResultOnly(net)


def parse_size(text: str) -> tuple[int, int]:
    """'256' -> (256, 256); '520x696' -> (520, 696) (height x width)."""
    parts = text.lower().split('x')
    try:
        size = tuple(int(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f'size must be N or HxW, got {text!r}') from None
    if len(size) == 1:
        size = size * 2
    if len(size) != 2 or min(size) < 1:
        raise argparse.ArgumentTypeError(f'size must be N or HxW with positive ints, got {text!r}')
    return size


def build_model(name: str, in_chans: int = 3, authors_net: str | None = None):
    import torch  # noqa: F401

    if name == 'mpt':
        import mpt_arch

        return mpt_arch.MPT(in_chans=in_chans)
    if name == 'mpt-tiny':  # smoke runs of the benchmark's code paths (tools/gpu_check.py --quick)
        import mpt_arch
        from mpt_plugin.smoke import TINY_MPT

        return mpt_arch.MPT(**{**{k: v for k, v in TINY_MPT.items() if k != 'type'}, 'in_chans': in_chans})
    if name == 'mpt-authors':
        import mpt_arch

        return mpt_arch.MPT(in_chans=in_chans, compat='authors')
    if name == 'authors':
        import importlib.util

        if not authors_net:
            raise ValueError('model authors needs --authors-net PATH')
        spec = importlib.util.spec_from_file_location('authors_mpt_benchmark', authors_mpt_file(authors_net))
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return result_only(module.MPT(inp_channels=in_chans, out_channels=in_chans))
    if name == 'swinir':
        from basicsr.archs.swinir_arch import SwinIR

        import mpt_common.basicsr_compat  # noqa: F401

        return SwinIR(**{**SWINIR_CONFIG, 'in_chans': in_chans})
    raise ValueError(f'unknown model {name!r} (choose one of {", ".join(MODELS)})')


def _sync(device: str) -> None:
    import torch

    if device == 'cuda':
        torch.cuda.synchronize()


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def worker(task: dict) -> dict:
    """One measurement (runs in a fresh subprocess)."""
    from mpt_common.malloc_reuse import keep_freed_memory

    keep_freed_memory(task['keep_freed_memory'])  # as the plugin's entry points do (before torch allocates)
    import torch

    torch.manual_seed(0)
    if task['threads']:
        torch.set_num_threads(task['threads'])
    device = task['device']
    model = build_model(task['model'], authors_net=task.get('authors_net')).to(device)
    result = {'params': sum(p.numel() for p in model.parameters())}
    variant = task.get('variant', 'fp32')
    amp_dtype = {'bf16': torch.bfloat16, 'fp16': torch.float16}.get(variant.split('+')[0])
    if '+ckpt' in variant:  # activation checkpointing per sub-block (network_g.use_checkpoint)
        for module in model.modules():
            if hasattr(module, 'use_checkpoint'):
                module.use_checkpoint = True
    if '+compile' in variant:
        from mpt_common.compiler import compile_module

        compile_module(model)

    def autocast():
        return torch.autocast(device, dtype=amp_dtype, enabled=amp_dtype is not None)

    h, w = task['size']
    if task['kind'] == 'flops':
        from torch.utils.flop_counter import FlopCounterMode

        from mpt_arch.cswa import record_attention
        from mpt_arch.inference import countable_kernels

        x = torch.rand(1, 3, h, w, device=device)
        counter = FlopCounterMode(display=False)
        # MPT's CSWA: explicit (countable) matmuls instead of the fused kernel; only ops FlopCounterMode counts
        with torch.no_grad(), record_attention(model), countable_kernels(), counter:
            model(x)
        result['gflops'] = counter.get_total_flops() / 1e9
        return result
    times, cpu_times = [], []
    if task['kind'] == 'forward':
        model.eval()
        x = torch.rand(1, 3, h, w, device=device)
        if device == 'cuda':
            torch.cuda.reset_peak_memory_stats()
        rss0 = _peak_rss_mb()
        with torch.inference_mode(), autocast():
            for i in range(task['warmup'] + task['repeats']):
                _sync(device)
                t0, c0 = time.perf_counter(), time.process_time()
                model(x)
                _sync(device)
                if i >= task['warmup']:
                    times.append(time.perf_counter() - t0)
                    cpu_times.append(time.process_time() - c0)
    else:  # train step
        model.train()
        # fused=True as in options/*.yml (one kernel per parameter instead of about ten)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=1e-4, fused=True)
        x = torch.rand(task['batch'], 3, h, w, device=device)
        y = torch.rand_like(x)
        if device == 'cuda':
            torch.cuda.reset_peak_memory_stats()
        rss0 = _peak_rss_mb()
        for i in range(task['warmup'] + task['repeats']):
            _sync(device)
            t0, c0 = time.perf_counter(), time.process_time()
            opt.zero_grad(set_to_none=True)
            with autocast():
                loss = torch.nn.functional.l1_loss(model(x).float(), y)
            loss.backward()
            opt.step()
            _sync(device)
            if i >= task['warmup']:
                times.append(time.perf_counter() - t0)
                cpu_times.append(time.process_time() - c0)
    result['cpu_seconds'] = statistics.median(cpu_times)
    result['seconds'] = statistics.median(times)
    result['all_seconds'] = times
    if device == 'cuda':
        result['peak_mb'] = torch.cuda.max_memory_allocated() / 2**20
    else:
        result['peak_mb'] = _peak_rss_mb() - rss0
    return result


def run_task(task: dict) -> dict:
    proc = subprocess.run(
        [sys.executable, os.path.abspath(__file__), '--_worker', json.dumps(task)],
        capture_output=True, text=True, check=False,
    )
    if proc.returncode:
        why = 'killed (out of memory?)' if proc.returncode == -9 else f'exit code {proc.returncode}'
        raise RuntimeError(f'failed: {why} for {task}:\n{proc.stderr[-3000:]}')
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--models', nargs='+', default=['mpt', 'swinir'], choices=[m for m in MODELS if m != 'authors'])
    parser.add_argument('--authors-net', metavar='PATH',
                        help="folder with the authors' MPT.py (or their clone): adds their network as the reference "
                             'row and prints the other rows as ratios to it')
    parser.add_argument('--sizes', nargs='+', type=parse_size, default=None,
                        help='forward sizes, N or HxW (default 256)')
    parser.add_argument('--batch', type=int, default=2, help='train-step batch size')
    parser.add_argument('--patch', type=int, default=128, help='train-step patch size')
    parser.add_argument('--repeats', type=int, default=3)
    parser.add_argument('--warmup', type=int, default=1)
    parser.add_argument('--device', default='cpu', choices=['cpu', 'cuda'])
    parser.add_argument('--threads', type=int, default=0, help='torch threads (0 = torch default)')
    parser.add_argument('--no-train', action='store_true', help='skip the train-step measurement')
    parser.add_argument('--default-allocator', action='store_true',
                        help="leave glibc's malloc as it is (by default it keeps freed memory for reuse, as the "
                             "plugin's entry points do: mpt_common.malloc_reuse)")
    parser.add_argument('--no-flops', action='store_true', help='skip the FLOP count')
    parser.add_argument('--variants', nargs='+', default=['fp32'], choices=VARIANTS,
                        help='precision / compiler variants of each model (ratios to fp32 when it is listed)')
    parser.add_argument('--quick', action='store_true', help='smoke run: 32x32, batch 1 x 32, one repeat')
    parser.add_argument('--json', metavar='PATH', help='also write the results as JSON')
    parser.add_argument('--markdown', metavar='PATH',
                        help='also write the tables, with date, machine, torch version and command, into PATH '
                             f'(between {MARK_BEGIN} and {MARK_END} when PATH has them, else a new file)')
    parser.add_argument('--_worker', help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args._worker:
        print(json.dumps(worker(json.loads(args._worker))))
        return 0
    if args.device == 'cuda':
        import torch

        if not torch.cuda.is_available():
            parser.error('--device cuda requested but torch.cuda.is_available() is False')
    if args.quick:
        args.sizes, args.batch, args.patch, args.repeats, args.warmup = [(32, 32)], 1, 32, 1, 1
        if args.authors_net:  # the authors' network needs multiples of 128
            args.sizes, args.patch = [(128, 128)], 128
    sizes = args.sizes or [(256, 256)]
    if args.repeats < 1 or args.warmup < 0 or args.batch < 1 or args.patch < 1:
        parser.error('--repeats, --batch and --patch must be >= 1 and --warmup >= 0')
    from mpt_common.malloc_reuse import keep_freed_memory

    keep_freed = keep_freed_memory(not args.default_allocator)  # whether it applies here (workers do the same)
    base = dict(device=args.device, threads=args.threads, warmup=args.warmup, repeats=args.repeats,
                keep_freed_memory=keep_freed)
    models = list(dict.fromkeys(args.models))
    if args.authors_net:
        try:
            base['authors_net'] = authors_mpt_file(args.authors_net)
        except FileNotFoundError as err:
            parser.error(str(err))
        models.append('authors')
    import torch

    env = {
        'torch': torch.__version__, 'device': args.device, 'threads': args.threads or torch.get_num_threads(),
        'malloc_keeps_freed_memory': keep_freed,
        'cpu': platform.processor() or platform.machine(), 'load_avg_at_start': os.getloadavg(),
    }
    if args.device == 'cuda':
        env['gpu'] = torch.cuda.get_device_name()
    rows = []

    def measure(row: dict, task: dict) -> None:
        try:
            res = run_task({**base, **task})
        except RuntimeError as err:  # e.g. out of memory: report it in the table, keep measuring the rest
            print(err, file=sys.stderr)
            row.update(error=str(err).split(' for ')[0])
            return
        row.update(params=res['params'], seconds=res['seconds'], cpu_seconds=res['cpu_seconds'],
                   peak_mb=res['peak_mb'], runs=res['all_seconds'])
        print(f'  measured {row["model"]} {row["kind"]} {row["size"]}: {row["seconds"]:.3f} s', file=sys.stderr)

    variants = list(dict.fromkeys(args.variants))
    for name in models:
        for variant in variants:
            label = name if variant == 'fp32' else f'{name} {variant}'
            extra = {'variant': variant}
            for size in sizes:
                row = {'model': label, 'kind': 'forward', 'size': f'1x3x{size[0]}x{size[1]}'}
                if not args.no_flops and variant == 'fp32':
                    try:
                        row['gflops'] = run_task({**base, 'model': name, 'kind': 'flops', 'size': size})['gflops']
                    except RuntimeError as err:
                        print(err, file=sys.stderr)
                measure(row, {'model': name, 'kind': 'forward', 'size': size, **extra})
                rows.append(row)
            if not args.no_train:
                row = {'model': label, 'kind': 'train step (AdamW)',
                       'size': f'{args.batch}x3x{args.patch}x{args.patch}'}
                measure(row, {'model': name, 'kind': 'train', 'size': (args.patch, args.patch), 'batch': args.batch,
                              **extra})
                rows.append(row)
    env['load_avg_at_end'] = os.getloadavg()
    header = (f'| model | measurement | input | parameters | GFLOPs | median wall s ({args.repeats} runs) '
              '| median process CPU s | peak MB |')
    lines = [header, '|' + '---|' * 8]
    for r in rows:
        gflops = f'{r["gflops"]:.1f}' if 'gflops' in r else '-'
        if 'error' in r:
            lines.append(f'| {r["model"]} | {r["kind"]} | {r["size"]} | - | {gflops} | {r["error"]} | - | - |')
            continue
        lines.append(f'| {r["model"]} | {r["kind"]} | {r["size"]} | {r["params"]:,} | {gflops} | {r["seconds"]:.3f} '
                     f'| {r["cpu_seconds"]:.2f} | {r["peak_mb"]:.0f} |')
    report = ['\n'.join(lines)]
    if len(variants) > 1 and 'fp32' in variants:
        report.append('Ratio to the same model in fp32 eager (same measurement, same run; < 1: faster / smaller):'
                      '\n\n' + '\n'.join(variant_ratios(rows, models)))
    if args.authors_net:
        report.append("Ratio to the authors' network (same measurement, same run; < 1: smaller / faster than theirs):"
                      '\n\n' + '\n'.join(authors_ratios(rows)))
    notes = [f'{args.device}, torch {env["torch"]}, {env["threads"]} threads; load average at start/end: '
             f'{env["load_avg_at_start"][0]:.2f} / {env["load_avg_at_end"][0]:.2f}; malloc: '
             + ('keeps freed memory (mpt_common.malloc_reuse)' if keep_freed else 'default')]
    notes += [f'{name}: {MODEL_NOTES[name]}' for name in models]
    notes.append('GFLOPs: torch.utils.flop_counter (2 per multiply-accumulate, attention matmuls included).')
    print('\n\n'.join(report) + '\n\n' + '\n'.join(notes))
    if args.markdown:
        # the variant rows have their own block (performance.md: "Precision and compiler variants")
        marks = VARIANT_MARKS if variants != ['fp32'] else (MARK_BEGIN, MARK_END)
        write_markdown(args.markdown, report, notes, env, argv, marks=marks)
    if args.json:
        with open(args.json, 'w', encoding='utf-8') as f:
            json.dump({'environment': env, 'models': MODEL_NOTES, 'results': rows}, f, indent=2)
    return 0


def variant_ratios(rows: list, models: list) -> list:
    """Markdown rows: each variant's wall time and peak memory over its model's fp32 row of the same measurement."""
    lines = ['| model | measurement | input | wall time ratio | peak memory ratio |', '|---|---|---|---|---|']
    for r in rows:
        name = r['model'].split(' ')[0]
        if r['model'] == name or name not in models:
            continue
        base = next((b for b in rows if b['model'] == name and b['kind'] == r['kind'] and b['size'] == r['size']),
                    None)
        if base is None or 'error' in base or 'error' in r:
            continue
        memory = f'{r["peak_mb"] / base["peak_mb"]:.2f}' if base['peak_mb'] > 0 else '-'
        lines.append(f'| {r["model"]} | {r["kind"]} | {r["size"]} | {r["seconds"] / base["seconds"]:.2f} | '
                     f'{memory} |')
    return lines


def authors_ratios(rows: list) -> list:
    """Markdown rows: each non-authors row's figures divided by the authors' row of the same kind, input and variant
    (``mpt bf16`` over ``authors bf16``)."""
    def variant(r: dict) -> str:
        return r['model'].partition(' ')[2] or 'fp32'

    ref = {(variant(r), r['kind'], r['size']): r for r in rows if r['model'].split(' ')[0] == 'authors'}
    out = ['| model | measurement | input | parameters | GFLOPs | wall s | process CPU s | peak MB |', '|' + '---|' * 8]

    def ratio(r: dict, a: dict, key: str) -> str:
        return f'{r[key] / a[key]:.2f}x' if key in r and key in a and a[key] else '-'

    for r in rows:
        a = ref.get((variant(r), r['kind'], r['size']))
        if r['model'].split(' ')[0] == 'authors' or a is None:
            continue
        out.append(f'| {r["model"]} | {r["kind"]} | {r["size"]} | '
                   + ' | '.join(ratio(r, a, k) for k in ('params', 'gflops', 'seconds', 'cpu_seconds', 'peak_mb'))
                   + ' |')
    return out


if __name__ == '__main__':
    sys.exit(main())
