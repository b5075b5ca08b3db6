"""The shipped starter models: small MPTs trained on CPU on synthetic defocus (``docs/guides/starter_models.md``).

Each model is four package files in ``mpt_deploy/starter_models/``: ``MPT_starter_<kind>.pth`` (``{'params':
state dict}``), ``MPT_starter_<kind>.yml`` (the option file it was trained with: network and normalisation),
``MPT_starter_<kind>.json`` (the weights' SHA-256 and the output of a fixed input) and ``MPT_starter_<kind>.md``
(its model card). ``tools/train_starter_models.py`` writes all four.

``mpt-deblur -i IN -o OUT`` without ``-w``/``-opt`` deblurs, per image, with :func:`deblur_kind`: the ``gray``
model, on each colour channel alone for RGB (and RGBA, alpha kept) images, since it beat the RGB model on the tune
images (``docs/guides/starter_models.md``); ``--starter rgb`` applies the RGB model; ``mpt-finetune`` starts from the
same default. :func:`select_kind` is the model whose channel count fits (``--starter rgb``'s network for RGB).
"""

from __future__ import annotations

import hashlib
import os.path as osp
from typing import Dict, NamedTuple, Optional

STARTER_DIR = osp.join(osp.dirname(osp.abspath(__file__)), 'starter_models')
KINDS = ('gray', 'rgb')
CHANNELS = {'gray': 1, 'rgb': 3}


class StarterModel(NamedTuple):
    """Paths of one shipped starter model."""

    kind: str
    weights: str
    options: str
    record: str
    card: str


class StarterModelError(FileNotFoundError):
    """A starter model is missing from this installation (or its kind is unknown)."""


def starter_model(kind: str, folder: str = STARTER_DIR) -> StarterModel:
    """The files of starter model ``kind`` (``gray`` or ``rgb``); raises if any is missing."""
    if kind not in KINDS:
        raise StarterModelError(f'Unknown starter model {kind!r}; choose from {KINDS}.')
    stem = osp.join(folder, f'MPT_starter_{kind}')
    model = StarterModel(kind, stem + '.pth', stem + '.yml', stem + '.json', stem + '.md')
    missing = [p for p in model[1:] if not osp.isfile(p)]
    if missing:
        raise StarterModelError(f'Starter model {kind!r} is incomplete in {folder!r} (missing {missing}); '
                                'reinstall the package or rebuild it with tools/train_starter_models.py.')
    return model


def select_kind(channels: int, path: str = 'image') -> str:
    """The starter model for a plane of ``channels`` colour channels (1 -> gray, 3 or 4 -> rgb)."""
    if channels == 1:
        return 'gray'
    if channels in (3, 4):
        return 'rgb'
    raise ValueError(f'{path!r}: no starter model for planes of {channels} channels (only 1, or 3/4 for '
                     'RGB/RGBA); give a network with -w/-opt, or --axes so that the channel axis is a stack axis.')


# the starter model mpt-deblur applies to images that select_kind maps to each kind: RGB images get the gray model
# per channel, chosen on the tune images (docs/guides/starter_models.md, "Which model deblurs RGB images")
DEBLUR_DEFAULT = {'gray': 'gray', 'rgb': 'gray'}


def deblur_kind(channels: int, path: str = 'image') -> str:
    """The starter model ``mpt-deblur`` applies by default to planes of ``channels`` colour channels."""
    return DEBLUR_DEFAULT[select_kind(channels, path)]


def sha256(path: str) -> str:
    """Hex SHA-256 of a file (the model cards record it for the weights)."""
    digest = hashlib.sha256()
    with open(path, 'rb') as fin:
        for block in iter(lambda: fin.read(1 << 20), b''):
            digest.update(block)
    return digest.hexdigest()


class StarterNetworks:
    """Loads each starter model once, on first use (``mpt-deblur``'s default)."""

    def __init__(self, device: str = 'cpu', folder: str = STARTER_DIR) -> None:
        self.device = device
        self.folder = folder
        self._loaded: Dict[str, tuple] = {}

    def get(self, kind: str):
        """``(network, network options, normalisation, model)`` of starter model ``kind``."""
        if kind not in self._loaded:
            from mpt_deploy.model_loading import inference_normalization, load_network, network_options

            model = starter_model(kind, self.folder)
            network_opt = network_options(model.options)
            net = load_network(network_opt, model.weights, 'params', self.device)
            self._loaded[kind] = (net, network_opt, inference_normalization(model.options), model)
        return self._loaded[kind]

    def for_channels(self, channels: int, path: str, kind: Optional[str] = None):
        """:meth:`get` of the model ``kind``, or of :func:`deblur_kind` for ``channels``."""
        return self.get(kind or deblur_kind(channels, path))
