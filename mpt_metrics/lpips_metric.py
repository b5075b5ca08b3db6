"""LPIPS (Zhang et al., CVPR 2018) as the BasicSR metric ``calculate_lpips`` (the paper's perceptual metric, Sec. 4).

YAML (``val.metrics``)::

    lpips: {type: calculate_lpips, better: lower}          # net: alex (default) | vgg | squeeze
    # if_missing: error (default) | skip   -- when the backbone weights cannot be found or downloaded

Computed by the ``lpips`` package. Its linear heads ship with the package, but the ImageNet backbone is
fetched by torchvision at first use (``alexnet-owt-7be5be79.pth`` for ``net: alex``, into
``$TORCH_HOME/hub/checkpoints/``, default ``~/.cache/torch/hub/checkpoints/``). The plugin checks this *at
start-up* (:func:`check_lpips_metrics`, called by :mod:`mpt_common.option_checks` when the options are parsed):
a missing file is downloaded by that same loading code where the network allows; where it cannot be fetched
the run stops before training or testing starts with the file name, the place to put it and how to switch
LPIPS off. ``if_missing: skip`` in the metric's options turns that error into a warning and drops the metric
(the shipped test option files do this, so they run on machines without the file). ``pretrained_backbone:
false`` uses a random backbone: plumbing tests only, the values mean nothing.

Inputs are what BasicSR's validation passes (``img``, ``img2``: ``H x W x C`` BGR arrays from
``tensor2img``; 8- or 16-bit integers are divided by their dtype's maximum, floats are taken as [0, 1]);
grayscale images are repeated to three channels. One LPIPS network is cached per (net, backbone, device).
"""

from __future__ import annotations

import os
import warnings
from typing import Dict, List, Optional, Tuple

import numpy as np
from basicsr.utils.registry import METRIC_REGISTRY

import mpt_common.basicsr_compat  # noqa: F401  (before any basicsr import)

_NETS: Dict[Tuple[str, bool, str], object] = {}
_BACKBONE_WEIGHTS = {'alex': 'AlexNet_Weights', 'vgg': 'VGG16_Weights', 'squeeze': 'SqueezeNet1_1_Weights'}


def backbone_checkpoint(net: str) -> str:
    """Path where torchvision looks for the ImageNet weights of LPIPS backbone ``net`` (no download)."""
    import torch
    import torchvision.models as tvm

    if net not in _BACKBONE_WEIGHTS:
        raise ValueError(f'LPIPS net {net!r} is not one of {sorted(_BACKBONE_WEIGHTS)}.')
    url = getattr(tvm, _BACKBONE_WEIGHTS[net]).IMAGENET1K_V1.url
    return os.path.join(torch.hub.get_dir(), 'checkpoints', os.path.basename(url))


class LpipsWeightsUnavailable(FileNotFoundError):
    """The LPIPS backbone weights are neither on this machine nor downloadable; the message says what to do."""


def weights_message(net: str, metric_name: str = 'lpips', reason: str = '') -> str:
    """What a user reads when the backbone file of LPIPS ``net`` is missing (file, place, how to switch off)."""
    path = backbone_checkpoint(net)
    why = f' and could not be downloaded ({reason})' if reason else ''
    return (f'LPIPS ({net}) needs the ImageNet backbone weights {os.path.basename(path)!r}, which are not on this '
            f'machine{why}. Put that file at {path} ($TORCH_HOME/hub/checkpoints/, default '
            f'~/.cache/torch/hub/checkpoints/), or switch LPIPS off: delete val.metrics.{metric_name} from the '
            f'option file, or add "if_missing: skip" to it to skip it with a warning ("pretrained_backbone: false" '
            f'gives a random backbone for plumbing tests only, with meaningless values).')


def get_lpips_net(net: str = 'alex', pretrained_backbone: bool = True, device: str = 'cpu'):
    """The cached ``lpips.LPIPS`` network for (net, backbone, device).

    A missing backbone file is downloaded by lpips/torchvision's own loading code; if that fails,
    :class:`LpipsWeightsUnavailable` says which file to put where.
    """
    key = (net, bool(pretrained_backbone), str(device))
    if key not in _NETS:
        path = backbone_checkpoint(net) if pretrained_backbone else None
        import lpips

        try:
            with warnings.catch_warnings():  # lpips 0.1.4 uses torchvision's deprecated `pretrained=` argument
                warnings.filterwarnings('ignore', category=UserWarning, module='torchvision')
                model = lpips.LPIPS(net=net, pnet_rand=not pretrained_backbone, verbose=False)
        except (OSError, RuntimeError) as err:  # URLError is an OSError; a damaged download a RuntimeError
            if path is None or (os.path.isfile(path) and not isinstance(err, OSError)):
                raise
            raise LpipsWeightsUnavailable(weights_message(net, reason=f'{type(err).__name__}: {err}')) from err
        _NETS[key] = model.to(device).eval()
    return _NETS[key]


