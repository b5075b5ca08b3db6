"""Result tables in the layout of the paper's Tables 1 and 2, and before/after image grids.

Runs BasicSR test option files (their ``datasets`` and ``val.metrics``) for a set of checkpoints through the
model's own validation (the same code path as ``basicsr.test.test_pipeline``), collects PSNR / SSIM / LPIPS and
writes a Markdown table: rows = methods, column groups = data sets (Table 1; one data set gives Table 2's
layout). LPIPS is added automatically when ``calculate_lpips`` is registered and works here; otherwise the
column shows "n/a". For each method and data set a grid "blurry | deblurred | sharp" of the first images is saved.

Either a manifest (YAML) ::

    MPT:                                   # method (table row)
      BBBC006_w1: {opt: options/test_MPT_BBBC006_w1.yml, checkpoint: experiments/mpt_w1/models/net_g_latest.pth}
      DPDD:       {opt: options/test_MPT_DPDD.yml, checkpoint: experiments/mpt_dpdd/models/net_g_latest.pth}
    MPT+EFCR:
      BBBC006_w1: {opt: ..., checkpoint: ...}

    python scripts/report.py --manifest manifest.yml --out-dir results/report

or option files crossed with checkpoints (columns named by the option files' dataset names)::

    python scripts/report.py -opt options/test_MPT_DPDD.yml --ckpt MPT=net_mpt.pth --ckpt MPT+EFCR=net_efcr.pth

``--from-json results/report/results.json`` rebuilds the table from saved numbers without running anything.
"""

import argparse
import copy
import json
import math
import sys
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

import mpt_common.basicsr_compat  # noqa: F401  (before any basicsr import)

METRICS = (('PSNR', '↑', 2), ('SSIM', '↑', 3), ('LPIPS', '↓', 3))
METRIC_TYPES = {'calculate_psnr': 'PSNR', 'calculate_psnr_pt': 'PSNR', 'calculate_ssim': 'SSIM',
                'calculate_ssim_pt': 'SSIM', 'calculate_lpips': 'LPIPS'}
Results = Mapping[str, Mapping[str, Mapping[str, Optional[float]]]]  # method -> dataset -> metric -> value


# ---------------------------------------------------------------- table and grid building (no model needed)

def _cell(value: Optional[float], decimals: int) -> str:
    return 'n/a' if value is None or (isinstance(value, float) and math.isnan(value)) else f'{value:.{decimals}f}'


def results_table(results: Results, datasets: Optional[Sequence[str]] = None) -> str:
    """Markdown table: rows = methods, for each data set the columns PSNR↑ SSIM↑ LPIPS↓ (Tables 1 and 2).

    Args:
        results: method -> data set -> {'PSNR': .., 'SSIM': .., 'LPIPS': ..}; missing entries print "n/a".
        datasets: column-group order (default: first-seen order).
    """
    if datasets is None:
        datasets = list(dict.fromkeys(d for per_method in results.values() for d in per_method))
    if not datasets:
        raise ValueError('no data set in the results')
    single = len(datasets) == 1
    header = ['Method']
    for dataset in datasets:
        header += [f'{name}{arrow}' if single else f'{dataset} {name}{arrow}' for name, arrow, _ in METRICS]
    lines = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
    for method, per_dataset in results.items():
        cells = [method]
        for dataset in datasets:
            scores = per_dataset.get(dataset, {})
            cells += [_cell(scores.get(name), decimals) for name, _, decimals in METRICS]
        lines.append('| ' + ' | '.join(cells) + ' |')
    title = f'{datasets[0]}\n\n' if single else ''
    return title + '\n'.join(lines) + '\n'


def _as_rgb_uint8(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.dtype == np.uint16:
        image = (image / 257.0).round().astype(np.uint8)
    elif image.dtype != np.uint8:
        image = (np.clip(image, 0, 1) * 255.0).round().astype(np.uint8)
    if image.ndim == 2:
        image = image[..., None]
    if image.shape[2] == 1:
        image = np.repeat(image, 3, axis=2)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f'grid images must be grey or 3-channel, got shape {image.shape}')
    return image


