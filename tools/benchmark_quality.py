"""Deblurring quality on held-out images: the blurry input, classical deconvolution given the true PSF, networks.

Pairs are synthesised by ``SyntheticDefocusDataset`` (validation mode, seeded) through the optics of real
objectives (:data:`OPTICS`: a low- and a high-NA class, ``widefield_physical`` PSFs with a defocus range) at two
noise levels (:data:`NOISE_LEVELS`), from two kinds of held-out content (:data:`CONTENTS`):

* ``photos``: the ``heldout`` images of ``tools/make_starter_data.py`` (whole images no starter model trained on);
* ``scenes``: procedural fluorescence-like scenes (``mpt_data.scenes``) drawn from a seed of their own; training
  draws its scenes from the run's random generator, so no test scene is a training scene (the same generator
  family, as a microscope's images share a family).

Rows:

* ``input``: the blurry, noisy image itself;
* ``richardson_lucy`` / ``wiener``: scikit-image's deconvolutions **given the true PSF** of each pair (oracles, a
  real user rarely has it), on the image reflect-padded by the PSF radius; the iteration count / balance is tuned
  per condition on the separate ``tune`` images (best mean PSNR over the grids of ``mpt_metrics.deconvolution``);
* ``starter``: the shipped starter model of the image type (``mpt_deploy.starter_models``), through the same
  per-image normalisation as ``mpt-deblur``;
* ``--baseline-commit REV`` (repeatable): the starter models as shipped at git revision ``REV`` (e.g. v1), read
  with ``git show`` into a temporary folder: several versions side by side in one run (a kind whose weights at
  ``REV`` are the shipped ones gets no column of its own);
* ``starter gray per channel`` (RGB only): the gray starter model on each colour channel alone, as ``mpt-deblur
  --starter gray`` applies it to RGB images;
* ``--checkpoint NAME OPT WEIGHTS``: any other network (applied to the kind whose channel count it takes; a
  one-channel network also to RGB images, per channel).

``--split tune`` scores the ``tune`` images and scenes of other seeds instead of the held-out ones: the figures to
choose between candidate models by, so that no held-out score picks a model.

PSNR/SSIM are BasicSR's (on [0, 1] images scaled to 255, outputs clipped to [0, 1]); LPIPS (AlexNet) is added when
its backbone weights are on disk. Each table ends with the worst image of every network (its PSNR minus the
input's). ``--markdown PAGE`` writes the tables into the page's ``<!-- quality:begin -->``/``<!-- quality:end -->``
block; ``--figure PNG`` saves before/after crops.

Example: ``python -m tools.benchmark_quality --baseline-commit 8944acc --baseline-commit 73430af --markdown
docs/guides/starter_models.md --figure docs/figures/quality_before_after.png``
"""

from __future__ import annotations

import argparse
import os
import os.path as osp
import platform
import subprocess
import sys
import tempfile
import time
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np

from mpt_metrics.deconvolution import richardson_lucy, tune, wiener
from mpt_metrics.image_quality import lpips_available, psnr, scores
from mpt_metrics.table_output import write_markdown

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))

# objective classes: (label, widefield_physical optics with a defocus range in um); 520 nm emission, 6.5 um camera
OPTICS = {'lowNA': ('20x/0.5 air, 0.325 um px', {'na': 0.5, 'immersion_index': 1.0, 'wavelength_um': 0.52,
                                                 'pixel_size_um': 0.325, 'defocus_um': [1.0, 4.0]}),
          'highNA': ('63x/1.4 oil, 0.103 um px', {'na': 1.4, 'immersion_index': 1.518, 'wavelength_um': 0.52,
                                                  'pixel_size_um': 0.103, 'defocus_um': [0.3, 1.5]})}
NOISE_LEVELS = {'low': {'photons': [3000.0, 3000.0], 'read_noise': [0.002, 0.002], 'clean_fraction': 0.0},
                'high': {'photons': [100.0, 100.0], 'read_noise': [0.005, 0.005], 'clean_fraction': 0.0}}
CONTENTS = ('photos', 'scenes')
SCENES = {'images': 6, 'size': 256}  # procedural held-out scenes per condition
MARKS = ('<!-- quality:begin -->', '<!-- quality:end -->')
GRAY_PER_CHANNEL = 'starter gray per channel'  # the gray starter on each colour channel (mpt-deblur's RGB default)