def check_lpips_metrics(opt: dict) -> List[str]:
    """Start-up check of every ``calculate_lpips`` entry of ``opt['val']['metrics']``; returns the skipped names.

    Builds each LPIPS network once (downloading its backbone where possible). Unavailable weights raise
    :class:`LpipsWeightsUnavailable`, or with ``if_missing: skip`` warn and remove the metric from ``opt``.
    """
    metrics = (opt.get('val') or {}).get('metrics') or {}
    skipped = []
    for name, metric_opt in list(metrics.items()):
        if not isinstance(metric_opt, dict) or metric_opt.get('type') != 'calculate_lpips':
            continue
        if_missing = metric_opt.get('if_missing', 'error')
        if if_missing not in ('error', 'skip'):
            raise ValueError(f"val.metrics.{name}.if_missing must be 'error' or 'skip', got {if_missing!r}.")
        if not metric_opt.get('pretrained_backbone', True):
            continue
        net = metric_opt.get('net', 'alex')
        try:
            get_lpips_net(net, True, 'cpu')
        except LpipsWeightsUnavailable as err:
            message = str(err).replace('val.metrics.lpips', f'val.metrics.{name}')
            if if_missing == 'error':
                raise LpipsWeightsUnavailable(message) from None
            warnings.warn(f'{message} Skipping metric {name!r} (if_missing: skip).', RuntimeWarning, stacklevel=2)
            del metrics[name]
            skipped.append(name)
    return skipped


def _to_tensor(img: np.ndarray, input_order: str, crop_border: int, name: str):
    import torch

    img = np.asarray(img)
    if img.ndim == 2:
        img = img[:, :, None]
    elif input_order == 'CHW':
        img = img.transpose(1, 2, 0)
    if img.ndim != 3 or img.shape[2] not in (1, 3):
        raise ValueError(f'calculate_lpips: {name} must be H x W, H x W x 1 or H x W x 3, got shape {img.shape}.')
    if np.issubdtype(img.dtype, np.integer):
        img = img.astype(np.float32) / float(np.iinfo(img.dtype).max)
    img = img.astype(np.float32)
    if crop_border:
        img = img[crop_border:-crop_border, crop_border:-crop_border]
    img = img[:, :, ::-1] if img.shape[2] == 3 else np.repeat(img, 3, axis=2)  # BGR -> RGB / gray -> 3 channels
    return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))[None] * 2 - 1


@METRIC_REGISTRY.register()
def calculate_lpips(img: np.ndarray, img2: Optional[np.ndarray] = None, crop_border: int = 0,
                    input_order: str = 'HWC', net: str = 'alex', pretrained_backbone: bool = True,
                    device: Optional[str] = None, **kwargs) -> float:
    """LPIPS distance between ``img`` and the reference ``img2`` (lower is better)."""
    import torch

    if img2 is None:
        raise ValueError('calculate_lpips is a full-reference metric: the validation set has no ground truth (gt). '
                         'Use a no-reference metric such as calculate_sharpness for unlabeled sets.')
    if np.shape(img) != np.shape(img2):
        raise ValueError(f'calculate_lpips: image shapes differ: {np.shape(img)} vs {np.shape(img2)}.')
    if input_order not in ('HWC', 'CHW'):
        raise ValueError(f'calculate_lpips: input_order must be HWC or CHW, got {input_order!r}.')
    device = device or ('cuda' if torch.cuda.is_available() else 'cpu')
    model = get_lpips_net(net, pretrained_backbone, device)
    a = _to_tensor(img, input_order, crop_border, 'img').to(device)
    b = _to_tensor(img2, input_order, crop_border, 'img2').to(device)
    with torch.no_grad():
        return float(model(a, b).mean())


calculate_lpips.check_options = check_lpips_metrics  # run by the start-up option checks (mpt_common.option_checks)
