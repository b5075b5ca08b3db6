"""``mpt-deblur``: deblur microscopy image files with a trained network (tiled, any size, same file layout out).

Examples::

    mpt-deblur -opt options/train_MPT_BBBC006_w1.yml -w experiments/x/models/net_g_latest.pth -i blurry/ -o sharp/
    mpt-deblur --arch MPT --net-opt in_chans=1 dim=40 -w net_g_latest.pth -i stack.tif -o out/ --axes TZYX
    mpt-deblur -i blurry/ -o sharp/      # no network given: the shipped starter models (mpt_deploy.starter_models)

Reference: ``docs/guides/deblurring.md``. In short:

* input: one file or a folder (not recursive) of PNG/JPEG/BMP/TIFF images, uint8/uint16 (TIFF also float32);
  TIFF stacks (z, t, channel axes; tifffile's series axes, ``--axes`` overrides) are deblurred plane by plane
  (:mod:`mpt_deploy.stacks`). Each output has the input's file name, format, shape, axes, dtype and metadata.
* network: ``-w`` with ``-opt`` or ``--arch`` (or an authors' checkpoint alone); with none of them the shipped
  starter models (``--starter``; default: the gray model, on each colour channel of RGB images; ``rgb``: the
  RGB model).
* intensities: the normalisation the network was trained with, read from the option file (``-opt``), applied
  to each plane and inverted on the output (:mod:`mpt_data.normalization`); a ground-truth-based map is refused.
* channels: ``--channels`` decides what happens when a plane's colour count differs from the network's.
* library: networks and weights from :mod:`mpt_deploy.model_loading`, planes deblurred by
  :mod:`mpt_deploy.inference`; this module adds only files, folders and the command line.
* safety (:mod:`mpt_deploy.safe_output`): no output may resolve to an input; outputs are written atomically;
  non-finite weights or outputs are errors; a failing file does not stop the batch.
* existing outputs are skipped (named, counted in the summary) unless ``--overwrite``: rerunning the command
  after an interruption finishes the folder.
* 16-bit and 8-bit outputs are rounded and clipped to their dtype (a network may undershoot 0 next to bright
  structures); the clipped values are counted per file on stderr. ``--clip none`` writes float32 TIFFs instead,
  unclipped, in the input's units.
* exit codes: 0 every file written or skipped; 1 a setup error or at least one file failed (listed at the end);
  2 bad arguments or option-file problems (refused before any work, no traceback).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import List, Optional, Sequence, Tuple, Union

from mpt_deploy.inference import CHANNEL_POLICIES, CLIP_POLICIES
from mpt_deploy.model_loading import add_network_arguments


def list_inputs(path: str) -> List[str]:
    """The image files to process: ``path`` itself or the images in folder ``path`` (sorted, not recursive)."""
    from mpt_common.image_files import is_image_file

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
class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """``--help`` as plain text with every default shown."""


def _tile_size(text: str) -> Union[int, str]:
    """``--tile``: ``auto`` or a size in pixels >= 0."""
    if text == 'auto':
        return text
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be 'auto' or a number of pixels, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f'must be >= 0 (0 = whole image at once), got {value}')
    return value


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """Parse and validate the arguments (bad values exit with code 2 before any work)."""
    parser = argparse.ArgumentParser(prog='mpt-deblur', description=__doc__.split('\n')[0].replace('``', ''),
                                     formatter_class=HelpFormatter)
    parser.add_argument('-i', '--input', required=True, nargs='+', help='image files and/or folders of images')
    parser.add_argument('-o', '--output', required=True, help='output folder (same file names and formats)')
    parser.add_argument('-w', '--weights', help='checkpoint (BasicSR net_g_*.pth or a state dict); without -w, '
                        '-opt and --arch the shipped starter models are used')
    parser.add_argument('-opt', '--opt', help='BasicSR option file the network was trained with (network_g, '
                        'datasets.*.normalize)')
    add_network_arguments(parser)
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
                        help='starter model when no -w is given: auto (the gray model, per colour channel on RGB '
                        'images: it beat the RGB model on the tune images), gray, or rgb (the RGB model)')
    parser.add_argument('--clip', default='dtype', choices=CLIP_POLICIES,
                        help='dtype: integer outputs are rounded and clipped to their dtype (e.g. negative values '
                        'to 0 in 16-bit; counts are reported per file); none: write float32 TIFFs in the input\'s '
                        'units, unclipped (TIFF inputs only)')
    parser.add_argument('--device', default='auto', choices=['auto', 'cpu', 'cuda'],
                        help='auto: CUDA when PyTorch sees a GPU, else the CPU')
    parser.add_argument('--amp', default='none', choices=['none', 'bf16', 'fp16'],
                        help='run the network under torch.autocast in this precision (GPUs; on a CPU without bf16 '
                        'units it is slower)')
    parser.add_argument('--compile', action='store_true',
                        help='compile the network with torch.compile before the first image (a GPU option; the first '
                        'tile of each size pays the compilation)')
    parser.add_argument('--tile', type=_tile_size, default='auto',
                        help='tile size in pixels; 0 = whole image at once; auto: the whole image when it fits half '
                        'the free memory, else the largest tile that does (batches of tiles on CUDA)')
    parser.add_argument('--overlap', type=int, default=32, help='blending width between tiles')
    parser.add_argument('--context', type=int, default=32, help='discarded margin at inner tile edges')
    parser.add_argument('--overwrite', action='store_true',
                        help='replace outputs that exist (default: skip them, so rerunning resumes a folder)')
    args = parser.parse_args(argv)
    if not args.weights and (args.opt or args.arch or args.net_opt):
        parser.error('-opt/--arch/--net-opt describe a network whose weights -w must give '
                     '(leave all of them out to use the shipped starter models).')
    if not args.weights and (args.normalize or args.norm_percentiles or args.norm_max is not None):
        parser.error('the starter models bring their own normalisation; --normalize/--norm-* need -w.')
    if args.weights and args.starter != 'auto':
        parser.error('--starter chooses a shipped starter model; it cannot be combined with -w.')
    if args.overlap < 0 or args.context < 0:
        parser.error(f'--overlap and --context must be >= 0, got {args.overlap} and {args.context}.')
    if args.tile != 'auto' and 0 < args.tile <= args.overlap + 2 * args.context:
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
    from mpt_deploy.safe_output import plan_outputs

    start = time.perf_counter()
    try:  # inputs and outputs too: a mistyped path is reported before torch and the models load
        files = list(dict.fromkeys(f for item in args.input for f in list_inputs(item)))
        pairs = plan_outputs(files, os.path.abspath(args.output))
    except OSError as err:
        return _error(str(err))
    from mpt_common.malloc_reuse import keep_freed_memory

    keep_freed_memory()  # reuse freed tensor memory instead of paging it in again (MPT_KEEP_FREED_MEMORY=0: off)
    import torch
    from tqdm import tqdm

    from mpt_common.compiler import compile_module
    from mpt_common.option_checks import OptionError
    from mpt_common.option_file import OptionFileError, UnsafeOptionError
    from mpt_common.tiling import count_tiles, resolve_tile
    from mpt_deploy.inference import DeblurError, clip_report, deblur_image, network_inputs
    from mpt_deploy.model_loading import inference_normalization, load_weights, network_in_chans
    from mpt_deploy.safe_output import write_output
    from mpt_deploy.stacks import colour_axis, read_image_file, write_image_file
    from mpt_deploy.starter_models import KINDS, StarterNetworks, starter_model

    option_errors = (OptionError, OptionFileError, UnsafeOptionError)
    if args.device == 'auto':
        args.device = 'cuda' if torch.cuda.is_available() else 'cpu'
    if args.device == 'cuda' and not torch.cuda.is_available():
        return _error('--device cuda requested but CUDA is not available.')
    try:
        starters = None
        if args.weights:
            norm = inference_normalization(args.opt, args.normalize, args.norm_percentiles, args.norm_max)
            net, network_opt = load_weights(args.weights, args.opt, args.arch, args.net_opt,
                                            args.param_key if args.param_key != '' else None, args.device)
        else:
            starters = StarterNetworks(args.device)
            for kind in (KINDS if args.starter == 'auto' else (args.starter,)):
                starter_model(kind)  # all shipped files present, before any work
    except option_errors as err:  # the option file or --net-opt: like a bad argument, exit 2
        print(f'mpt-deblur: error: {err}', file=sys.stderr)
        return 2
    except (OSError, ValueError, KeyError) as err:
        return _error(str(err))
    failures: List[Tuple[str, str]] = []
    skipped: List[str] = []
    for path, out_path in pairs:
        if os.path.lexists(out_path) and not args.overwrite:
            skipped.append(path)
            print(f'mpt-deblur: skipped: {path}: {out_path} exists (--overwrite replaces it)', file=sys.stderr)
            continue
        try:
            image = read_image_file(path, args.axes)
            if args.clip == 'none' and not image.is_tiff:
                raise DeblurError(f'{path!r}: --clip none writes float32, which only TIFF holds; convert it to TIFF '
                                  'or keep --clip dtype.')
            if starters is not None:
                colour = colour_axis(image.axes, image.data.shape, None)
                channels = image.data.shape[image.axes.index(colour)] if colour else 1
                net, network_opt, norm, model = starters.for_channels(
                    channels, path, None if args.starter == 'auto' else args.starter)
                print(f'mpt-deblur: {path}: starter model {model.kind} ({os.path.basename(model.weights)})',
                      file=sys.stderr)
            if args.compile and getattr(net, '_compiled_call_impl', None) is None:
                compile_module(net)  # in place: the same module, its calls compiled (one graph per tile size)
            in_chans = network_in_chans(network_opt)
            h, w = image.plane_size
            tile, batch = resolve_tile(net, args.tile, h, w, torch.device(args.device), args.overlap, args.context)
            total = count_tiles(h, w, tile, args.overlap, args.context) * network_inputs(
                image, in_chans, args.channels)
            with tqdm(total=total, desc=os.path.basename(path), unit='tile', file=sys.stderr) as bar:
                clipped: dict = {}
                amp = {'bf16': torch.bfloat16, 'fp16': torch.float16}.get(args.amp)
                with torch.autocast(args.device, dtype=amp or torch.bfloat16, enabled=amp is not None):
                    out = deblur_image(net, image, norm, in_chans, args.channels, tile, args.overlap, args.context,
                                       args.device, progress=bar.update, clip=args.clip, clipped=clipped,
                                       batch=batch)
            write_output(out_path, lambda tmp: write_image_file(tmp, image, out))  # noqa: B023 - called at once
            report = clip_report(clipped, out.dtype, out.size, '; --clip none keeps them in a float32 TIFF')
            if report:
                print(f'mpt-deblur: {path}: {report}', file=sys.stderr)
        except Exception as err:  # one bad file must not stop the batch; reported below
            failures.append((path, f'{type(err).__name__}: {err}'))
            print(f'mpt-deblur: failed: {path}: {err}', file=sys.stderr)
    written = len(pairs) - len(failures) - len(skipped)
    kept = f', {len(skipped)} skipped (output already there)' if skipped else ''
    took = f' in {time.perf_counter() - start:.1f} s'
    if failures:
        print(f'mpt-deblur: {len(failures)} of {len(pairs)} file(s) failed, {written} written to {args.output!r}'
              f'{kept}{took}:', file=sys.stderr)
        for path, message in failures:
            print(f'  {path}: {message}', file=sys.stderr)
        return 1
    print(f'mpt-deblur: {written} file(s) written to {args.output!r}{kept}{took}.', file=sys.stderr)
    return 0


if __name__ == '__main__':
    sys.exit(main())
