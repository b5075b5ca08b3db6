"""``mpt-deblur``: deblur microscopy image files with a trained network (tiled, any size, same file layout out).

Examples::

    mpt-deblur -opt options/train_MPT_BBBC006_w1.yml -w experiments/x/models/net_g_latest.pth -i blurry/ -o sharp/
    mpt-deblur --arch MPT --net-opt in_chans=1 dim=40 -w net_g_latest.pth -i stack.tif -o out/ --axes TZYX
    mpt-deblur -i blurry/ -o sharp/      # no network given: the shipped starter models (mpt_deploy.starter_models)

Reference: ``docs/deblurring.md``. In short:

* input: one file or a folder (not recursive) of PNG/JPEG/BMP/TIFF images, uint8/uint16 (TIFF also float32);
  TIFF stacks (z, t, channel axes; tifffile's series axes, ``--axes`` overrides) are deblurred plane by plane
  (:mod:`mpt_deploy.stacks`). Each output has the input's file name, format, shape, axes, dtype and metadata.
* network: ``-w`` with ``-opt`` or ``--arch`` (or an authors' checkpoint alone); with none of them the shipped
  starter model that fits each image (``--starter``: gray for one-channel planes, rgb for RGB).
* intensities: the normalisation the network was trained with, read from the option file (``-opt``), applied
  to each plane and inverted on the output (:mod:`mpt_data.normalization`); a ground-truth-based map is refused.
* channels: ``--channels`` decides what happens when a plane's colour count differs from the network's.
* safety (:mod:`mpt_deploy.safe_output`): no output may resolve to an input; outputs are written atomically;
  non-finite weights or outputs are errors; a failing file does not stop the batch.
* exit codes: 0 all files written; 1 a setup error or at least one file failed (listed at the end); 2 bad
  arguments (refused before any work).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

import mpt_plugin.compat  # noqa: F401  (before any basicsr import)
from mpt_plugin.checkpoint import CheckpointError, check_finite, load_checkpoint, select_params

CHANNEL_POLICIES = ('auto', 'per-channel', 'replicate', 'strict')


class CheckpointMismatchError(CheckpointError):
    """The checkpoint's parameters do not fit the network built from the options."""


class DeblurError(ValueError):
    """One image cannot be deblurred; the message names the file and the reason."""


# --- network and checkpoint -----------------------------------------------------------------------------------
def read_options(opt_file: str) -> Dict[str, Any]:
    """A BasicSR YAML option file as a dict, read by the plugin's safe loader (errors name the file)."""
    import yaml

    from mpt_plugin.option_file import load_options

    try:
        opt = load_options(opt_file)
    except yaml.YAMLError as err:  # invalid YAML, or a refused !!python/ tag
        raise ValueError(str(err)) from None
    if not isinstance(opt, dict):
        raise ValueError(f'Option file {opt_file!r} is not a YAML mapping.')
    return opt


def network_options(opt_file: Optional[str] = None, arch: Optional[str] = None,
                    net_opt: Sequence[str] = ()) -> Dict[str, Any]:
    """``network_g`` options from a BasicSR YAML file, or ``{'type': arch, **key=value pairs}``."""
    from mpt_plugin.option_file import parse_option_text

    if opt_file:
        opt = read_options(opt_file)
        if not isinstance(opt.get('network_g'), dict):
            raise ValueError(f'Option file {opt_file!r} has no network_g section.')
        network = dict(opt['network_g'])
    elif arch:
        network = {'type': arch}
    else:
        raise ValueError('Give the network: -opt <BasicSR option file with network_g> or --arch NAME '
                         "(only an authors' checkpoint as -w needs neither).")
    for item in net_opt:
        if '=' not in item:
            raise ValueError(f'--net-opt expects key=value, got {item!r}.')
        key, value = item.split('=', 1)
        network[key.strip()] = parse_option_text(value, f'--net-opt {item!r}')
    return network


def build_network(network_opt: Dict[str, Any]):
    """Build ``network_opt`` through BasicSR's ARCH_REGISTRY (plugin architectures registered first)."""
    from basicsr.archs import build_network as basicsr_build

    from mpt_plugin.autoload import import_plugins

    import_plugins(('mpt_arch',))
    return basicsr_build(dict(network_opt))


