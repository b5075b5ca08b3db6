"""Deblurring arrays with a loaded network: colour planes, stacks, tiles, the intensity map and its inverse.

:func:`deblur_plane` deblurs one ``H x W x C`` plane (each network input mapped by the normalisation the network
was trained with, computed from that input alone, and mapped back to the input's units and dtype);
:func:`deblur_image` every plane of a file read by :mod:`mpt_deploy.stacks`; :func:`channel_groups` decides how
a plane's colour channels meet the network's input channels (``--channels``). ``mpt-deblur``
(:mod:`mpt_deploy.deblur`) adds files, folders and safe output around it.
"""

from __future__ import annotations

from typing import Callable, Dict, Optional, Tuple

import numpy as np

CHANNEL_POLICIES = ('auto', 'per-channel', 'replicate', 'strict')
CLIP_POLICIES = ('dtype', 'none')  # integer outputs clipped to the dtype's range; or float32, unclipped


def clip_report(clipped: Dict[str, int], dtype: np.dtype, size: int, note: str = '') -> str:
    """``'<low> value(s) clipped to <min>, <high> to <max> (<share> % of the output<note>)'`` for the counts of
    :func:`deblur_plane`'s ``clipped``; ``''`` when nothing was clipped."""
    if not (clipped.get('low') or clipped.get('high')):
        return ''
    info = np.iinfo(dtype)
    share = 100.0 * (clipped['low'] + clipped['high']) / size
    return (f'{clipped["low"]} value(s) clipped to {info.min}, {clipped["high"]} to {info.max} ({share:.3g} % of the '
            f'output{note})')


class DeblurError(ValueError):
    """One image cannot be deblurred; the message names the file and the reason."""


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


def network_inputs(image, in_chans: Optional[int], policy: str = 'auto') -> int:
    """How many network inputs :func:`deblur_image` makes of an :class:`~mpt_deploy.stacks.ImageFile`: planes times
    channel groups (an RGB plane is one input to an RGB network, three to a grayscale one): the progress unit."""
    from mpt_deploy.stacks import colour_axis, planes

    flat, _ = planes(image.data, image.axes, colour_axis(image.axes, image.data.shape, in_chans))
    colour = flat[0][:, :, :3] if flat.shape[3] == 4 else flat[0]
    groups, _ = channel_groups(colour, in_chans, policy, image.path)
    return flat.shape[0] * len(groups)


def deblur_plane(net, plane: np.ndarray, path: str, norm, in_chans: Optional[int] = None, policy: str = 'auto',
                 tile: int = 512, overlap: int = 32, context: int = 32, device: str = 'cpu',
                 progress: Optional[Callable[[int], None]] = None, clip: str = 'dtype',
                 clipped: Optional[Dict[str, int]] = None, batch: int = 1) -> np.ndarray:
    """Deblur one ``H x W x C`` plane (alpha, the 4th of 4 channels, passed through); same shape and dtype out.

    Each network input gets the map ``norm`` computes from it alone; the output is mapped back by its inverse.
    ``clip`` (:data:`CLIP_POLICIES`): ``dtype`` rounds integer outputs and clips them to the dtype's range (the
    clipped values are counted in ``clipped``); ``none`` returns float32 in the input's units, unclipped. ``tile``,
    ``overlap``, ``context``, ``batch``: :func:`mpt_common.tiling.tiled_forward`.
    """
    import torch

    from mpt_common.tiling import tiled_forward

    if clip not in CLIP_POLICIES:
        raise DeblurError(f'clip must be one of {CLIP_POLICIES}, got {clip!r}.')
    out_dtype = np.dtype(np.float32) if clip == 'none' else plane.dtype
    colour, alpha = (plane[:, :, :3], plane[:, :, 3:]) if plane.shape[2] == 4 else (plane, None)
    groups, merge = channel_groups(colour, in_chans, policy, path)
    outs = []
    for group in groups:
        imap = norm.map_for(group, path)
        tensor = torch.from_numpy(np.ascontiguousarray(imap.forward(group).transpose(2, 0, 1)))[None]
        result = tiled_forward(net, tensor, tile=tile, overlap=overlap, context=context, device=torch.device(device),
                               progress=progress, batch=batch)[0].numpy().transpose(1, 2, 0)
        if not np.isfinite(result).all():
            raise DeblurError(f'{path!r}: the network produced NaN or infinite values; nothing was written.')
        outs.append(imap.inverse(result, out_dtype, clipped))
    out = merge(outs).astype(out_dtype)
    if out.shape != colour.shape:
        raise DeblurError(f'{path!r}: the network returned {out.shape[2]} channel(s) for {colour.shape[2]}.')
    return np.concatenate([out, alpha.astype(out_dtype)], axis=2) if alpha is not None else out


def deblur_image(net, image, norm, in_chans: Optional[int] = None, policy: str = 'auto', tile: int = 512,
                 overlap: int = 32, context: int = 32, device: str = 'cpu',
                 progress: Optional[Callable[[int], None]] = None, clip: str = 'dtype',
                 clipped: Optional[Dict[str, int]] = None, batch: int = 1) -> np.ndarray:
    """Deblur every plane of an :class:`~mpt_deploy.stacks.ImageFile`; returns data of the same shape and dtype
    (float32 with ``clip='none'``); see :func:`deblur_plane`."""
    from mpt_deploy.stacks import colour_axis, from_planes, planes

    colour = colour_axis(image.axes, image.data.shape, in_chans)
    flat, layout = planes(image.data, image.axes, colour)
    out = np.empty(flat.shape, np.float32 if clip == 'none' else flat.dtype)
    for i in range(flat.shape[0]):
        out[i] = deblur_plane(net, flat[i], image.path, norm, in_chans, policy, tile, overlap, context, device,
                              progress, clip, clipped, batch)
    return from_planes(out, layout)
