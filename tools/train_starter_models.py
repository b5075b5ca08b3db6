"""Recipe of the shipped starter models: data, training through BasicSR, packaging (``docs/guides/starter_models.md``).

One command, from the repository root::

    python -m tools.train_starter_models

1. collects the registry-shipped sharp images (``tools/make_starter_data.py``) into ``--data`` if missing;
2. trains ``options/train_MPT_starter_gray.yml`` and ``..._rgb.yml`` with BasicSR's ``train_pipeline``
   (``scripts/train.py``), both at once with one thread each (``--sequential``: one after the other, all cores);
3. packages each ``net_g_latest.pth`` into ``mpt_deploy/starter_models/``: ``MPT_starter_<kind>.pth`` (finite
   ``params`` only), the option file (``.yml``), a reference output of a fixed input with the weights' SHA-256
   (``.json``, checked by ``tests/deploy/test_starter_models.py``) and the model card (``.md``).

``--package-only`` repackages existing experiments (e.g. after training elsewhere); ``--auto-resume`` continues
interrupted trainings (training states every 500 iterations), e.g. across sessions.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import os.path as osp
import platform
import shutil
import subprocess
import sys
import time
from typing import Dict, Optional, Sequence

import numpy as np

from mpt_deploy.starter_models import CHANNELS, KINDS, STARTER_DIR, sha256
from tools.make_starter_data import SOURCES, SPLITS, build

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))

REFERENCE_SIZE = 16  # side of the fixed input whose output the JSON records


def option_file(kind: str) -> str:
    return osp.join(ROOT, 'options', f'train_MPT_starter_{kind}.yml')


def reference_input(channels: int) -> np.ndarray:
    """The fixed input of the output check: ``1 x C x 16 x 16`` uniform [0, 1) from ``default_rng(0)``."""
    return np.random.default_rng(0).random((1, channels, REFERENCE_SIZE, REFERENCE_SIZE), dtype=np.float32)


def reference_output(net, channels: int) -> np.ndarray:
    """The network's output on :func:`reference_input` (CPU, float32)."""
    import torch

    with torch.no_grad():
        return net(torch.from_numpy(reference_input(channels))).numpy()


def train(kinds: Sequence[str], sequential: bool, log_dir: str, auto_resume: bool = False) -> Dict[str, float]:
    """Run BasicSR training of each kind (in parallel unless ``sequential``; ``auto_resume``: continue from the
    latest training state of an interrupted run); returns wall seconds per kind."""
    os.makedirs(log_dir, exist_ok=True)
    threads = str(os.cpu_count() or 1) if sequential else '1'
    env = dict(os.environ, OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads)
    started, procs, walls = {}, {}, {}
    for kind in kinds:
        log = open(osp.join(log_dir, f'train_MPT_starter_{kind}.log'), 'a' if auto_resume else 'w')
        cmd = [sys.executable, osp.join(ROOT, 'scripts', 'train.py'), '-opt', option_file(kind)]
        cmd += ['--auto_resume'] if auto_resume else []
        print(f'[{kind}] {" ".join(cmd)} (OMP_NUM_THREADS={threads}) > {log.name}', flush=True)
        started[kind] = time.time()
        procs[kind] = (subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT), log)
        if sequential:
            _wait(kind, procs, started, walls)
    for kind in list(procs):
        _wait(kind, procs, started, walls)
    return walls


def _wait(kind: str, procs: dict, started: dict, walls: dict) -> None:
    if kind not in procs:
        return
    proc, log = procs.pop(kind)
    code = proc.wait()
    log.close()
    walls[kind] = time.time() - started[kind]
    if code != 0:
        raise SystemExit(f'[{kind}] training failed with exit code {code}; see {log.name}.')
    print(f'[{kind}] trained in {walls[kind] / 60:.1f} min', flush=True)


