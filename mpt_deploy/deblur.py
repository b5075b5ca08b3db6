"""``mpt-deblur``: deblur image files with a trained network (tiled, any size, same format and bit depth out).

Examples::

    mpt-deblur -opt options/train_mpt_bbbc006.yml -w experiments/x/models/net_g_latest.pth -i blurry/ -o sharp/
    mpt-deblur --arch MPT --net-opt in_chans=1 dim=40 -w net_g_latest.pth -i cell.tif -o out/ --device cuda

* input: one image or a folder of images (PNG, JPEG, TIFF; 8 or 16 bit; grayscale or RGB, RGBA keeps alpha);
  outputs get the same file name, format, dtype and channel count, in the ``--output`` folder.
* intensities are read and scaled exactly as the training datasets do (:mod:`mpt_data.image_io`: divide by the
  dtype maximum), and the output is mapped back by the inverse (``round(clip(y, 0, 1) * max)``).
* a one-channel network applied to an RGB image deblurs each channel separately (the paper trains per channel).
* the network comes from ``network_g`` of a BasicSR option file (``-opt``) or from ``--arch`` + ``--net-opt``;
  the checkpoint may be a BasicSR one (``params`` / ``params_ema``) or a bare state dict, loaded with
  ``weights_only=True``; a mismatch lists the first missing / unexpected keys and shape differences.
* images larger than ``--tile`` are processed in overlapping, blended tiles (:mod:`mpt_deploy.tiling`).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

import mpt_plugin.compat  # noqa: F401  (before any basicsr import)

JPEG_EXTENSIONS = ('.jpg', '.jpeg')


class CheckpointMismatchError(ValueError):
    """The checkpoint's parameters do not fit the network built from the options."""


# --- network and checkpoint -----------------------------------------------------------------------------------
def network_options(opt_file: Optional[str] = None, arch: Optional[str] = None,
                    net_opt: Sequence[str] = ()) -> Dict[str, Any]:
    """``network_g`` options from a BasicSR YAML file, or ``{'type': arch, **key=value pairs}``."""
    import yaml

    if opt_file:
        with open(opt_file, encoding='utf-8') as handle:
            opt = yaml.safe_load(handle)
        if not isinstance(opt, dict) or not isinstance(opt.get('network_g'), dict):
            raise ValueError(f'Option file {opt_file!r} has no network_g section.')
        network = dict(opt['network_g'])
    elif arch:
        network = {'type': arch}
    else:
        raise ValueError('Give the network: -opt <BasicSR option file with network_g> or --arch NAME.')
    for item in net_opt:
        if '=' not in item:
            raise ValueError(f'--net-opt expects key=value, got {item!r}.')
        key, value = item.split('=', 1)
        network[key.strip()] = yaml.safe_load(value)
    return network


def build_network(network_opt: Dict[str, Any]):
    """Build ``network_opt`` through BasicSR's ARCH_REGISTRY (plugin architectures registered first)."""
    from basicsr.archs import build_network as basicsr_build

    from mpt_plugin.autoload import import_plugins

    import_plugins(('mpt_arch',))
    return basicsr_build(dict(network_opt))


def load_state_dict(path: str, param_key: Optional[str] = 'auto') -> Dict[str, Any]:
    """Parameters from a BasicSR checkpoint (``params_ema``/``params``; ``param_key=None``: a bare state dict)."""
    import torch

    if not os.path.isfile(path):
        raise FileNotFoundError(f'Checkpoint {path!r} does not exist.')
    ckpt = torch.load(path, map_location='cpu', weights_only=True)
    if not isinstance(ckpt, dict):
        raise ValueError(f'Checkpoint {path!r} holds a {type(ckpt).__name__}, not a state dict.')
    if param_key == 'auto':
        param_key = next((k for k in ('params_ema', 'params') if isinstance(ckpt.get(k), dict)), None)
    elif param_key and param_key not in ckpt:
        raise KeyError(f'Checkpoint {path!r} has no {param_key!r} entry (keys: {sorted(ckpt)[:10]}).')
    state = ckpt[param_key] if param_key else ckpt
    if not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f'Checkpoint {path!r} is neither a BasicSR checkpoint (params/params_ema) nor a state dict.')
    return {(k[7:] if k.startswith('module.') else k): v for k, v in state.items()}