# --- pairs ------------------------------------------------------------------------------------------------------
def make_pairs(source: dict, kind: str, optics: dict, noise: str, pairs_per_image: int, crop: int, seed: int,
               name: str) -> list:
    """Seeded synthetic pairs (float [0, 1], ``normalize: dtype``) of ``source`` (``dataroot_gt`` or
    ``procedural``) through ``optics`` at one noise level."""
    from mpt_data.synthetic_defocus_dataset import SyntheticDefocusDataset

    ds = SyntheticDefocusDataset({'name': name, 'phase': 'val', **source, 'in_chans': 1 if kind == 'gray' else 3,
                                  'psf': {'widefield_physical': optics}, 'noise': NOISE_LEVELS[noise],
                                  'pairs_per_image': pairs_per_image, 'val_seed': seed, 'val_crop': crop,
                                  'check_files': False})
    return [ds.pair(i) for i in range(len(ds))]


def baseline_starters(rev: str, folder: str):
    """The starter models of git revision ``rev`` (their four files each), loaded from ``folder``."""
    from mpt_deploy.starter_models import KINDS, StarterNetworks

    for kind in KINDS:
        for ext in ('pth', 'yml', 'json', 'md'):
            rel = f'mpt_deploy/starter_models/MPT_starter_{kind}.{ext}'
            data = subprocess.run(['git', 'show', f'{rev}:{rel}'], cwd=ROOT, capture_output=True, check=True).stdout
            with open(osp.join(folder, osp.basename(rel)), 'wb') as fout:
                fout.write(data)
    return StarterNetworks(folder=folder)


def distinct_baselines(kind: str, folders: Dict[str, str]) -> List[str]:
    """The revisions (of ``{rev: folder}`` from :func:`baseline_starters`) whose ``kind`` weights differ from the
    shipped ones: a version equal to the shipped model would only repeat its column."""
    from mpt_deploy.starter_models import sha256, starter_model

    shipped = sha256(starter_model(kind).weights)
    revs = []
    for rev, folder in folders.items():
        if sha256(osp.join(folder, f'MPT_starter_{kind}.pth')) == shipped:
            print(f'{kind}: the starter model @{rev} is the shipped one; no column of its own', file=sys.stderr)
        else:
            revs.append(rev)
    return revs


# --- methods ----------------------------------------------------------------------------------------------------
def network_method(net, network_opt: dict, norm) -> Callable:
    """A network applied as ``mpt-deblur`` applies it (per-image normalisation, whole image)."""
    from mpt_deploy.inference import deblur_plane
    from mpt_deploy.model_loading import network_in_chans

    in_chans = network_in_chans(network_opt)
    return lambda pair: deblur_plane(net, pair.lq, pair.name, norm, in_chans, 'auto', tile=0)