def image_grid(rows: Sequence[Sequence[np.ndarray]], gap: int = 4, background: int = 255) -> np.ndarray:
    """Rows of images side by side (e.g. blurry | deblurred | sharp) as one uint8 HxWx3 array.

    Images of one row must share a height; rows of different widths are padded on the right. Grey, 16-bit
    and float [0, 1] images are accepted.
    """
    if not rows or any(len(row) == 0 for row in rows):
        raise ValueError('image_grid needs at least one non-empty row')
    strips = []
    for r, row in enumerate(rows):
        images = [_as_rgb_uint8(image) for image in row]
        heights = {image.shape[0] for image in images}
        if len(heights) != 1:
            raise ValueError(f'row {r}: images have different heights {sorted(heights)}')
        height = heights.pop()
        spacer = np.full((height, gap, 3), background, np.uint8)
        parts = [images[0]]
        for image in images[1:]:
            parts += [spacer, image]
        strips.append(np.concatenate(parts, axis=1))
    width = max(strip.shape[1] for strip in strips)
    padded = []
    for i, strip in enumerate(strips):
        if i:
            padded.append(np.full((gap, width, 3), background, np.uint8))
        pad = np.full((strip.shape[0], width - strip.shape[1], 3), background, np.uint8)
        padded.append(np.concatenate([strip, pad], axis=1))
    return np.concatenate(padded, axis=0)


# ---------------------------------------------------------------- running BasicSR test option files

def _lpips_usable() -> bool:
    """True when calculate_lpips is registered and computes on a tiny pair (weights may be unavailable)."""
    from basicsr.metrics import calculate_metric
    from basicsr.utils.registry import METRIC_REGISTRY

    if 'calculate_lpips' not in METRIC_REGISTRY:
        return False
    rng = np.random.default_rng(0)
    pair = {'img': rng.integers(0, 255, (32, 32, 3), dtype=np.uint8),
            'img2': rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)}
    try:
        value = float(calculate_metric(pair, {'type': 'calculate_lpips', 'crop_border': 0}))
    except Exception as err:  # missing backbone weights, no network, ...
        print(f'LPIPS unavailable ({type(err).__name__}: {err}); its column shows n/a', file=sys.stderr)
        return False
    return math.isfinite(value)


def prepare_test_opt(opt_path: Path, checkpoint: Path, results_root: Path, lpips: bool) -> dict:
    """A BasicSR test option dict, as ``parse_options(is_train=False)`` builds it, for one checkpoint."""
    import torch

    from mpt_common.option_file import load_options

    opt = load_options(str(opt_path))
    if not isinstance(opt, dict) or 'datasets' not in opt or 'val' not in opt:
        raise ValueError(f'{opt_path} is not a BasicSR test option file (needs datasets and val sections)')
    if not Path(checkpoint).is_file():
        raise FileNotFoundError(f'checkpoint {checkpoint} does not exist')
    opt = copy.deepcopy(opt)
    opt.update(is_train=False, dist=False, rank=0, world_size=1, auto_resume=False)
    opt.setdefault('manual_seed', 0)
    if opt.get('num_gpu', 0) == 'auto' or (opt.get('num_gpu') and not torch.cuda.is_available()):
        opt['num_gpu'] = torch.cuda.device_count()
    for name, dataset in opt['datasets'].items():
        dataset['phase'] = name.split('_')[0]
        if 'scale' in opt:
            dataset['scale'] = opt['scale']
    from mpt_common.checkpoint import load_checkpoint

    state = load_checkpoint(str(checkpoint))
    paths = opt.setdefault('path', {})
    paths['pretrain_network_g'] = str(checkpoint)
    if 'param_key_g' not in paths:
        paths['param_key_g'] = 'params_ema' if isinstance(state, dict) and 'params_ema' in state else 'params'
    paths.setdefault('strict_load_g', True)
    paths.update(results_root=str(results_root), log=str(results_root),
                 visualization=str(results_root / 'visualization'))
    metrics = opt['val'].setdefault('metrics', {}) or {}
    opt['val']['metrics'] = metrics
    types = {m.get('type') for m in metrics.values()}
    if lpips and 'calculate_lpips' not in types:
        crop = next((m.get('crop_border', 0) for m in metrics.values()), 0)
        metrics['lpips'] = {'type': 'calculate_lpips', 'crop_border': crop}
    if not lpips:
        opt['val']['metrics'] = {k: m for k, m in metrics.items() if m.get('type') != 'calculate_lpips'}
    return opt


def run_test(opt: dict, grid_images: int) -> Tuple[Dict[str, Dict[str, Optional[float]]], Dict[str, np.ndarray]]:
    """Validate every test set of ``opt``; returns dataset name -> {PSNR, SSIM, LPIPS} and dataset -> grid."""
    from basicsr.data import build_dataloader, build_dataset
    from basicsr.models import build_model
    from basicsr.utils import tensor2img

    model = build_model(opt)
    scores, grids = {}, {}
    for _, dataset_opt in sorted(opt['datasets'].items()):
        dataset_opt = dict(dataset_opt)
        loader = build_dataloader(build_dataset(dataset_opt), dataset_opt, num_gpu=opt['num_gpu'], dist=False,
                                  sampler=None, seed=opt['manual_seed'])
        name = dataset_opt['name']
        model.validation(loader, current_iter=opt.get('name', 'report'), tb_logger=None, save_img=False)
        by_name = {METRIC_TYPES.get(m.get('type')): key for key, m in opt['val']['metrics'].items()}
        scores[name] = {metric: (float(model.metric_results[by_name[metric]]) if metric in by_name else None)
                        for metric, _, _ in METRICS}
        rows = []
        for i, data in enumerate(loader):
            if i >= grid_images:
                break
            model.feed_data(data)
            model.test()
            visuals = model.get_current_visuals()
            if 'gt' not in visuals:
                break
            rows.append([tensor2img(visuals[k], rgb2bgr=False) for k in ('lq', 'result', 'gt')])  # RGB or grey
        if rows:
            grids[name] = image_grid(rows)
    return scores, grids


