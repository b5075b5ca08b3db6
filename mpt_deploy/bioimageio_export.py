"""``mpt-export-bioimageio``: a trained network as a bioimage.io model package (spec format 0.5, ``.zip``).

Example::

    mpt-export-bioimageio -opt options/train_mpt_bbbc006.yml -w experiments/x/models/net_g_latest.pth -o mpt.zip

The package holds the network wrapped in :class:`mpt_deploy.bioimageio_model.DeployedNet` (``mpt-deblur``'s
normalisation of the option file, tiled forward and inverse map, so its prediction equals ``mpt-deblur``'s), as
TorchScript weights (the network traced at ``--tile`` x ``--tile``; for deepImageJ) and as ``pytorch_state_dict``
weights (architecture: :func:`mpt_deploy.bioimageio_model.build_deployed_net`, needs this plugin installed); test
tensors computed by that wrapper from ``--test-image`` or a seeded synthetic image; a before/after cover; a
``README.md`` from the model card (:mod:`mpt_deploy.model_card`); licence and authors. Runs offline; the same
inputs give a byte-identical zip. Needs the ``bioimageio`` extra (``pip install 'mpt-basicsr[bioimageio]'``).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import warnings
import zipfile
from pathlib import Path
from typing import Any, Dict, Optional, Sequence

import numpy as np

import mpt_common.basicsr_compat  # noqa: F401  (before any basicsr import)
from mpt_deploy.model_loading import add_network_arguments

INPUT_DTYPES = {'uint16': 65535.0, 'uint8': 255.0}
ZIP_TIME = (1980, 1, 1, 0, 0, 0)


class ExportError(ValueError):
    """The export cannot run as asked; the message says what to change."""


# --- the one place that reads the normalisation contract (mpt_data.normalization) ----------------------------
def export_normalization(opt_file: Optional[str]) -> Dict[str, Any]:
    """``DeployedNet`` keywords of the normalisation the network was trained with (``dtype`` without ``-opt``):
    the same resolution as ``mpt-deblur`` (:func:`mpt_deploy.model_loading.inference_normalization`)."""
    from mpt_deploy.model_loading import inference_normalization

    norm = inference_normalization(opt_file)
    return {'mode': norm.mode, 'percentiles': [float(p) for p in norm.percentiles],
            'norm_max': float(norm.norm_max) if norm.norm_max is not None else 1.0}


def describe_normalization(norm: Dict[str, Any], dtype: str) -> str:
    """One sentence for the documentation."""
    if norm['mode'] == 'input_percentile':
        low, high = norm['percentiles']
        return (f'x -> (x - p{low:g}) / (p{high:g} - p{low:g}) with the {low:g}th/{high:g}th percentiles of the '
                'input tensor, unclipped; the output is mapped back by the inverse and clipped to the range of '
                f'{dtype}, as float32.')
    if norm['mode'] == 'fixed':
        return f"x -> clip(x / {norm['norm_max']:g}, 0, 1); the output is multiplied back and clipped, as float32."
    return (f'x -> x / {INPUT_DTYPES[dtype]:g} ({dtype} maximum); the output is multiplied back and clipped, '
            'as float32.')


# --- test image and cover ------------------------------------------------------------------------------------
def synthetic_image(size: int, channels: int, top: float, seed: int = 0) -> np.ndarray:
    """Seeded ``size x size x channels`` image of blurred blobs with noise, as integers up to ``top``."""
    import cv2

    rng = np.random.default_rng(seed)
    planes = []
    for _ in range(channels):
        plane = np.zeros((size, size), np.float32)
        for _ in range(max(4, size * size // 400)):
            y, x = rng.integers(0, size, 2)
            cv2.circle(plane, (int(x), int(y)), int(rng.integers(2, max(3, size // 12))), float(rng.uniform(.3, 1)), -1)
        plane = cv2.GaussianBlur(plane, (0, 0), max(1.0, size / 64))
        plane = 0.05 + 0.8 * plane / max(float(plane.max()), 1e-6) + rng.normal(0, 0.01, plane.shape)
        planes.append(plane)
    img = np.clip(np.stack(planes, axis=2), 0, 1) * (0.3 * top)
    return np.round(img).astype(np.uint16 if top > 255 else np.uint8)


def cover_png(before: np.ndarray, after: np.ndarray) -> bytes:
    """Before | after (first channel), both scaled by the 0.1-99.9 percentiles of ``before``, as 8-bit PNG."""
    import cv2

    low, high = np.percentile(before, [0.1, 99.9])
    scale = max(float(high - low), 1e-6)
    pair = np.concatenate([before[..., 0], after[..., 0]], axis=1).astype(np.float64)
    img = np.round(np.clip((pair - low) / scale, 0, 1) * 255).astype(np.uint8)
    ok, data = cv2.imencode('.png', img)
    if not ok:
        raise ExportError('Could not encode the cover image.')
    return data.tobytes()


# --- packaging -----------------------------------------------------------------------------------------------
def deterministic_zip(source: str, target: str) -> None:
    """Copy zip ``source`` to ``target`` with sorted entries and fixed timestamps/attributes."""
    with zipfile.ZipFile(source) as zin:
        entries = sorted((info.filename, zin.read(info)) for info in zin.infolist())
    with zipfile.ZipFile(target, 'w') as zout:
        for name, data in entries:
            info = zipfile.ZipInfo(name, date_time=ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zout.writestr(info, data, compresslevel=6)


def reproducible_torchscript(path: Path) -> None:
    """Rewrite a ``torch.jit.save`` archive without what differs between identical saves.

    Dropped: the ``*.debug_pkl`` source maps (they record the Python call stack of the tracing run; loading
    works without them). Replaced: the random ``.data/serialization_id``, by a hash of the other records.
    The ``___torch_mangle_N`` class names depend on what the process traced before: see :func:`write_torchscript`.
    """
    import hashlib

    with zipfile.ZipFile(path) as zin:
        records = [(i.filename, zin.read(i)) for i in zin.infolist() if not i.filename.endswith('.debug_pkl')]
    digest = hashlib.sha256(b''.join(name.encode() + data for name, data in records
                                     if not name.endswith('serialization_id'))).hexdigest()
    ident = str(int(digest[:32], 16)).zfill(40)[:40].encode()
    with zipfile.ZipFile(path, 'w', zipfile.ZIP_STORED) as zout:
        for name, data in records:
            info = zipfile.ZipInfo(name, date_time=ZIP_TIME)
            zout.writestr(info, ident if name.endswith('.data/serialization_id') else data)


def _check_paths(weights: str, output: str, inputs: Sequence[Optional[str]], overwrite: bool) -> None:
    if not os.path.isfile(weights):
        raise ExportError(f'Checkpoint {weights!r} does not exist.')
    if not output.lower().endswith('.zip'):
        raise ExportError(f'Output {output!r} must end in .zip (a bioimage.io package).')
    out = os.path.realpath(output)
    for path in [weights, *inputs]:
        if path and os.path.realpath(path) == out:
            raise ExportError(f'Output {output!r} is one of the inputs; choose another file name.')
    if os.path.isdir(output):
        raise ExportError(f'Output {output!r} is a folder; give a .zip file name.')
    if os.path.exists(output) and not overwrite:
        raise ExportError(f'Output {output!r} exists; remove it or pass --overwrite.')


def _trace(net, channels: int, tile: int):
    """The network traced at ``1 x channels x tile x tile`` (tracing bakes in the sizes).

    Traced with gradients on (MPT's no-grad path works in place and in row strips, which the tracer cannot
    record) and without MPT's custom autograd functions (Python functions cannot be saved in TorchScript).
    """
    import torch

    from mpt_arch.custom_backward import plain_autograd

    example = torch.rand(1, channels, tile, tile, generator=torch.Generator().manual_seed(0))
    with warnings.catch_warnings(), plain_autograd(), torch.enable_grad():
        warnings.simplefilter('ignore')
        return torch.jit.trace(net, example, check_trace=False)


def write_torchscript(job_file: str) -> None:
    """Trace, script and save the TorchScript weights described by ``job_file`` (JSON, see :func:`export`).

    Run in a fresh interpreter (:func:`_torchscript_in_subprocess`): TorchScript names the classes it compiles
    per process (``___torch_mangle_N``, counted over everything traced before), so only a fresh process writes
    the same bytes for the same network.
    """
    import json

    import torch

    from mpt_deploy.bioimageio_model import DeployedNet
    from mpt_deploy.model_loading import build_network

    with open(job_file, encoding='utf-8') as handle:
        job = json.load(handle)
    torch.set_num_threads(1)
    net = build_network(job['network'])
    state = torch.load(job['weights'], map_location='cpu', weights_only=True)
    net.load_state_dict({k[4:]: v for k, v in state.items() if k.startswith('net.')}, strict=True)
    net.eval()
    deploy = job['deploy']
    traced = _trace(net, job['channels'], deploy['tile'])
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')  # torch.jit.* deprecation
        scripted = torch.jit.script(DeployedNet(traced, full_tiles=True, **deploy))
        torch.jit.save(scripted, job['output'])
    reproducible_torchscript(Path(job['output']))


def _torchscript_in_subprocess(folder: Path, job: Dict[str, Any]) -> None:
    import json
    import subprocess

    job_file = folder / 'torchscript_job.json'
    job_file.write_text(json.dumps(job), encoding='utf-8')
    root = str(Path(__file__).resolve().parents[1])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([root, *filter(None, [os.environ.get('PYTHONPATH')])]))
    code = f'from mpt_deploy.bioimageio_export import write_torchscript; write_torchscript({str(job_file)!r})'
    proc = subprocess.run([sys.executable, '-c', code], env=env, capture_output=True, text=True)
    job_file.unlink()
    if proc.returncode != 0:
        raise ExportError(f'Writing the TorchScript weights failed:\n{proc.stderr[-3000:]}')


def _card_of(weights: str) -> dict:
    """The card a model brings: a shipped starter model's own; any other model needs ``--model-card``."""
    from mpt_deploy import model_card as cards
    from mpt_deploy.starter_models import KINDS, starter_model

    for kind in KINDS:
        if os.path.realpath(weights) == os.path.realpath(starter_model(kind).weights):
            return cards.starter_card(kind)
    return cards.load_model_card(None)  # raises: the exporter does not invent one