# --- report -----------------------------------------------------------------------------------------------------
def run(kinds: Sequence[str], data: str, checkpoints: Sequence[Sequence[str]], pairs_per_image: int, crop: int,
        tune_pairs: int, baselines: Sequence[str] = (), split: str = 'heldout') -> dict:
    """All scores: ``{kind: {'conditions': [...], 'rows': {method: {condition: [score dicts]}}, 'tuned': ...}}``.

    ``split='tune'`` scores pairs of the ``tune`` images and scenes instead (seeds apart from those that tune the
    oracles): for choosing between candidate models without reading a held-out score."""
    from mpt_deploy.model_loading import inference_normalization, load_network, network_in_chans, network_options
    from mpt_deploy.starter_models import CHANNELS, DEBLUR_DEFAULT, StarterNetworks

    with_lpips = lpips_available()
    starters = StarterNetworks()
    old_dirs = {rev: tempfile.TemporaryDirectory(prefix='mpt-starter-baseline-') for rev in baselines}
    folders = {rev: folder.name for rev, folder in old_dirs.items()}
    olds = {rev: baseline_starters(rev, folder) for rev, folder in folders.items()}
    results = {}
    for kind in kinds:
        net, net_opt, norm, _ = starters.get(kind)
        methods = {}
        for rev in distinct_baselines(kind, folders):
            o_net, o_opt, o_norm, _ = olds[rev].get(kind)
            methods[f'starter @{rev}'] = network_method(o_net, o_opt, o_norm)
        methods['starter'] = network_method(net, net_opt, norm)
        if CHANNELS[kind] == 3:  # mpt-deblur --starter gray: each colour channel on its own
            methods[GRAY_PER_CHANNEL] = network_method(*starters.get('gray')[:3])
        for name, opt_file, weights in checkpoints:
            other_opt = network_options(opt_file)
            if network_in_chans(other_opt) in (None, 1, CHANNELS[kind]):  # one-channel networks: per channel
                methods[name] = network_method(load_network(other_opt, weights), other_opt,
                                               inference_normalization(opt_file))
        rows: Dict[str, Dict[str, list]] = {}
        names: Dict[str, List[str]] = {}
        tuned, examples, counts = {}, {}, {}
        conditions = []
        for c, content in enumerate(CONTENTS):
            for i, optics in enumerate(OPTICS):
                for j, noise in enumerate(NOISE_LEVELS):
                    cond = f'{content} {optics}/{noise}'
                    conditions.append(cond)
                    seed = 1000 * c + 100 * i + j
                    spec = OPTICS[optics][1]
                    tune_src = ({'dataroot_gt': osp.join(data, kind, 'tune')} if content == 'photos' else
                                {'procedural': {'images': 2, 'size': SCENES['size']}})
                    tuned[cond] = tune(make_pairs(tune_src, kind, spec, noise, tune_pairs, crop, 50000 + seed,
                                                  f'tune {cond}'))
                    src = ({'dataroot_gt': osp.join(data, kind, split)} if content == 'photos' else
                           {'procedural': dict(SCENES)})
                    pairs = make_pairs(src, kind, spec, noise, pairs_per_image if content == 'photos' else 1, crop,
                                       seed + (60000 if split == 'tune' else 0), cond)
                    outs = {'input': [p.lq for p in pairs],
                            'richardson_lucy': [richardson_lucy(p.lq, p.psf, tuned[cond]['rl_iterations'])
                                                for p in pairs],
                            'wiener': [wiener(p.lq, p.psf, tuned[cond]['wiener_balance']) for p in pairs]}
                    for name, fn in methods.items():
                        outs[name] = [fn(p) for p in pairs]
                    for name, images in outs.items():
                        rows.setdefault(name, {})[cond] = [scores(o, p.gt, with_lpips) for o, p in zip(images, pairs)]
                    names[cond] = [p.name for p in pairs]
                    counts[cond] = len(pairs)
                    examples[cond] = (pairs[0], {name: images[0] for name, images in outs.items()})
                    print(f'[{kind}] {cond}: ' + ', '.join(
                        f'{name} {np.mean([s["psnr"] for s in rows[name][cond]]):.2f}' for name in outs), flush=True)
        default = 'starter' if DEBLUR_DEFAULT[kind] == kind else GRAY_PER_CHANNEL
        results[kind] = {'conditions': conditions, 'rows': rows, 'tuned': tuned, 'examples': examples,
                         'counts': counts, 'names': names, 'networks': list(methods), 'default': default}
    for folder in old_dirs.values():
        folder.cleanup()
    return results


def worst_images(res: dict) -> List[str]:
    """Per network: the held-out image with the lowest PSNR gain over the input, and the mean gain per group."""
    lines = []
    for name in res['networks']:
        gains = [(res['rows'][name][c][k]['psnr'] - res['rows']['input'][c][k]['psnr'], c, res['names'][c][k])
                 for c in res['conditions'] for k in range(res['counts'][c])]
        gain, cond, image = min(gains)
        lines.append(f'- `{name}`: worst image {image} ({cond}): {gain:+.2f} dB over the input; images worse than '
                     f'the input: {sum(g < 0 for g, _, _ in gains)} of {len(gains)}.')
    return lines