def package(kind: str, wall_s: Optional[float], out_dir: str = STARTER_DIR, checkpoint: Optional[str] = None,
            threads: str = 'one thread per model') -> str:
    """Write the four package files of ``kind`` from its experiment (or ``checkpoint``); returns the weights' path.
    ``threads`` says how the training ran, for the model card."""
    import torch

    from mpt_common.checkpoint import check_finite, load_checkpoint, select_params
    from mpt_common.option_file import load_options
    from mpt_deploy.model_loading import load_network, network_options

    opt = load_options(option_file(kind))
    ckpt = checkpoint or osp.join(ROOT, 'experiments', opt['name'], 'models', 'net_g_latest.pth')
    state = select_params(load_checkpoint(ckpt), ckpt, 'params')
    check_finite(state, ckpt)
    os.makedirs(out_dir, exist_ok=True)
    stem = osp.join(out_dir, f'MPT_starter_{kind}')
    torch.save({'params': {k: v.contiguous() for k, v in state.items()}}, stem + '.pth')
    shutil.copyfile(option_file(kind), stem + '.yml')
    net = load_network(network_options(stem + '.yml'), stem + '.pth', 'params')
    n_params = sum(p.numel() for p in net.parameters())
    record = {'weights_sha256': sha256(stem + '.pth'), 'parameters': n_params,
              'reference_input': f'numpy.random.default_rng(0).random((1, {CHANNELS[kind]}, {REFERENCE_SIZE}, '
                                 f'{REFERENCE_SIZE}), dtype=float32)',
              'reference_output': np.round(reference_output(net, CHANNELS[kind]), 6).tolist()}
    with open(stem + '.json', 'w') as fout:
        json.dump(record, fout)
        fout.write('\n')
    with open(stem + '.md', 'w') as fout:
        fout.write(model_card(kind, opt, n_params, record['weights_sha256'], wall_s, threads))
    size_mb = os.path.getsize(stem + '.pth') / 1e6
    if size_mb > 10:
        raise SystemExit(f'{stem}.pth is {size_mb:.1f} MB, over the 10 MB limit for package data.')
    print(f'[{kind}] packaged {stem}.pth ({size_mb:.2f} MB, {n_params} parameters)', flush=True)
    return stem + '.pth'


RGB_LIMITS = ('- Fails on smooth mid-tone photographs (a rocket against a sky gradient: 3-6 dB below the blurry '
              'input).\n  `mpt-deblur` therefore deblurs RGB images with the gray model, per colour channel, unless '
              '`--starter rgb`\n  is given (docs/guides/starter_models.md, "Which model deblurs RGB images").\n')