def load_state_dict(path: str, param_key: Optional[str] = 'auto') -> Dict[str, Any]:
    """Parameters from a BasicSR checkpoint (``params_ema``/``params``; ``param_key=None``: a bare state dict).

    Loaded with ``weights_only=True`` (:func:`mpt_plugin.checkpoint.load_checkpoint`); NaN/inf values are an error.
    """
    state = select_params(load_checkpoint(path), path, param_key)
    check_finite(state, path)
    return state


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


def inference_normalization(opt_file: Optional[str], mode: Optional[str] = None,
                            percentiles: Optional[Sequence[float]] = None, norm_max: Optional[float] = None):
    """The :class:`~mpt_data.normalization.Normalization` to apply: the option file's, or ``--normalize``'s.

    With ``-opt`` the datasets' ``normalize`` decides (a differing ``--normalize`` is refused); a map that
    needs the ground truth is refused with the reason and what to set.
    """
    from mpt_data.normalization import from_options, from_train_options, require_input_only

    cli = {k: v for k, v in (('normalize', mode), ('norm_percentiles', percentiles), ('norm_max', norm_max))
           if v is not None}
    if opt_file:
        norm = from_train_options(read_options(opt_file), f'Option file {opt_file!r}')
        require_input_only(norm, f'Option file {opt_file!r}')
        if cli and from_options({'name': '--normalize', 'normalize': norm.mode, **cli}) != norm:
            raise ValueError(f'--normalize/--norm-* differ from option file {opt_file!r}, whose network was trained '
                             f'with {norm}; drop them.')
        return norm
    norm = from_options({'name': '--normalize', **cli}, default='dtype')
    require_input_only(norm, '--normalize')
    return norm


# --- one image ------------------------------------------------------------------------------------------------
def channel_groups(plane: np.ndarray, in_chans: Optional[int], policy: str, path: str) -> Tuple[list, Callable]:
    """Split an ``H x W x C`` colour plane into network inputs; returns them and the merge of the outputs.

    ``auto``: same count as the network -> as is; a one-channel network and an RGB plane -> each channel on its
    own (the paper trains one network per channel); anything else is an error naming ``--channels``.
    ``per-channel``: always each channel on its own (one-channel networks). ``replicate``: a grayscale plane is
    copied into every input channel of a multi-channel network and the output channels are averaged back.
    ``strict``: counts must be equal.
    """
    channels = plane.shape[2]
    need = in_chans or channels
    if channels == need and policy != 'per-channel':
        return [plane], lambda outs: outs[0]
    if need == 1 and (policy == 'per-channel' or (policy == 'auto' and channels in (2, 3))):
        return [plane[:, :, c:c + 1] for c in range(channels)], lambda outs: np.concatenate(outs, axis=2)
    if policy == 'replicate' and channels == 1:
        return [np.repeat(plane, need, axis=2)], lambda outs: outs[0].mean(axis=2, keepdims=True)
    hint = {1: ' (use --channels replicate to feed it to the multi-channel network)'}.get(channels, '')
    if need == 1 and policy not in ('auto', 'per-channel'):
        hint = ' (use --channels per-channel to deblur each channel with the one-channel network)'
    raise DeblurError(f'{path!r}: a plane has {channels} colour channel(s) but the network takes {need}{hint}.')


def deblur_plane(net, plane: np.ndarray, path: str, norm, in_chans: Optional[int] = None, policy: str = 'auto',
                 tile: int = 512, overlap: int = 32, context: int = 32, device: str = 'cpu',
                 progress: Optional[Callable[[int], None]] = None) -> np.ndarray:
    """Deblur one ``H x W x C`` plane (alpha, the 4th of 4 channels, passed through); same shape and dtype out.

    Each network input gets the map ``norm`` computes from it alone; the output is mapped back by its inverse.
    """
    import torch

    from mpt_deploy.tiling import tiled_forward

    colour, alpha = (plane[:, :, :3], plane[:, :, 3:]) if plane.shape[2] == 4 else (plane, None)
    groups, merge = channel_groups(colour, in_chans, policy, path)
    outs = []
    for group in groups:
        imap = norm.map_for(group, path)
        tensor = torch.from_numpy(np.ascontiguousarray(imap.forward(group).transpose(2, 0, 1)))[None]
        result = tiled_forward(net, tensor, tile=tile, overlap=overlap, context=context, device=torch.device(device),
                               progress=progress)[0].numpy().transpose(1, 2, 0)
        if not np.isfinite(result).all():
            raise DeblurError(f'{path!r}: the network produced NaN or infinite values; nothing was written.')
        outs.append(imap.inverse(result, plane.dtype))
    out = merge(outs).astype(plane.dtype)
    if out.shape != colour.shape:
        raise DeblurError(f'{path!r}: the network returned {out.shape[2]} channel(s) for {colour.shape[2]}.')
    return np.concatenate([out, alpha], axis=2) if alpha is not None else out


