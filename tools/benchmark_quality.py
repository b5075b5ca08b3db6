"""Deblurring quality on held-out images: the blurry input, classical deconvolution given the true PSF, networks.

Pairs are synthesised by ``SyntheticDefocusDataset`` (validation mode, seeded) from the ``heldout`` images of
``tools/make_starter_data.py``, one block per PSF type (the starter models' training ranges) and noise level
(:data:`NOISE_LEVELS`). Rows:

* ``input``: the blurry, noisy image itself;
* ``richardson_lucy`` / ``wiener``: scikit-image's deconvolutions **given the true PSF** of each pair (oracles, a
  real user rarely has it), on the image reflect-padded by the PSF radius; the iteration count / balance is tuned
  per PSF type and noise level on the separate ``tune`` images (best mean PSNR over :data:`RL_ITERATIONS` /
  :data:`WIENER_BALANCES`);
* ``starter``: the shipped starter model of the image type (``mpt_deploy.starter_models``), through the same
  per-image normalisation as ``mpt-deblur``;
* ``--checkpoint NAME OPT WEIGHTS``: any other network (applied to the kind whose channel count it takes).

PSNR/SSIM are BasicSR's (on [0, 1] images scaled to 255, outputs clipped to [0, 1]); LPIPS (AlexNet) is added when
its backbone weights are on disk. ``--markdown PAGE`` writes the tables into the page's
``<!-- quality:begin -->``/``<!-- quality:end -->`` block; ``--figure PNG`` saves before/after crops.

Example: ``python -m tools.benchmark_quality --markdown docs/guides/starter_models.md --figure
docs/figures/quality_before_after.png``
"""

from __future__ import annotations

import argparse
import os
import os.path as osp
import platform
import sys
import time
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np

from mpt_metrics.deconvolution import richardson_lucy, tune, wiener
from mpt_metrics.image_quality import lpips_available, psnr, scores
from mpt_metrics.table_output import write_markdown

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))

NOISE_LEVELS = {'none': {'photons': None, 'read_noise': [0.0, 0.0], 'clean_fraction': 1.0},
                'low': {'photons': [1000.0, 1000.0], 'read_noise': [0.002, 0.002], 'clean_fraction': 0.0},
                'high': {'photons': [150.0, 150.0], 'read_noise': [0.01, 0.01], 'clean_fraction': 0.0}}
MARKS = ('<!-- quality:begin -->', '<!-- quality:end -->')


# --- pairs ------------------------------------------------------------------------------------------------------
def make_pairs(folder: str, kind: str, psf_type: str, psf_range: dict, noise: str, pairs_per_image: int,
               crop: int, seed: int) -> list:
    """Seeded synthetic pairs (float [0, 1], ``normalize: dtype``) of one PSF type and noise level."""
    from mpt_data.synthetic_defocus_dataset import SyntheticDefocusDataset

    ds = SyntheticDefocusDataset({'name': f'{kind}_{psf_type}_{noise}', 'phase': 'val', 'dataroot_gt': folder,
                                  'in_chans': 1 if kind == 'gray' else 3, 'psf': {psf_type: psf_range},
                                  'noise': NOISE_LEVELS[noise], 'pairs_per_image': pairs_per_image,
                                  'val_seed': seed, 'val_crop': crop, 'check_files': False})
    return [ds.pair(i) for i in range(len(ds))]


# --- methods ----------------------------------------------------------------------------------------------------
def network_method(net, network_opt: dict, norm) -> Callable:
    """A network applied as ``mpt-deblur`` applies it (per-image normalisation, whole image)."""
    from mpt_deploy.inference import deblur_plane
    from mpt_deploy.model_loading import network_in_chans

    in_chans = network_in_chans(network_opt)
    return lambda pair: deblur_plane(net, pair.lq, pair.name, norm, in_chans, 'auto', tile=0)