def model_card(kind: str, opt: dict, n_params: int, digest: str, wall_s: Optional[float], threads: str) -> str:
    """Markdown model card: data and licences, degradations, training, use and limits."""
    import torch

    train_ds = opt['datasets']['train']
    net = opt['network_g']
    rows = []
    for split in ('train', 'tune', 'heldout'):
        for name in SPLITS[kind][split]:
            src = SOURCES[name]
            rows.append(f'| {split} | `{src.file}` | {src.package} | {src.content} | {src.licence} |')
    psf = '; '.join(f'{k}: ' + ', '.join(f'{p} {v}' for p, v in params.items()) for k, params in
                    train_ds['psf'].items())
    own_limits = RGB_LIMITS if kind == 'rgb' else ''
    scenes = train_ds.get('procedural')
    procedural = (f"\nBeside them, {scenes['images']} procedural fluorescence-like scenes of {scenes['size']} px per "
                  'pass over the data, made on the fly by `mpt_data.scenes` (textured nuclei, filaments, puncta, '
                  'membranes at random scales, densities and brightness; a new scene at every visit; generated here, '
                  'no licence).\n' if scenes else '')
    trained = ', '.join(f'`{SOURCES[n].file}`' for n in SPLITS[kind]['train'])
    overlap = (f'**Test images that share content with the training of this model**: {trained}. They are natural first '
               'tests (scikit-image ships them), but the model has seen them: judge it on the held-out images or '
               'your own. The `tune` and `heldout` images share no content with the training images.')
    wall = f'{wall_s / 60:.0f} min' if wall_s else 'not recorded (packaged with --package-only)'
    return f"""# Starter model `MPT_starter_{kind}`

A small Multi-Pyramid Transformer (Zhang et al., CVPR 2024) that removes defocus blur from
{'one-channel (grayscale) images and stacks' if kind == 'gray' else 'RGB images'}, trained on CPU on synthetic
defocus. `mpt-deblur -i IN -o OUT` uses it when no network is given.

- Network: `{net['type']}`, dim {net['dim']}, blocks {net['num_blocks']}, heads {net['heads']}, window
  {net['window_size']}; {n_params} parameters. Option file: `MPT_starter_{kind}.yml`.
- Weights: `MPT_starter_{kind}.pth`, SHA-256 `{digest}`.
- Intensities: `normalize: {train_ds.get('normalize', 'dtype')}` (the input's own 0.1/99.9 percentiles, inverted on
  the output), so 8- and 16-bit files of any exposure are handled alike.

## Training data
Sharp images shipped inside registry packages (`tools/make_starter_data.py`); whole images are held out.

| split | file | package | content | licence |
|---|---|---|---|---|
{chr(10).join(rows)}
{procedural}
{overlap}

Degradations (`SyntheticDefocusDataset`, `docs/guides/synthetic_data.md`): PSF {psf}; Poisson-Gaussian noise with
photons {train_ds['noise']['photons']}, read noise {train_ds['noise']['read_noise']}, noise-free share
{train_ds['noise']['clean_fraction']}.

## Training
{opt['train']['total_iter']} iterations of batch {train_ds['batch_size_per_gpu']} x {train_ds['gt_size']}^2 crops,
AdamW lr {opt['train']['optim_g']['lr']} with cosine decay, L1 loss; wall time {wall} on
{platform.machine()} ({os.cpu_count()} CPU cores, {threads}), torch {torch.__version__}, packaged
{datetime.date.today().isoformat()}. Rebuild: `python -m tools.train_starter_models`.

## Evaluation
`python -m tools.benchmark_quality` (held-out images, per PSF type and noise level, against Richardson-Lucy and
Wiener given the true PSF); the table is in `docs/guides/starter_models.md`.

## Limits
- Synthetic, spatially uniform defocus of the listed PSF ranges; real optics (spherical aberration, depth-varying
  blur, chromatic differences) are outside what it has seen. Fine-tune on your own sharp images with
  `SyntheticDefocusDataset` or on real pairs.
- Small network, trained for minutes on CPU: a starting point, not the paper's model.
- Compare with the raw image before any quantitative use.
{own_limits}"""


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--kinds', nargs='+', default=list(KINDS), choices=KINDS)
    parser.add_argument('--data', default=osp.join(ROOT, 'starter_data'), help='where the sharp images go')
    parser.add_argument('--sequential', action='store_true', help='train one model after the other (all cores)')
    parser.add_argument('--package-only', action='store_true', help='skip training; package existing experiments')
    parser.add_argument('--auto-resume', action='store_true',
                        help='continue interrupted trainings from their latest training states (checkpoints every '
                             '500 iterations), e.g. in a later session')
    args = parser.parse_args(argv)
    if not args.package_only:
        if not all(osp.isdir(osp.join(args.data, k, 'train')) for k in args.kinds):
            build(args.data, args.kinds)
        if osp.abspath(args.data) != osp.join(ROOT, 'starter_data'):
            raise SystemExit('the option files read ./starter_data; keep --data at its default or edit them.')
    start = time.time()
    walls = {} if args.package_only else train(args.kinds, args.sequential, osp.join(ROOT, 'experiments'),
                                                 args.auto_resume)
    for kind in args.kinds:
        package(kind, walls.get(kind))
    if walls:
        print(f'recipe wall time: {(time.time() - start) / 60:.1f} min', flush=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