def export(weights: str, output: str, opt_file: Optional[str] = None, arch: Optional[str] = None,
           net_opt: Sequence[str] = (), param_key: Optional[str] = 'auto', tile: int = 256, overlap: int = 32,
           context: int = 32, input_dtype: str = 'uint16', model_card: Optional[str] = None,
           test_image: Optional[str] = None, overwrite: bool = False) -> str:
    """Write the package ``output``; returns its path. See the module docstring."""
    import torch

    from mpt_data.image_io import decode_image
    from mpt_deploy import model_card as cards
    from mpt_deploy.bioimageio_model import DeployedNet
    from mpt_deploy.model_loading import load_network, network_in_chans, network_options

    _check_paths(weights, output, (opt_file, model_card, test_image), overwrite)
    if input_dtype not in INPUT_DTYPES:
        raise ExportError(f'--input-dtype must be one of {sorted(INPUT_DTYPES)}, got {input_dtype!r}.')
    if tile <= 2 * context + overlap:
        raise ExportError(f'--tile ({tile}) must exceed --overlap + 2 * --context ({overlap} + 2 * {context}).')
    network_opt = network_options(opt_file, arch, net_opt)
    norm = export_normalization(opt_file)
    card = cards.load_model_card(model_card) if model_card else _card_of(weights)
    torch.manual_seed(0)
    net = load_network(network_opt, weights, param_key)
    channels = network_in_chans(network_opt) or 1
    out_chans = int(network_opt.get('out_chans') or channels)
    dtype_max = INPUT_DTYPES[input_dtype]
    deploy = dict(norm, dtype_max=dtype_max, tile=tile, overlap=overlap, context=context)
    eager = DeployedNet(net, out_chans=out_chans, **deploy).eval()

    if test_image:
        with open(test_image, 'rb') as handle:
            img = decode_image(handle.read(), test_image)  # H x W x C, stored dtype
        if img.dtype != np.dtype(input_dtype) or img.shape[2] != channels:
            raise ExportError(f'Test image {test_image!r} is {img.dtype} with {img.shape[2]} channel(s); the package '
                              f'takes {input_dtype} with {channels}.')
        if min(img.shape[:2]) < tile:
            raise ExportError(f'Test image {test_image!r} ({img.shape[0]} x {img.shape[1]}) is smaller than --tile.')
    else:
        img = synthetic_image(tile + tile // 2, channels, dtype_max)
    test_in = np.ascontiguousarray(img.transpose(2, 0, 1)[None])
    with torch.no_grad():
        result = eager(torch.from_numpy(test_in.astype(np.float32)))
    test_out = result.numpy().astype(np.float32)  # float32 in the input's units: consumers cast

    with tempfile.TemporaryDirectory(prefix='mpt-bioimageio-') as tmp:
        files = Path(tmp)
        np.save(files / 'test_input.npy', test_in)
        np.save(files / 'test_output.npy', test_out)
        torch.save(eager.state_dict(), files / 'weights.pt')
        _torchscript_in_subprocess(files, {'network': network_opt, 'weights': str(files / 'weights.pt'),
                                           'deploy': dict(deploy, out_chans=out_chans), 'channels': channels,
                                           'output': str(files / 'weights.torchscript.pt')})
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')  # torch.jit.* deprecation
            scripted = torch.jit.load(str(files / 'weights.torchscript.pt'))
            with torch.no_grad():
                check = scripted(torch.from_numpy(test_in.astype(np.float32)))
        if float((check - result).abs().max()) > 1.0:  # float32 outputs: traced and eager agree far below a unit
            raise ExportError('The TorchScript model differs from the network on the test image; not exporting.')
        (files / 'cover.png').write_bytes(cover_png(img, test_out[0].transpose(1, 2, 0)))
        contract = {'channels': channels, 'dtype': input_dtype, 'min_size': tile, 'tile': tile, 'overlap': overlap,
                    'context': context, 'normalization': describe_normalization(norm, input_dtype),
                    'torchscript': f'TorchScript weights: the network traced at {tile} x {tile} (tracing fixes '
                                   f'the size); inputs must be at least {tile} px in y and x.'}
        (files / 'README.md').write_text(cards.render_documentation(card, contract), encoding='utf-8')
        descr = _model_descr(files, card, network_opt, deploy, channels, out_chans, input_dtype, tile)
        packed = files / 'package.zip'
        _save_package(descr, packed)
        os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
        tmp_out = f'{output}.part'
        deterministic_zip(str(packed), tmp_out)
        os.replace(tmp_out, output)
    return output


def _save_package(descr, path: Path) -> None:
    from bioimageio.spec import save_bioimageio_package

    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        save_bioimageio_package(descr, output_path=path)


def _model_descr(files: Path, card: Dict[str, Any], network_opt: Dict[str, Any], deploy: Dict[str, Any],
                 channels: int, out_chans: int, input_dtype: str, tile: int):
    """The ``ModelDescr`` (spec 0.5) of the files written to ``files``."""
    import torch
    from bioimageio.spec.model import v0_5 as spec

    def names(count: int, prefix: str):
        return [spec.Identifier(f'{prefix}{i}') for i in range(count)]

    size = spec.ParameterizedSize(min=tile, step=1)
    inputs = [spec.InputTensorDescr(
        id=spec.TensorId('raw'), description=f'blurry image, raw {input_dtype} intensities',
        axes=[spec.BatchAxis(), spec.ChannelAxis(channel_names=names(channels, 'channel')),
              spec.SpaceInputAxis(id=spec.AxisId('y'), size=size), spec.SpaceInputAxis(id=spec.AxisId('x'), size=size)],
        test_tensor=spec.FileDescr(source=files / 'test_input.npy'),
        data=spec.IntervalOrRatioDataDescr(type=input_dtype),
        preprocessing=[spec.EnsureDtypeDescr(kwargs=spec.EnsureDtypeKwargs(dtype='float32'))])]
    ref = {'tensor_id': spec.TensorId('raw')}
    outputs = [spec.OutputTensorDescr(
        id=spec.TensorId('deblurred'), description=f'deblurred image, float32 in the input\'s {input_dtype} units',
        axes=[spec.BatchAxis(), spec.ChannelAxis(channel_names=names(out_chans, 'channel')),
              spec.SpaceOutputAxis(id=spec.AxisId('y'), size=spec.SizeReference(axis_id=spec.AxisId('y'), **ref)),
              spec.SpaceOutputAxis(id=spec.AxisId('x'), size=spec.SizeReference(axis_id=spec.AxisId('x'), **ref))],
        test_tensor=spec.FileDescr(source=files / 'test_output.npy'),
        data=spec.IntervalOrRatioDataDescr(type='float32'),
        postprocessing=[spec.EnsureDtypeDescr(kwargs=spec.EnsureDtypeKwargs(dtype='float32'))])]
    version = torch.__version__.split('+')[0]
    arch = spec.ArchitectureFromLibraryDescr(import_from='mpt_deploy.bioimageio_model', callable='build_deployed_net',
                                             kwargs={'network': network_opt, **deploy})
    weights = spec.WeightsDescr(
        pytorch_state_dict=spec.PytorchStateDictWeightsDescr(source=files / 'weights.pt', architecture=arch,
                                                             pytorch_version=version),
        torchscript=spec.TorchscriptWeightsDescr(source=files / 'weights.torchscript.pt', pytorch_version=version,
                                                 parent='pytorch_state_dict',
                                                 comment=f'network traced at {tile} x {tile}'))
    return spec.ModelDescr(
        name=card['name'], description=card['description'],
        authors=[spec.Author(**{k: v for k, v in a.items() if k != 'github_user'}) for a in card['authors']],
        cite=[spec.CiteEntry(**c) for c in card['cite']], license=card['license'], version=card['version'],
        tags=card['tags'], covers=[spec.FileDescr(source=files / 'cover.png')],
        documentation=spec.FileDescr(source=files / 'README.md'), inputs=inputs, outputs=outputs, weights=weights)


# --- command line --------------------------------------------------------------------------------------------
def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog='mpt-export-bioimageio', description=__doc__.split('\n')[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('-o', '--output', required=True, help='package to write (.zip)')
    parser.add_argument('-w', '--weights', help='checkpoint (BasicSR net_g_*.pth or a state dict)')
    parser.add_argument('--starter', choices=['gray', 'rgb'], help='export a shipped starter model with its own '
                        'card (instead of -w/-opt/--model-card)')
    parser.add_argument('-opt', '--opt', help='BasicSR option file (network_g; datasets.*.normalize)')
    add_network_arguments(parser)
    parser.add_argument('--tile', type=int, default=256, help='tile size of the model (TorchScript traced at it)')
    parser.add_argument('--overlap', type=int, default=32, help='blending width between tiles')
    parser.add_argument('--context', type=int, default=32, help='discarded margin at inner tile edges')
    parser.add_argument('--input-dtype', default='uint16', choices=sorted(INPUT_DTYPES), help='input pixel type')
    parser.add_argument('--model-card', help='YAML model card (name, authors, training_data, psf, limits, ...)')
    parser.add_argument('--test-image', help='image for the test tensors (default: seeded synthetic image)')
    parser.add_argument('--overwrite', action='store_true', help='replace an existing output file')
    args = parser.parse_args(argv)
    if args.starter:
        if args.weights or args.opt or args.arch:
            parser.error('--starter exports a shipped starter model: leave out -w, -opt and --arch.')
        from mpt_deploy.starter_models import starter_model

        model = starter_model(args.starter)
        args.weights, args.opt, args.param_key = model.weights, model.options, 'params'
    elif not args.weights:
        parser.error('give -w WEIGHTS (with -opt or --arch and --model-card), or --starter gray|rgb.')
    return args


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Command-line entry point of ``mpt-export-bioimageio``."""
    args = parse_args(argv)
    from mpt_common.option_checks import OptionError
    from mpt_common.option_file import OptionFileError, UnsafeOptionError

    try:
        import bioimageio.spec  # noqa: F401
    except ImportError:
        print("mpt-export-bioimageio: error: needs the bioimageio extra: pip install 'mpt-basicsr[bioimageio]'",
              file=sys.stderr)
        return 1
    try:
        path = export(args.weights, args.output, args.opt, args.arch, args.net_opt,
                      args.param_key if args.param_key != '' else None, args.tile, args.overlap, args.context,
                      args.input_dtype, args.model_card, args.test_image, args.overwrite)
    except (OptionError, OptionFileError, UnsafeOptionError) as err:  # like a bad argument (mpt-deblur alike)
        print(f'mpt-export-bioimageio: error: {err}', file=sys.stderr)
        return 2
    except (ValueError, OSError, KeyError) as err:  # ExportError, CheckpointMismatchError, NormalizationError, ...
        print(f'mpt-export-bioimageio: error: {err}', file=sys.stderr)
        return 1
    print(path)
    return 0


if __name__ == '__main__':
    sys.exit(main())
