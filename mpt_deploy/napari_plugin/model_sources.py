"""The models the napari widget offers, each loaded into one interface that deblurs a layer as ``mpt-deblur`` does.

Sources (:data:`SOURCES`):

* ``starter``: the shipped starter models (:mod:`mpt_deploy.starter_models`); ``auto`` as ``mpt-deblur`` (the
  gray model, per colour channel on RGB layers);
* ``options + weights``: a BasicSR option file and a checkpoint (``mpt-deblur -opt ... -w ...``);
* ``model folder``: ``model.yml`` + ``model.pth`` as ``mpt-finetune`` writes them;
* ``bioimage.io package``: a ``.zip`` exported by ``mpt-export-bioimageio`` (its ``pytorch_state_dict`` weights,
  normalisation and tiling built in).

Network sources run :func:`mpt_deploy.inference.deblur_image`, the very function of ``mpt-deblur``, so a layer and
the same data in a file give the same numbers. Qt-free: the widget (:mod:`.widget`) runs :meth:`LoadedModel.deblur`
in a worker thread.
"""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass
from typing import Any, Callable, Dict, Optional, Tuple, Union

import numpy as np

SOURCES = ('starter', 'options + weights', 'model folder', 'bioimage.io package')
STACK_LETTERS = 'ZTQPONMLKJ'  # names of a layer's leading (stack) axes; never C or S (colour)
OVERLAP, CONTEXT = 32, 32  # mpt-deblur's defaults
Tile = Union[int, str, Tuple[int, int]]  # a --tile value, or the (tile, batch) it resolved to


class ModelSourceError(ValueError):
    """A model choice that cannot be loaded; the message names the file or setting."""


class DeblurCancelled(Exception):
    """The user pressed Cancel; nothing is added to the viewer."""


@dataclass(frozen=True)
class ModelSpec:
    """What the user picked: ``source`` and the paths it needs."""

    source: str = 'starter'
    starter: str = 'auto'
    options: Optional[str] = None
    weights: Optional[str] = None
    folder: Optional[str] = None
    package: Optional[str] = None

    def check(self) -> ModelSpec:
        """Raise :class:`ModelSourceError` naming a missing setting or file, before any loading."""
        if self.source not in SOURCES:
            raise ModelSourceError(f'Unknown model source {self.source!r}; choose from {SOURCES}.')
        need = {'starter': {}, 'options + weights': {'option file': self.options, 'weights': self.weights},
                'model folder': {'model folder': self.folder},
                'bioimage.io package': {'bioimage.io package': self.package}}[self.source]
        for what, path in need.items():
            if not path:
                raise ModelSourceError(f'Choose a {what} for the model source {self.source!r}.')
            exists = os.path.isdir(path) if what == 'model folder' else os.path.isfile(path)
            if not exists:
                raise ModelSourceError(f'The {what} {path!r} does not exist.')
        if self.source == 'model folder':
            for name in ('model.yml', 'model.pth'):
                if not os.path.isfile(os.path.join(self.folder, name)):
                    raise ModelSourceError(f'Model folder {self.folder!r} has no {name} (mpt-finetune writes '
                                           'model.yml and model.pth).')
        return self


def layer_image(data: Any, rgb: bool, name: str):
    """A napari image layer's data as an :class:`~mpt_deploy.stacks.ImageFile`: ``...YX`` (``...YXS`` for RGB),
    leading axes named from :data:`STACK_LETTERS` (deblurred plane by plane, as a TIFF stack by ``mpt-deblur``)."""
    from mpt_deploy.stacks import ImageFile

    array = np.asarray(data)
    lead = array.ndim - (3 if rgb else 2)
    if lead < 0 or lead > len(STACK_LETTERS):
        raise ModelSourceError(f'Layer {name!r} has shape {array.shape}; expected (..., y, x) or (..., y, x, rgb).')
    axes = STACK_LETTERS[:lead][::-1] + 'YX' + ('S' if rgb else '')
    return ImageFile(name, array, axes, False)


