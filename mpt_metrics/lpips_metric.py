"""LPIPS (Zhang et al., CVPR 2018) as the BasicSR metric ``calculate_lpips`` (the paper's perceptual metric, Sec. 4).

YAML (``val.metrics``)::

    lpips: {type: calculate_lpips, better: lower}          # net: alex (default) | vgg | squeeze

Computed by the ``lpips`` package. Its linear heads ship with the package, but the ImageNet backbone is
fetched by torchvision at first use; offline, put the file (``alexnet-owt-7be5be79.pth`` for ``net: alex``)
into ``$TORCH_HOME/hub/checkpoints/`` (default ``~/.cache/torch/hub/checkpoints/``). A missing file is
detected *before* any download is attempted and reported with that path. ``pretrained_backbone: false``
uses a random backbone: plumbing tests only, the values mean nothing.

Inputs are what BasicSR's validation passes (``img``, ``img2``: ``H x W x C`` BGR arrays from
``tensor2img``; 8- or 16-bit integers are divided by their dtype's maximum, floats are taken as [0, 1]);
grayscale images are repeated to three channels. One LPIPS network is cached per (net, backbone, device).
"""

from __future__ import annotations

import os
import warnings
from typing import Dict, Optional, Tuple

import numpy as np
from basicsr.utils.registry import METRIC_REGISTRY

import mpt_plugin.compat  # noqa: F401  (before any basicsr import)

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


def get_lpips_net(net: str = 'alex', pretrained_backbone: bool = True, device: str = 'cpu'):
    """The cached ``lpips.LPIPS`` network for (net, backbone, device); raises if the backbone file is missing."""
    key = (net, bool(pretrained_backbone), str(device))
    if key not in _NETS:
        if pretrained_backbone:
            path = backbone_checkpoint(net)
            if not os.path.isfile(path):
                raise FileNotFoundError(
                    f'LPIPS ({net}) needs the ImageNet backbone weights {os.path.basename(path)!r}, which are not '
                    f'available offline. Place that file at {path} (i.e. $TORCH_HOME/hub/checkpoints/), or set '
                    f'pretrained_backbone: false for plumbing tests only (random backbone, meaningless values).')
        import lpips

        with warnings.catch_warnings():  # lpips 0.1.4 uses torchvision's deprecated `pretrained=` argument
            warnings.filterwarnings('ignore', category=UserWarning, module='torchvision')
            _NETS[key] = lpips.LPIPS(net=net, pnet_rand=not pretrained_backbone, verbose=False).to(device).eval()
    return _NETS[key]


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