def load_manifest(path: Path) -> List[Tuple[str, Optional[str], Path, Path]]:
    """(method, column or None, option file, checkpoint) entries of a manifest YAML (see module docstring)."""
    from mpt_common.option_file import load_options

    manifest = load_options(str(path))
    if isinstance(manifest, dict) and 'methods' in manifest:
        manifest = manifest['methods']
    if not isinstance(manifest, dict) or not manifest:
        raise ValueError(f'{path}: expected a mapping method -> {{dataset: {{opt, checkpoint}}}}')
    entries = []
    for method, per_dataset in manifest.items():
        if not isinstance(per_dataset, dict):
            raise ValueError(f'{path}: method {method!r} must map data sets to {{opt, checkpoint}}')
        for dataset, spec in per_dataset.items():
            if not isinstance(spec, dict) or 'opt' not in spec or 'checkpoint' not in spec:
                raise ValueError(f'{path}: {method}/{dataset} needs both opt and checkpoint')
            base = Path(path).parent
            entries.append((str(method), str(dataset), base / spec['opt'], base / spec['checkpoint']))
    return entries


def _parse_ckpt(text: str) -> Tuple[str, Path]:
    if '=' not in text:
        raise argparse.ArgumentTypeError(f'--ckpt needs NAME=PATH, got {text!r}')
    name, path = text.split('=', 1)
    return name, Path(path)


def _safe(name: str) -> str:
    return ''.join(c if c.isalnum() or c in '-_.' else '_' for c in name)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--manifest', type=Path, help='YAML: method -> {dataset: {opt, checkpoint}}')
    parser.add_argument('-opt', type=Path, nargs='+', default=[], help='BasicSR test option files')
    parser.add_argument('--ckpt', type=_parse_ckpt, action='append', default=[], help='NAME=CHECKPOINT (repeatable)')
    parser.add_argument('--from-json', type=Path, help='rebuild the table from a saved results.json')
    parser.add_argument('--no-lpips', action='store_true', help='skip LPIPS even when available')
    parser.add_argument('--grid-images', type=int, default=3, help='images per before/after grid (0: none)')
    parser.add_argument('--out-dir', type=Path, default=Path('results/report'))
    args = parser.parse_args(argv)

    if args.from_json is not None:
        results = json.loads(args.from_json.read_text())
    else:
        if args.manifest is not None:
            entries = load_manifest(args.manifest)
        elif args.opt and args.ckpt:
            entries = [(method, None, opt, ckpt) for method, ckpt in args.ckpt for opt in args.opt]
        else:
            parser.error('give --manifest, or -opt with --ckpt, or --from-json')
        from mpt_common.option_file import load_options
        from mpt_plugin import autoload, patches

        for opt_path in sorted({str(entry[2]) for entry in entries}):
            load_options(opt_path)  # every option file is checked (safe, valid YAML) before the first test runs

        patches.apply()
        autoload.import_plugins()
        lpips = not args.no_lpips and _lpips_usable()
        results: Dict[str, Dict[str, Dict[str, Optional[float]]]] = {}
        for method, column, opt_path, checkpoint in entries:
            root = args.out_dir / 'runs' / _safe(method) / _safe(column or opt_path.stem)
            opt = prepare_test_opt(opt_path, checkpoint, root, lpips)
            scores, grids = run_test(opt, args.grid_images)
            if column is not None and len(scores) != 1:
                raise ValueError(f'{opt_path} has {len(scores)} test sets; a manifest entry needs exactly one')
            for dataset, values in scores.items():
                results.setdefault(method, {})[column or dataset] = values
            for dataset, grid in grids.items():
                import cv2

                args.out_dir.mkdir(parents=True, exist_ok=True)
                cv2.imwrite(str(args.out_dir / f'grid_{_safe(method)}_{_safe(column or dataset)}.png'), grid[..., ::-1])
        args.out_dir.mkdir(parents=True, exist_ok=True)
        (args.out_dir / 'results.json').write_text(json.dumps(results, indent=2))
    table = results_table(results)
    print(table, end='')
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / 'results.md').write_text(table)
    return 0


if __name__ == '__main__':
    sys.exit(main())