# --- report -----------------------------------------------------------------------------------------------------
def run(kinds: Sequence[str], data: str, checkpoints: Sequence[Sequence[str]], pairs_per_image: int, crop: int,
        tune_pairs: int) -> dict:
    """All scores: ``{kind: {'conditions': [...], 'rows': {method: {condition: [score dicts]}}, 'tuned': ...}}``."""
    from mpt_common.option_file import load_options
    from mpt_deploy.model_loading import inference_normalization, load_network, network_in_chans, network_options
    from mpt_deploy.starter_models import CHANNELS, StarterNetworks

    with_lpips = lpips_available()
    starters = StarterNetworks()
    results = {}
    for kind in kinds:
        net, net_opt, norm, model = starters.get(kind)
        psf_ranges = load_options(model.options)['datasets']['train']['psf']
        methods = {'starter': network_method(net, net_opt, norm)}
        for name, opt_file, weights in checkpoints:
            other_opt = network_options(opt_file)
            if network_in_chans(other_opt) in (None, CHANNELS[kind]):
                methods[name] = network_method(load_network(other_opt, weights), other_opt,
                                               inference_normalization(opt_file))
        rows: Dict[str, Dict[str, list]] = {}
        tuned, examples = {}, {}
        conditions = []
        for i, psf_type in enumerate(psf_ranges):
            for j, noise in enumerate(NOISE_LEVELS):
                cond = f'{psf_type}/{noise}'
                conditions.append(cond)
                seed = 100 * i + j
                spec = {k: v for k, v in psf_ranges[psf_type].items() if k != 'weight'}
                tuned[cond] = tune(make_pairs(osp.join(data, kind, 'tune'), kind, psf_type, spec, noise,
                                              tune_pairs, crop, 1000 + seed))
                pairs = make_pairs(osp.join(data, kind, 'heldout'), kind, psf_type, spec, noise, pairs_per_image,
                                   crop, seed)
                outs = {'input': [p.lq for p in pairs],
                        'richardson_lucy': [richardson_lucy(p.lq, p.psf, tuned[cond]['rl_iterations'])
                                            for p in pairs],
                        'wiener': [wiener(p.lq, p.psf, tuned[cond]['wiener_balance']) for p in pairs]}
                for name, fn in methods.items():
                    outs[name] = [fn(p) for p in pairs]
                for name, images in outs.items():
                    rows.setdefault(name, {})[cond] = [scores(o, p.gt, with_lpips) for o, p in zip(images, pairs)]
                examples[cond] = (pairs[0], {name: images[0] for name, images in outs.items()})
                print(f'[{kind}] {cond}: ' + ', '.join(
                    f'{name} {np.mean([s["psnr"] for s in rows[name][cond]]):.2f}' for name in outs), flush=True)
        results[kind] = {'conditions': conditions, 'rows': rows, 'tuned': tuned, 'examples': examples,
                         'n_pairs': len(pairs)}
    return results