def check_compatible(net, state: Dict[str, Any], path: str, show: int = 5) -> None:
    """Raise :class:`CheckpointMismatchError` listing the first missing/unexpected keys and shape mismatches."""
    own = net.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [f'{k}: checkpoint {tuple(state[k].shape)} vs network {tuple(own[k].shape)}'
              for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or shapes:
        parts = [f'Checkpoint {path!r} does not match the network {type(net).__name__}:']
        for title, items in (('missing keys', missing), ('unexpected keys', unexpected), ('shape mismatches', shapes)):
            if items:
                more = f' ... (+{len(items) - show} more)' if len(items) > show else ''
                parts.append(f'  {len(items)} {title}: ' + ', '.join(items[:show]) + more)
        parts.append('  Check network_g / --net-opt against the options the checkpoint was trained with.')
        raise CheckpointMismatchError('\n'.join(parts))


def load_network(network_opt: Dict[str, Any], checkpoint: str, param_key: Optional[str] = 'auto',
                 device: str = 'cpu'):
    """Build the network, check and load the checkpoint, move to ``device``, eval mode."""
    net = build_network(network_opt)
    state = load_state_dict(checkpoint, param_key)
    check_compatible(net, state, checkpoint)
    net.load_state_dict(state, strict=True)
    return net.to(device).eval()


def network_in_chans(network_opt: Dict[str, Any]) -> Optional[int]:
    """Input channels named in the options (MPT: ``in_chans``; BasicSR nets: ``num_in_ch``), else None."""
    for key in ('in_chans', 'num_in_ch', 'in_nc', 'in_channels'):
        if key in network_opt:
            return int(network_opt[key])
    return None


# --- images ---------------------------------------------------------------------------------------------------
def read_image(path: str) -> np.ndarray:
    """``H x W x C`` image in RGB order with its stored dtype, decoded as the training datasets do."""
    from mpt_data.image_io import decode_image

    with open(path, 'rb') as handle:
        return decode_image(handle.read(), path)


def write_image(path: str, img: np.ndarray, like: str) -> None:
    """Write ``img`` (``H x W x C`` RGB, integer dtype) in the format of ``like`` (its extension)."""
    import cv2

    ext = os.path.splitext(like)[1].lower()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    if ext in ('.tif', '.tiff'):
        import tifffile

        data = img[:, :, 0] if img.shape[2] == 1 else img
        tifffile.imwrite(path, data, photometric='minisblack' if img.shape[2] == 1 else 'rgb')
        return
    if ext in JPEG_EXTENSIONS and img.dtype != np.uint8:
        raise ValueError(f'Cannot write {img.dtype} data as JPEG {path!r} (JPEG is 8 bit).')
    if img.shape[2] == 3:
        img = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
    elif img.shape[2] == 4:
        img = cv2.cvtColor(img, cv2.COLOR_RGBA2BGRA)
    params = [cv2.IMWRITE_JPEG_QUALITY, 95] if ext in JPEG_EXTENSIONS else []
    if not cv2.imwrite(path, img, params):
        raise OSError(f'Could not write {path!r}.')


def from_unit(img: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Inverse of :func:`mpt_data.image_io.to_float`: ``round(clip(img, 0, 1) * dtype max)`` as ``dtype``."""
    top = float(np.iinfo(dtype).max)
    return np.round(np.clip(img, 0.0, 1.0) * top).astype(dtype)


def deblur_array(net, img: np.ndarray, path: str, in_chans: Optional[int] = None, tile: int = 512,
                 overlap: int = 32, context: int = 32, device: str = 'cpu', progress=None) -> np.ndarray:
    """Deblur an integer ``H x W x C`` image; returns the same shape and dtype (alpha passed through)."""
    import torch

    from mpt_data.image_io import to_float
    from mpt_deploy.tiling import tiled_forward

    channels = img.shape[2]
    colour, alpha = (img[:, :, :3], img[:, :, 3:]) if channels == 4 else (img, None)
    unit = to_float(colour, path)
    in_chans = in_chans or unit.shape[2]
    if unit.shape[2] == in_chans:
        groups = [unit]
    elif in_chans == 1:
        groups = [unit[:, :, c:c + 1] for c in range(unit.shape[2])]  # per channel (paper: one net per channel)
    else:
        raise ValueError(f'Image {path!r} has {unit.shape[2]} colour channel(s) but the network expects {in_chans}.')
    outs = []
    for group in groups:
        tensor = torch.from_numpy(np.ascontiguousarray(group.transpose(2, 0, 1)))[None]
        result = tiled_forward(net, tensor, tile=tile, overlap=overlap, context=context, device=torch.device(device),
                               progress=progress)
        outs.append(result[0].numpy().transpose(1, 2, 0))
    out = from_unit(np.concatenate(outs, axis=2), img.dtype)
    if out.shape[2] != colour.shape[2]:
        raise ValueError(f'The network returned {out.shape[2]} channel(s) for the {colour.shape[2]} of {path!r}.')
    return np.concatenate([out, alpha], axis=2) if alpha is not None else out


def list_inputs(path: str) -> List[str]:
    """The image files to process: ``path`` itself or the images in folder ``path`` (sorted, not recursive)."""
    from mpt_data.image_io import is_image_file

    if os.path.isdir(path):
        files = sorted(os.path.join(path, n) for n in os.listdir(path)
                       if is_image_file(n) and os.path.isfile(os.path.join(path, n)))
        if not files:
            raise FileNotFoundError(f'Folder {path!r} contains no image (png, jpg, tif, ...).')
        return files
    if not os.path.isfile(path):
        raise FileNotFoundError(f'Input {path!r} does not exist.')
    return [path]


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog='mpt-deblur', description=__doc__.split('\n')[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('-i', '--input', required=True, help='image file or folder of images')
    parser.add_argument('-o', '--output', required=True, help='output folder (same file names and formats)')
    parser.add_argument('-w', '--weights', required=True, help='checkpoint (BasicSR net_g_*.pth or a state dict)')
    parser.add_argument('-opt', '--opt', help='BasicSR option file whose network_g builds the network')
    parser.add_argument('--arch', help='network type in ARCH_REGISTRY (e.g. MPT), instead of -opt')
    parser.add_argument('--net-opt', nargs='*', default=[], metavar='KEY=VALUE',
                        help='network keywords (YAML values), override/extend network_g')
    parser.add_argument('--param-key', default='auto', help="'auto' (params_ema, else params), a key, or '' (bare)")
    parser.add_argument('--device', default='cpu', choices=['cpu', 'cuda'])
    parser.add_argument('--tile', type=int, default=512, help='tile size in pixels; 0 = whole image at once')
    parser.add_argument('--overlap', type=int, default=32, help='blending width between tiles')
    parser.add_argument('--context', type=int, default=32, help='discarded margin at inner tile edges')
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Command-line entry point of ``mpt-deblur``."""
    args = parse_args(argv)  # before the heavy imports, so --help is quick
    from mpt_plugin.malloc_reuse import keep_freed_memory

    keep_freed_memory()  # reuse freed tensor memory instead of paging it in again (MPT_KEEP_FREED_MEMORY=0: off)
    import torch
    from tqdm import tqdm

    from mpt_deploy.tiling import count_tiles

    if args.device == 'cuda' and not torch.cuda.is_available():
        raise SystemExit('mpt-deblur: --device cuda requested but CUDA is not available.')
    files = list_inputs(args.input)
    out_dir = os.path.abspath(args.output)
    if any(os.path.dirname(os.path.abspath(f)) == out_dir for f in files):
        raise SystemExit(f'mpt-deblur: output folder {out_dir!r} is the input folder; choose another one.')
    from mpt_deploy.authors_checkpoint import load_authors_network

    authors = load_authors_network(args.weights, args.device)  # the authors' released file: converted on load
    if authors is not None:
        net, network_opt = authors
    else:
        network_opt = network_options(args.opt, args.arch, args.net_opt)
        net = load_network(network_opt, args.weights, args.param_key if args.param_key != '' else None, args.device)
    in_chans = network_in_chans(network_opt)
    for path in files:
        img = read_image(path)
        per_channel = img.shape[2] if in_chans == 1 and img.shape[2] in (3, 4) else 1
        total = count_tiles(img.shape[0], img.shape[1], args.tile, args.overlap, args.context) * min(per_channel, 3)
        with tqdm(total=total, desc=os.path.basename(path), unit='tile', file=sys.stderr) as bar:
            out = deblur_array(net, img, path, in_chans, args.tile, args.overlap, args.context, args.device,
                               progress=bar.update)
        write_image(os.path.join(out_dir, os.path.basename(path)), out, like=path)
    return 0


if __name__ == '__main__':
    sys.exit(main())
