"""Normalised average attention distance of an MPT model per data set (paper Fig. 1).

Runs the network over (centre crops of) the images of each data set with the CSWA attention hooks on and
reports the attention-weighted query-key pixel distance, each layer normalised by its map diagonal, averaged
over layers, heads, queries and images (see mpt_metrics/attention_distance.py). Writes a bar chart (PNG) and the
numbers (JSON). The paper measured a trained model; ``--random-init`` only tests the plumbing.

Example:
    python scripts/attention_distance.py -opt options/train_mpt_bbbc006_w1.yml --ckpt net_g_latest.pth \\
        --dataset BBBC006=data/BBBC006/test/z02_w1 --dataset DPDD=data/DPDD/test_c/source --out-dir results/fig1
"""

import argparse
import json
import sys
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

import mpt_common.basicsr_compat  # noqa: F401  (before any basicsr import)
from mpt_metrics.attention_distance import model_attention_distance
from mpt_metrics.table_output import name_path_argument

IMAGE_SUFFIXES = ('.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff')


def build_model(opt_path: Optional[Path], checkpoint: Optional[Path], random_init: bool, param_key: Optional[str],
                in_chans: int):
    """The network of ``network_g`` in a BasicSR option file (or a paper-config MPT), with checkpoint weights."""
    from basicsr.archs import build_network

    import mpt_arch  # noqa: F401  (registers MPT)
    from mpt_common.option_file import load_options

    if opt_path is not None:
        opt = load_options(str(opt_path))
        if not isinstance(opt, dict) or 'network_g' not in opt:
            raise ValueError(f'{opt_path} has no network_g section')
        net_opt = dict(opt['network_g'])
    else:
        net_opt = {'type': 'MPT', 'in_chans': in_chans}
    net = build_network(net_opt)
    if checkpoint is not None:
        from mpt_common.checkpoint import load_checkpoint

        state = load_checkpoint(str(checkpoint))
        keys = [param_key] if param_key else ['params_ema', 'params']
        if isinstance(state, dict) and any(k in state for k in keys):
            state = state[next(k for k in keys if k in state)]
        elif param_key:
            raise KeyError(f'{checkpoint} has no {param_key!r} entry (has {sorted(state)[:5]})')
        state = {k[7:] if k.startswith('module.') else k: v for k, v in state.items()}
        net.load_state_dict(state, strict=True)
    elif not random_init:
        raise ValueError('give --ckpt (a trained model, as in the paper) or --random-init (plumbing only)')
    return net


def list_images(folder: Path) -> List[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f'data set folder {folder} does not exist')
    paths = sorted(p for p in folder.rglob('*') if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not paths:
        raise FileNotFoundError(f'no images ({", ".join(IMAGE_SUFFIXES)}) in {folder}')
    return paths


def load_image(path: Path, in_chans: int, crop: Optional[int]):
    """``(1, in_chans, H, W)`` float tensor in [0, 1]; any bit depth; centre-cropped to ``crop`` when larger."""
    import cv2
    from basicsr.utils import img2tensor

    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise OSError(f'could not read image {path}')
    scale = float(np.iinfo(image.dtype).max) if np.issubdtype(image.dtype, np.integer) else 1.0
    image = image.astype(np.float32) / scale
    if image.ndim == 2:
        image = image[..., None]
    image = image[..., :3]
    if image.shape[2] != in_chans:
        if in_chans == 1:
            image = image.mean(axis=2, keepdims=True)
        elif in_chans == 3 and image.shape[2] == 1:
            image = np.repeat(image, 3, axis=2)
        else:
            raise ValueError(f'{path} has {image.shape[2]} channels, the model takes {in_chans}')
    if crop is not None:
        h, w = image.shape[:2]
        top, left = max(0, (h - crop) // 2), max(0, (w - crop) // 2)
        image = image[top:top + crop, left:left + crop]
    tensor = img2tensor(image, bgr2rgb=image.shape[2] == 3, float32=True)
    return tensor.unsqueeze(0)


def measure(net, datasets: Sequence[Tuple[str, Path]], max_images: Optional[int], crop: Optional[int],
            device: str) -> Dict[str, Dict[str, object]]:
    in_chans = getattr(net, 'in_chans', 3)
    net = net.to(device)
    results = {}
    for name, folder in datasets:
        paths = list_images(folder)[:max_images]

        def images(paths=paths) -> Iterator:
            for path in paths:
                yield load_image(path, in_chans, crop).to(device)

        results[name] = model_attention_distance(net, images())
        print(f'{name}: {results[name]["mean"]:.4f} over {results[name]["images"]} images', file=sys.stderr)
    return results


def plot(results: Dict[str, Dict[str, object]], path: Path, title: str) -> None:
    """Bar chart of the normalised average attention distance per data set (Fig. 1 layout)."""
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    names = list(results)
    values = [results[n]['mean'] for n in names]
    fig, ax = plt.subplots(figsize=(max(4.0, 1.1 * len(names) + 1.5), 3.5))
    bars = ax.bar(names, values, color='tab:red')
    ax.bar_label(bars, fmt='%.3f')
    ax.set_ylabel('normalised avg. attention distance')
    ax.set_ylim(0, max(values) * 1.25 if max(values) > 0 else 1)
    ax.set_title(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--dataset', type=name_path_argument('--dataset', 'FOLDER'), action='append', required=True,
                        help='NAME=FOLDER of images (repeatable; one bar each)')
    parser.add_argument('-opt', type=Path, help='BasicSR option YAML whose network_g builds the model '
                        '(default: the paper-config MPT)')
    parser.add_argument('--ckpt', type=Path, help='BasicSR checkpoint (net_g_*.pth); loaded with weights_only=True')
    parser.add_argument('--param-key', help='checkpoint entry (default: params_ema, else params)')
    parser.add_argument('--random-init', action='store_true', help='untrained weights: tests the plumbing only')
    parser.add_argument('--in-chans', type=int, default=3, help='input channels when no -opt is given')
    parser.add_argument('--max-images', type=int, default=16, help='images per data set')
    parser.add_argument('--crop', type=int, default=256, help='centre crop (pixels; 0 = whole image)')
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--seed', type=int, default=0, help='seed for --random-init weights')
    parser.add_argument('--out-dir', type=Path, default=Path('results/attention_distance'))
    args = parser.parse_args(argv)

    import torch

    torch.manual_seed(args.seed)
    net = build_model(args.opt, args.ckpt, args.random_init, args.param_key, args.in_chans)
    results = measure(net, args.dataset, args.max_images, args.crop or None, args.device)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    summary = {
        'measure': 'normalised average attention distance (per-layer distance / map diagonal, mean over layers)',
        'checkpoint': None if args.ckpt is None else str(args.ckpt),
        'random_init': args.ckpt is None,
        'crop': args.crop or None,
        'datasets': results,
    }
    (args.out_dir / 'attention_distance.json').write_text(json.dumps(summary, indent=2))
    title = 'random-init model (plumbing only)' if args.ckpt is None else args.ckpt.name
    plot(results, args.out_dir / 'attention_distance.png', title)
    for name, result in results.items():
        print(f'{name}\t{result["mean"]:.4f}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
