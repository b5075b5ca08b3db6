"""PSNR of blurry inputs and of ``mpt-deblur`` outputs against the ground truth, in raw units (no normalisation).

Usage::

    mpt-deblur -opt train.yml -w net_g_latest.pth -i <test inputs> -o deblurred/ --tile 0
    python scripts/eval_deblur_psnr.py -opt train.yml --dataset val --deblurred deblurred/

The pairs come from the dataset ``datasets.<--dataset>`` of the option file (its ``lq_path``/``gt_path``); the
output of an input is ``<--deblurred>/<input file name>``. PSNR is computed on the stored values (e.g. uint16)
with scikit-image, peak = the dtype's maximum (``raw``) and peak = the ground truth's max - min (``range``):
independent of any normalisation, so models trained with different ``normalize`` options compare fairly.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import List, Optional, Sequence, Tuple

import numpy as np

import mpt_common.basicsr_compat  # noqa: F401  (before any basicsr import)


def psnr(gt: np.ndarray, img: np.ndarray, peak: float) -> float:
    """PSNR in dB of ``img`` against ``gt`` for the given peak value (skimage)."""
    from skimage.metrics import peak_signal_noise_ratio

    return float(peak_signal_noise_ratio(gt.astype(np.float64), img.astype(np.float64), data_range=peak))


def dtype_peak(img: np.ndarray) -> float:
    """The dtype's maximum (1.0 for float images)."""
    return float(np.iinfo(img.dtype).max) if img.dtype.kind in 'ui' else 1.0


def pairs_from_options(opt_file: str, dataset: str) -> List[Tuple[str, str]]:
    """``(lq_path, gt_path)`` of every sample of ``datasets.<dataset>`` in a BasicSR option file."""
    from basicsr.data import build_dataset

    import mpt_data  # noqa: F401  (registers the datasets)
    from mpt_common.option_file import load_options

    opt = load_options(opt_file)
    if dataset not in (opt.get('datasets') or {}):
        raise SystemExit(f'{opt_file}: no datasets.{dataset} (has {sorted(opt.get("datasets") or {})}).')
    ds_opt = dict(opt['datasets'][dataset], phase='val')
    ds = build_dataset(ds_opt)
    samples = getattr(ds, 'samples', None)
    if samples and len(samples[0]) == 3 and isinstance(samples[0][1], str) and os.sep in samples[0][1]:
        return [(s[0], s[1]) for s in samples]  # BBBC006Dataset: (lq, gt, field), no image read
    return [(ds[i]['lq_path'], ds[i]['gt_path']) for i in range(len(ds))]


def table(pairs: Sequence[Tuple[str, str]], deblurred: str) -> List[Tuple[str, float, float, float, float]]:
    """Rows ``(name, raw PSNR in, raw PSNR out, range PSNR in, range PSNR out)`` for the pairs with an output."""
    from mpt_deploy.stacks import read_image_file

    rows = []
    for lq_path, gt_path in pairs:
        out_path = os.path.join(deblurred, os.path.basename(lq_path))
        if not os.path.isfile(out_path):
            continue
        lq, gt, out = (read_image_file(p).data for p in (lq_path, gt_path, out_path))
        if not lq.shape == gt.shape == out.shape:
            raise SystemExit(f'Shapes differ: {lq_path} {lq.shape}, {gt_path} {gt.shape}, {out_path} {out.shape}.')
        peak, span = dtype_peak(gt), float(gt.max()) - float(gt.min())
        rows.append((os.path.basename(lq_path), psnr(gt, lq, peak), psnr(gt, out, peak), psnr(gt, lq, span),
                     psnr(gt, out, span)))
    return rows


def format_table(rows: Sequence[Tuple[str, float, float, float, float]]) -> str:
    """Markdown table with a mean row."""
    lines = ['| input | PSNR in (raw) | PSNR out (raw) | PSNR in (range) | PSNR out (range) |',
             '|---|---|---|---|---|']
    lines += [f'| {name} | {a:.2f} | {b:.2f} | {c:.2f} | {d:.2f} |' for name, a, b, c, d in rows]
    means = np.mean([r[1:] for r in rows], axis=0)
    lines.append(f'| mean of {len(rows)} | ' + ' | '.join(f'{v:.2f}' for v in means) + ' |')
    return '\n'.join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('-opt', '--opt', required=True, help='option file whose dataset lists the test pairs')
    parser.add_argument('--dataset', default='val', help='key under datasets (default val)')
    parser.add_argument('--deblurred', required=True, help='folder of mpt-deblur outputs')
    args = parser.parse_args(argv)
    rows = table(pairs_from_options(args.opt, args.dataset), args.deblurred)
    if not rows:
        print(f'No output of datasets.{args.dataset} found in {args.deblurred!r}.', file=sys.stderr)
        return 1
    print(format_table(rows))
    return 0


if __name__ == '__main__':
    sys.exit(main())