def deblur_image(net, image, norm, in_chans: Optional[int] = None, policy: str = 'auto', tile: int = 512,
                 overlap: int = 32, context: int = 32, device: str = 'cpu',
                 progress: Optional[Callable[[int], None]] = None) -> np.ndarray:
    """Deblur every plane of an :class:`~mpt_deploy.stacks.ImageFile`; returns data of the same shape and dtype."""
    from mpt_deploy.stacks import colour_axis, from_planes, planes

    colour = colour_axis(image.axes, image.data.shape, in_chans)
    flat, layout = planes(image.data, image.axes, colour)
    out = np.empty_like(flat)
    for i in range(flat.shape[0]):
        out[i] = deblur_plane(net, flat[i], image.path, norm, in_chans, policy, tile, overlap, context, device,
                              progress)
    return from_planes(out, layout)


def deblur_array(net, img: np.ndarray, path: str, in_chans: Optional[int] = None, tile: int = 512,
                 overlap: int = 32, context: int = 32, device: str = 'cpu', progress=None, norm=None,
                 policy: str = 'auto') -> np.ndarray:
    """Deblur one ``H x W x C`` image (default map: divide by the dtype maximum); same shape and dtype out."""
    from mpt_data.normalization import Normalization

    return deblur_plane(net, img, path, norm or Normalization('dtype'), in_chans, policy, tile, overlap, context,
                        device, progress)


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