def tables(results: dict) -> List[str]:
    """One Markdown table per kind: a row per condition (content, objective class / noise), mean PSNR per method,
    the gain over the input of what ``mpt-deblur`` applies by default; then the means over all pairs and the worst
    images."""
    out = []
    for kind, res in results.items():
        conds = res['conditions']
        methods = list(res['rows'])
        has_lpips = 'lpips' in next(iter(res['rows']['input'].values()))[0]
        default = res.get('default', 'starter')  # what mpt-deblur applies to this kind of image
        head = ['condition', 'pairs', *methods, f'{default} - input']
        lines = [f'**{kind}** (mean PSNR in dB of the held-out pairs of each condition)', '',
                 '| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]

        def mean(name: str, cond_list: Sequence[str], key: str = 'psnr', res: dict = res) -> float:
            return float(np.mean([s[key] for c in cond_list for s in res['rows'][name][c]]))

        for c in conds:
            cells = [f'{mean(m, [c]):.2f}' for m in methods]
            lines.append(f'| {c} | {res["counts"][c]} | ' + ' | '.join(cells) +
                         f' | {mean(default, [c]) - mean("input", [c]):+.2f} |')
        lines.append('| **all (PSNR)** | ' + f'{sum(res["counts"].values())} | ' +
                     ' | '.join(f'{mean(m, conds):.2f}' for m in methods) +
                     f' | {mean(default, conds) - mean("input", conds):+.2f} |')
        lines.append('| all (SSIM) | | ' + ' | '.join(f'{mean(m, conds, "ssim"):.4f}' for m in methods) + ' | |')
        if has_lpips:
            lines.append('| all (LPIPS) | | ' + ' | '.join(f'{mean(m, conds, "lpips"):.4f}' for m in methods) +
                         ' | |')
        tuned = '; '.join(f'{c}: {t["rl_iterations"]} it, {t["wiener_balance"]:g}' for c, t in res['tuned'].items())
        lines += ['', *worst_images(res), '',
                  f'Oracle settings tuned on the `tune` images (RL iterations, Wiener balance): {tuned}.']
        out.append('\n'.join(lines))
    return out


def figure(results: dict, path: str, crop: int = 96) -> None:
    """Before/after crops: per kind, two conditions, columns input / RL / Wiener / starter / sharp."""
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    rows = []
    for kind, res in results.items():
        for cond in ('scenes highNA/low', 'photos lowNA/high'):
            rows.append((kind, cond, *res['examples'][cond]))
    networks = [m for res in results.values() for m in res['networks']]
    cols = ['input', 'richardson_lucy', 'wiener'] + sorted(set(networks), key=networks.index)
    fig, axes = plt.subplots(len(rows), len(cols) + 1, figsize=(2.2 * (len(cols) + 1), 2.3 * len(rows)))
    for r, (kind, cond, pair, outs) in enumerate(rows):
        h, w = pair.gt.shape[:2]
        top, left = max(0, (h - crop) // 2), max(0, (w - crop) // 2)
        sl = (slice(top, top + crop), slice(left, left + crop))
        for c, name in enumerate(cols + ['sharp']):
            ax = axes[r, c]
            if name != 'sharp' and name not in outs:  # a baseline equal to this kind's shipped model
                ax.axis('off')
                continue
            img = pair.gt if name == 'sharp' else outs[name]
            view = np.clip(img[sl], 0, 1)
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
    parser.add_argument('--baseline-commit', metavar='REV', action='append', default=[],
                        help='also score the starter models of git revision REV (repeatable)')
    parser.add_argument('--pairs-per-image', type=int, default=2)
    parser.add_argument('--tune-pairs', type=int, default=4, help='pairs per tuning image and condition')
    parser.add_argument('--crop', type=int, default=256, help='centre crop of each image (pixels)')
    parser.add_argument('--split', choices=['heldout', 'tune'], default='heldout',
                        help='score the held-out images (default) or the tune images (choosing between candidates)')
    parser.add_argument('--markdown', help='docs page whose quality block receives the tables')
    parser.add_argument('--figure', help='PNG of before/after crops')
    args = parser.parse_args(argv)
    if args.markdown and args.split != 'heldout':
        parser.error('--markdown publishes held-out scores only; drop --split tune')
    if not all(osp.isdir(osp.join(args.data, k, 'heldout')) for k in args.kinds):
        from tools.make_starter_data import build

        build(args.data, args.kinds)
    import torch

    torch.set_grad_enabled(False)
    start = time.time()
    results = run(args.kinds, args.data, args.checkpoint, args.pairs_per_image, args.crop, args.tune_pairs,
                  args.baseline_commit, args.split)
    report = tables(results)
    print('\n\n'.join(report))
    print(f'({time.time() - start:.0f} s)', file=sys.stderr)
    if args.markdown:
        env = {'cpu': platform.processor() or platform.machine(), 'torch': torch.__version__}
        optics = '; '.join(f'{k} = {label}, defocus {o["defocus_um"][0]:g}-{o["defocus_um"][1]:g} um'
                           for k, (label, o) in OPTICS.items())
        notes = ['Oracles get the true PSF of every pair; the networks get only the blurry image.',
                 f'Objective classes (exact widefield PSF, 520 nm emission): {optics}.',
                 'Noise: low = 3000 photons at white + read noise 0.002; high = 100 photons + read noise 0.005.',
                 'photos = the held-out images of tools/make_starter_data.py (two pairs each); scenes = six procedural '
                 'fluorescence-like scenes per condition, from a seed no training run uses.']
        write_markdown(args.markdown, report, notes, env, argv, '-m tools.benchmark_quality', MARKS)
    if args.figure:
        figure(results, args.figure)
    return 0


if __name__ == '__main__':
    sys.exit(main())