class LoadedModel:
    """A model ready to deblur layers (:meth:`deblur`), on ``device``."""

    def __init__(self, spec: ModelSpec, device: str = 'cpu') -> None:
        self.spec = spec.check()
        self.device = device
        self._net: Optional[Tuple[Any, Dict[str, Any], Any]] = None
        self._starters = None
        self._package = None
        if spec.source == 'starter':
            from mpt_deploy.starter_models import StarterNetworks

            self._starters = StarterNetworks(device)
        elif spec.source == 'bioimage.io package':
            self._package = load_package(spec.package, device)
        else:
            from mpt_deploy.model_loading import inference_normalization, load_weights

            opt, weights = ((spec.options, spec.weights) if spec.source == 'options + weights' else
                            (os.path.join(spec.folder, 'model.yml'), os.path.join(spec.folder, 'model.pth')))
            net, network_opt = load_weights(weights, opt, device=device)
            self._net = (net, network_opt, inference_normalization(opt))

    def _network_for(self, image) -> Tuple[Any, Dict[str, Any], Any]:
        if self._starters is None:
            return self._net
        from mpt_deploy.stacks import colour_axis

        colour = colour_axis(image.axes, image.data.shape, None)
        channels = image.data.shape[image.axes.index(colour)] if colour else 1
        net, network_opt, norm, _ = self._starters.for_channels(
            channels, image.path, None if self.spec.starter == 'auto' else self.spec.starter)
        return net, network_opt, norm

    def _tiling(self, net, image, tile: Tile) -> Tuple[int, int]:
        """``(tile, batch)`` as ``mpt-deblur`` resolves ``--tile`` (``'auto'``: from the free memory); a resolved
        pair is returned as it is."""
        import torch

        from mpt_common.tiling import resolve_tile

        if isinstance(tile, tuple):
            return tile
        h, w = image.plane_size
        return resolve_tile(net, tile, h, w, torch.device(self.device), OVERLAP, CONTEXT)

    def tiling(self, image, tile: Union[int, str]) -> Tile:
        """``tile`` resolved once for :meth:`work` and :meth:`deblur` of one run (free memory read once, so the
        progress total matches the tiles run); a bioimage.io package keeps ``tile`` as given."""
        if self._package is not None:
            return tile
        return self._tiling(self._network_for(image)[0], image, tile)

    def work(self, image, tile: Tile) -> int:
        """Units of progress :meth:`deblur` reports: network calls (tiles times network inputs), or planes."""
        from mpt_common.tiling import count_tiles
        from mpt_deploy.inference import network_inputs
        from mpt_deploy.model_loading import network_in_chans
        from mpt_deploy.stacks import colour_axis, planes

        if self._package is not None:
            flat, _ = planes(image.data, image.axes, colour_axis(image.axes, image.data.shape, None))
            return flat.shape[0]
        net, network_opt, _ = self._network_for(image)
        tile, _ = self._tiling(net, image, tile)
        return count_tiles(*image.plane_size, tile, OVERLAP, CONTEXT) * network_inputs(
            image, network_in_chans(network_opt), 'auto')

    def deblur(self, image, tile: Tile = 'auto', progress: Optional[Callable[[int], None]] = None,
               clipped: Optional[Dict[str, int]] = None) -> np.ndarray:
        """The deblurred data of ``image`` (same shape and dtype); ``tile`` as ``--tile`` or from :meth:`tiling`.
        Integer outputs are rounded and clipped to the dtype's range as ``mpt-deblur`` does, the values clipped
        below and above counted in ``clipped['low']`` / ``clipped['high']`` when given."""
        if self._package is not None:
            return self._package.deblur(image, tile, progress, clipped)
        from mpt_deploy.inference import deblur_image
        from mpt_deploy.model_loading import network_in_chans

        net, network_opt, norm = self._network_for(image)
        tile, batch = self._tiling(net, image, tile)
        return deblur_image(net, image, norm, network_in_chans(network_opt), 'auto', tile, OVERLAP, CONTEXT,
                            self.device, progress, clipped=clipped, batch=batch)


class PackageModel:
    """The ``pytorch_state_dict`` weights of a package written by ``mpt-export-bioimageio``
    (:class:`~mpt_deploy.bioimageio_model.DeployedNet`: normalisation, tiles and inverse inside)."""

    def __init__(self, deployed, channels: int, path: str, device: str = 'cpu') -> None:
        self.deployed, self.channels, self.path, self.device = deployed, channels, path, device

    def deblur(self, image, tile: Union[int, str], progress: Optional[Callable[[int], None]] = None,
               clipped: Optional[Dict[str, int]] = None) -> np.ndarray:
        """Every plane through the package's network; ``tile`` > 0 replaces its tile size (``'auto'`` and 0 keep
        the exported one). Integer outputs are rounded and clipped, counted in ``clipped`` as
        :meth:`LoadedModel.deblur`."""
        import torch

        from mpt_data.normalization import to_dtype
        from mpt_deploy.stacks import colour_axis, from_planes, planes

        colour = colour_axis(image.axes, image.data.shape, self.channels)
        flat, layout = planes(image.data, image.axes, colour)
        if flat.shape[3] != self.channels:
            raise ModelSourceError(f'{self.path!r} takes {self.channels} channel(s); layer {image.path!r} has '
                                   f'{flat.shape[3]} per plane.')
        if isinstance(tile, int) and tile > 0:
            self.deployed.tile = tile
        out = np.empty(flat.shape, np.float32)
        for i in range(flat.shape[0]):
            x = torch.from_numpy(np.ascontiguousarray(flat[i].transpose(2, 0, 1), np.float32))[None]
            with torch.no_grad():
                out[i] = self.deployed(x.to(self.device))[0].cpu().numpy().transpose(1, 2, 0)
            if progress is not None:
                progress(1)
        if not np.isfinite(out).all():
            raise ModelSourceError(f'{self.path!r} produced NaN or infinite values for layer {image.path!r}.')
        return from_planes(to_dtype(out, image.data.dtype, clipped), layout)


def load_package(path: str, device: str = 'cpu') -> PackageModel:
    """A bioimage.io ``.zip`` of this package as a :class:`PackageModel` (its rdf's architecture and state dict)."""
    import io

    import torch
    import yaml

    from mpt_common.option_file import parse_option_text
    from mpt_deploy.bioimageio_model import build_deployed_net

    try:
        with zipfile.ZipFile(path) as archive:
            rdf = parse_option_text(archive.read('rdf.yaml').decode('utf-8'), f'{path}:rdf.yaml')
            weights = rdf['weights']['pytorch_state_dict']
            arch = weights['architecture']
            if arch.get('callable') != 'build_deployed_net':
                raise ModelSourceError(f'{path!r} was not exported by mpt-export-bioimageio (its architecture is '
                                       f'{arch.get("callable")!r}).')
            state = torch.load(io.BytesIO(archive.read(os.path.basename(weights['source']))), map_location='cpu',
                               weights_only=True)
    except (zipfile.BadZipFile, KeyError, UnicodeDecodeError, yaml.YAMLError) as err:
        raise ModelSourceError(f'{path!r} is not a bioimage.io package of this plugin: {err}') from None
    deployed = build_deployed_net(**arch['kwargs'])
    deployed.load_state_dict(state)
    channels = len(rdf['inputs'][0]['axes'][1]['channel_names'])
    return PackageModel(deployed.to(device).eval(), channels, path, device)