# --- command line ---------------------------------------------------------------------------------------------
def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """Parse and validate the arguments (bad values exit with code 2 before any work)."""
    parser = argparse.ArgumentParser(prog='mpt-deblur', description=__doc__.split('\n')[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('-i', '--input', required=True, nargs='+', help='image files and/or folders of images')
    parser.add_argument('-o', '--output', required=True, help='output folder (same file names and formats)')
    parser.add_argument('-w', '--weights', help='checkpoint (BasicSR net_g_*.pth or a state dict); without -w, '
                        '-opt and --arch the shipped starter models are used')
    parser.add_argument('-opt', '--opt', help='BasicSR option file the network was trained with (network_g, '
                        'datasets.*.normalize)')
    parser.add_argument('--arch', help='network type in ARCH_REGISTRY (e.g. MPT), instead of -opt')
    parser.add_argument('--net-opt', nargs='*', default=[], metavar='KEY=VALUE',
                        help='network keywords (YAML values), override/extend network_g')
    parser.add_argument('--param-key', default='auto', help="'auto' (params_ema, else params), a key, or '' (bare)")
    parser.add_argument('--normalize', choices=['dtype', 'input_percentile', 'fixed'],
                        help='intensity map without -opt (default dtype); with -opt the option file decides')
    parser.add_argument('--norm-percentiles', type=float, nargs=2, metavar=('LOW', 'HIGH'))
    parser.add_argument('--norm-max', type=float, help='divisor of --normalize fixed')
    parser.add_argument('--axes', help='axes of TIFF inputs, one letter per dimension (e.g. ZYX, TZYX, YXS); '
                        'overrides the file metadata')
    parser.add_argument('--channels', default='auto', choices=CHANNEL_POLICIES,
                        help='colour count differs from the network: auto (RGB into a 1-channel net: per channel), '
                        'per-channel, replicate (gray into an RGB net), strict')
    parser.add_argument('--starter', default='auto', choices=['auto', 'gray', 'rgb'],
                        help='starter model when no -w is given: auto (per image: gray for one channel, rgb for RGB)')
    parser.add_argument('--device', default='cpu', choices=['cpu', 'cuda'])
    parser.add_argument('--tile', type=int, default=512, help='tile size in pixels; 0 = whole image at once')
    parser.add_argument('--overlap', type=int, default=32, help='blending width between tiles')
    parser.add_argument('--context', type=int, default=32, help='discarded margin at inner tile edges')
    args = parser.parse_args(argv)
    if not args.weights and (args.opt or args.arch or args.net_opt):
        parser.error('-opt/--arch/--net-opt describe a network whose weights -w must give '
                     '(leave all of them out to use the shipped starter models).')
    if not args.weights and (args.normalize or args.norm_percentiles or args.norm_max is not None):
        parser.error('the starter models bring their own normalisation; --normalize/--norm-* need -w.')
    if args.weights and args.starter != 'auto':
        parser.error('--starter chooses a shipped starter model; it cannot be combined with -w.')
    if args.tile < 0:
        parser.error(f'--tile must be >= 0 (0 = whole image at once), got {args.tile}.')
    if args.overlap < 0 or args.context < 0:
        parser.error(f'--overlap and --context must be >= 0, got {args.overlap} and {args.context}.')
    if args.tile > 0 and args.tile <= args.overlap + 2 * args.context:
        parser.error(f'--tile {args.tile} must exceed --overlap + 2 * --context = '
                     f'{args.overlap + 2 * args.context} (or be 0).')
    if args.axes:
        from mpt_deploy.stacks import StackError, check_axes

        try:
            args.axes = check_axes(args.axes)
        except StackError as err:
            parser.error(str(err))
    return args


def _error(message: str) -> int:
    print(f'mpt-deblur: error: {message}', file=sys.stderr)
    return 1


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Command-line entry point of ``mpt-deblur``; returns the exit code (see the module docstring)."""
    args = parse_args(argv)  # before the heavy imports, so --help and bad arguments are quick
    from mpt_plugin.malloc_reuse import keep_freed_memory

    keep_freed_memory()  # reuse freed tensor memory instead of paging it in again (MPT_KEEP_FREED_MEMORY=0: off)
    import torch
    from tqdm import tqdm

    from mpt_deploy.authors_checkpoint import load_authors_network
    from mpt_deploy.safe_output import atomic_write, plan_outputs
    from mpt_deploy.stacks import colour_axis, read_image_file, write_image_file
    from mpt_deploy.starter_models import KINDS, StarterNetworks, starter_model
    from mpt_deploy.tiling import count_tiles

    if args.device == 'cuda' and not torch.cuda.is_available():
        return _error('--device cuda requested but CUDA is not available.')
    try:
        files = list(dict.fromkeys(f for item in args.input for f in list_inputs(item)))
        pairs = plan_outputs(files, os.path.abspath(args.output))
        starters = None
        if args.weights:
            norm = inference_normalization(args.opt, args.normalize, args.norm_percentiles, args.norm_max)
            authors = load_authors_network(args.weights, args.device)  # the authors' file: converted on load
            if authors is not None:
                net, network_opt = authors
            else:
                network_opt = network_options(args.opt, args.arch, args.net_opt)
                net = load_network(network_opt, args.weights, args.param_key if args.param_key != '' else None,
                                   args.device)
        else:
            starters = StarterNetworks(args.device)
            for kind in (KINDS if args.starter == 'auto' else (args.starter,)):
                starter_model(kind)  # all shipped files present, before any work
    except (OSError, ValueError, KeyError) as err:
        return _error(str(err))
    failures: List[Tuple[str, str]] = []
    for path, out_path in pairs:
        try:
            image = read_image_file(path, args.axes)
            if starters is not None:
                colour = colour_axis(image.axes, image.data.shape, None)
                channels = image.data.shape[image.axes.index(colour)] if colour else 1
                net, network_opt, norm, model = starters.for_channels(
                    channels, path, None if args.starter == 'auto' else args.starter)
                print(f'mpt-deblur: {path}: starter model {model.kind} ({os.path.basename(model.weights)})',
                      file=sys.stderr)
            in_chans = network_in_chans(network_opt)
            h, w = image.data.shape[image.axes.index('Y')], image.data.shape[image.axes.index('X')]
            total = count_tiles(h, w, args.tile, args.overlap, args.context) * max(1, image.data.size // (h * w))
            with tqdm(total=total, desc=os.path.basename(path), unit='tile', file=sys.stderr) as bar:
                out = deblur_image(net, image, norm, in_chans, args.channels, args.tile, args.overlap, args.context,
                                   args.device, progress=bar.update)
            atomic_write(out_path, lambda tmp: write_image_file(tmp, image, out))  # noqa: B023 - called at once
        except Exception as err:  # one bad file must not stop the batch; reported below
            failures.append((path, f'{type(err).__name__}: {err}'))
            print(f'mpt-deblur: failed: {path}: {err}', file=sys.stderr)
    if failures:
        print(f'mpt-deblur: {len(failures)} of {len(pairs)} file(s) failed, '
              f'{len(pairs) - len(failures)} written to {args.output!r}:', file=sys.stderr)
        for path, message in failures:
            print(f'  {path}: {message}', file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