def tables(results: dict) -> List[str]:
    """One Markdown table per kind: mean PSNR per condition, then means over all pairs."""
    out = []
    for kind, res in results.items():
        conds = res['conditions']
        has_lpips = 'lpips' in next(iter(res['rows']['input'].values()))[0]
        head = ['method', *conds, 'mean PSNR', 'mean SSIM'] + (['mean LPIPS'] if has_lpips else [])
        lines = [f'**{kind}** (PSNR in dB per PSF type / noise level; {res["n_pairs"]} held-out pairs each)', '',
                 '| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
        for name, per in res['rows'].items():
            flat = [s for cond in conds for s in per[cond]]
            cells = [f'{np.mean([s["psnr"] for s in per[c]]):.2f}' for c in conds]
            cells += [f'{np.mean([s["psnr"] for s in flat]):.2f}', f'{np.mean([s["ssim"] for s in flat]):.4f}']
            if has_lpips:
                cells.append(f'{np.mean([s["lpips"] for s in flat]):.4f}')
            lines.append(f'| {name} | ' + ' | '.join(cells) + ' |')
        tuned = '; '.join(f'{c}: {t["rl_iterations"]} it, {t["wiener_balance"]:g}' for c, t in res['tuned'].items())
        lines += ['', f'Oracle settings tuned on the `tune` images (RL iterations, Wiener balance): {tuned}.']
        out.append('\n'.join(lines))
    return out


def figure(results: dict, path: str, crop: int = 96) -> None:
    """Before/after crops: per kind, two conditions, columns input / RL / Wiener / starter / sharp."""
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    rows = []
    for kind, res in results.items():
        for cond in (res['conditions'][len(NOISE_LEVELS) * 2 + 1], res['conditions'][2]):  # widefield/low, disk/high
            rows.append((kind, cond, *res['examples'][cond]))
    cols = ['input', 'richardson_lucy', 'wiener', 'starter']
    fig, axes = plt.subplots(len(rows), len(cols) + 1, figsize=(2.2 * (len(cols) + 1), 2.3 * len(rows)))
    for r, (kind, cond, pair, outs) in enumerate(rows):
        h, w = pair.gt.shape[:2]
        top, left = max(0, (h - crop) // 2), max(0, (w - crop) // 2)
        sl = (slice(top, top + crop), slice(left, left + crop))
        for c, name in enumerate(cols + ['sharp']):
            img = pair.gt if name == 'sharp' else outs[name]
            view = np.clip(img[sl], 0, 1)
            ax = axes[r, c]
            ax.imshow(view[:, :, 0] if view.shape[2] == 1 else view, cmap='gray', vmin=0, vmax=1)
            ax.set_title(name if name == 'sharp' else f'{name}\n{psnr(img, pair.gt):.2f} dB', fontsize=7)
            ax.set_xticks([])
            ax.set_yticks([])
        axes[r, 0].set_ylabel(f'{kind}\n{cond}', fontsize=7)
    fig.tight_layout()
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=110)
    print(f'figure written to {path}', file=sys.stderr)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--data', default=osp.join(ROOT, 'starter_data'), help='tools/make_starter_data.py output')
    parser.add_argument('--kinds', nargs='+', default=['gray', 'rgb'], choices=['gray', 'rgb'])
    parser.add_argument('--checkpoint', nargs=3, action='append', default=[], metavar=('NAME', 'OPT', 'WEIGHTS'),
                        help='another network to score (option file and weights)')
    parser.add_argument('--pairs-per-image', type=int, default=2)
    parser.add_argument('--tune-pairs', type=int, default=4, help='pairs per tuning image and condition')
    parser.add_argument('--crop', type=int, default=256, help='centre crop of each image (pixels)')
    parser.add_argument('--markdown', help='docs page whose quality block receives the tables')
    parser.add_argument('--figure', help='PNG of before/after crops')
    args = parser.parse_args(argv)
    if not all(osp.isdir(osp.join(args.data, k, 'heldout')) for k in args.kinds):
        from tools.make_starter_data import build

        build(args.data, args.kinds)
    import torch

    torch.set_grad_enabled(False)
    start = time.time()
    results = run(args.kinds, args.data, args.checkpoint, args.pairs_per_image, args.crop, args.tune_pairs)
    report = tables(results)
    print('\n\n'.join(report))
    print(f'({time.time() - start:.0f} s)', file=sys.stderr)
    if args.markdown:
        env = {'cpu': platform.processor() or platform.machine(), 'torch': torch.__version__}
        notes = ['Oracles get the true PSF of every pair; the networks get only the blurry image.',
                 'Noise levels: none; low = 1000 photons at white + read noise 0.002; high = 150 photons + 0.01.']
        write_markdown(args.markdown, report, notes, env, argv, '-m tools.benchmark_quality', MARKS)
    if args.figure:
        figure(results, args.figure)
    return 0


if __name__ == '__main__':
    sys.exit(main())
