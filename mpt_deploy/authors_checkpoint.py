"""The authors' released MPT checkpoints -> ``MPT(compat='authors')`` state dicts (``docs/guides/authors_weights.md``;
their network is ``models/MPT.py`` of PieceZhang/MPT-CataBlur, commit 6b06096).

Their files are bare state dicts saved from ``DDP(DeblurNet)`` / ``DataParallel`` (keys ``module.Network.*``;
copies re-saved by their loaders carry ``Network.``, ``module.`` or no prefix). Every tensor is mapped by name (order
or shape alone is ambiguous), the 42 ``relative_position_index`` buffers are dropped, and the result is checked
key by key and shape by shape against the network it is meant for. Anything unexpected raises
:class:`AuthorsCheckpointError` naming the keys.
"""

from __future__ import annotations

import os
import re
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import torch

from mpt_arch.mpt_arch import PAPER_SCALES
from mpt_common.messages import preview

PREFIXES = ('module.Network.', 'Network.', 'module.')
_LEVEL = {'encoder_level1': 'encoders.0', 'encoder_level2': 'encoders.1', 'encoder_level3': 'encoders.2',
          'latent': 'latent', 'decoder_level1': 'decoders.0', 'decoder_level2': 'decoders.1',
          'decoder_level3': 'decoders.2'}
_TOP = {'inproj.weight': 'conv_in.weight', 'output.weight': 'conv_out.weight',
        'down1_2.body.0.weight': 'downs.0.body.0.weight', 'down2_3.body.0.weight': 'downs.1.body.0.weight',
        'down3_4.body.0.weight': 'downs.2.body.0.weight', 'up2_1.body.0.weight': 'ups.0.body.0.weight',
        'up3_2.body.0.weight': 'ups.1.body.0.weight', 'up4_3.body.0.weight': 'ups.2.body.0.weight'}
# one sub-block: authors' name -> plugin name; two names for one plugin tensor are concatenated in this order
_BLOCK = {
    'norm1.body.weight': 'norm.weight', 'norm1.body.bias': 'norm.bias',
    'attn.temperature.0': 'isca.temperature', 'attn.temperature.1': 'cswa.temperature',
    'attn.q.0.weight': 'isca.qkv.weight', 'attn.kv.0.weight': 'isca.qkv.weight',
    'attn.q_dwconv.0.weight': 'isca.qkv_dw.weight', 'attn.kv_dwconv.0.weight': 'isca.qkv_dw.weight',
    'attn.project_out.0.weight': 'isca.proj.weight',
    'attn.q.1.weight': 'cswa.q.weight', 'attn.q_dwconv.1.weight': 'cswa.q_dw.weight',
    'attn.kv.1.weight': 'cswa.kv.weight', 'attn.kv_dwconv.1.weight': 'cswa.kv_dw.weight',
    'attn.project_out.1.weight': 'cswa.proj.weight', 'attn.downsamp.downproj.weight': 'cswa.down_proj.weight',
    'attn.relative_position_bias_table': 'cswa.rpb_table',
    'norm2.0.body.weight': 'fefn.norm_channel.weight', 'norm2.0.body.bias': 'fefn.norm_channel.bias',
    'norm2.1.body.weight': 'fefn.norm_spatial.weight', 'norm2.1.body.bias': 'fefn.norm_spatial.bias',
    'ffn.project_in1.weight': 'fefn.channel_in.weight', 'ffn.dwconv1.weight': 'fefn.channel_dw.weight',
    'ffn.project_in2.weight': 'fefn.spatial_in.weight', 'ffn.project_out.weight': 'fefn.proj.weight',
}
_BLOCK_KEY = re.compile(r'^(encoder_level[123]|latent|decoder_level[123])\.(\d+)\.(.+)$')
_DROPPED = 'attn.relative_position_index'


class AuthorsCheckpointError(ValueError):
    """The file is not an authors' MPT checkpoint, or its tensors do not fit ``MPT(compat='authors')``."""


def _listing(keys: Sequence[str]) -> str:
    return preview(sorted(keys), 8)


def unwrap(obj: Any) -> Any:
    """A state dict from a loaded file: the object itself, or its single ``state_dict`` / ``model`` /
    ``params`` / ``params_ema`` entry when it is a wrapper."""
    if isinstance(obj, Mapping):
        for key in ('state_dict', 'model', 'params_ema', 'params'):
            if isinstance(obj.get(key), Mapping) and not any(isinstance(v, torch.Tensor) for v in obj.values()):
                return obj[key]
    return obj


def strip_prefix(sd: Mapping[str, Any]) -> Dict[str, Any]:
    """``sd`` without the longest of ``module.Network.``, ``Network.``, ``module.`` that every key starts with."""
    for prefix in PREFIXES:
        if sd and all(k.startswith(prefix) for k in sd):
            return {k[len(prefix):]: v for k, v in sd.items()}
    return dict(sd)


def is_authors_state_dict(sd: Any) -> bool:
    """True when ``sd`` (a loaded file, possibly wrapped) has the authors' MPT names (``inproj``, ``output``,
    ``encoder_level1.0.attn...`` after prefix stripping)."""
    sd = unwrap(sd)
    if not isinstance(sd, Mapping) or not sd or not all(isinstance(k, str) for k in sd):
        return False
    keys = strip_prefix(sd)
    return 'inproj.weight' in keys and any(k.startswith('encoder_level1.0.attn.') for k in keys)


def detect_network_opt(sd: Mapping[str, torch.Tensor],
                       scales: Optional[Sequence[Sequence[float]]] = None) -> Dict[str, Any]:
    """``network_g`` options of the ``MPT(compat='authors')`` that ``sd`` (prefix-stripped authors' names) fits:
    channels, width, blocks, heads, window and FEFN expansion from the shapes. Which sub-blocks down-sample is
    visible (``downsamp.downproj``) but not by how much, so ``scales`` defaults to the paper's S1..S4 and must
    agree with that pattern."""
    for key in ('inproj.weight', 'output.weight'):
        if key not in sd:
            raise AuthorsCheckpointError(f'not an authors\' MPT checkpoint: no {key!r}')
    inp, outp = sd['inproj.weight'], sd['output.weight']
    dim, in_chans, out_chans = int(inp.shape[0]), int(inp.shape[1]), int(outp.shape[0])
    names = ('encoder_level1', 'encoder_level2', 'encoder_level3', 'latent')
    num_blocks, heads, has_down = [], [], []
    for name in names:
        idx = sorted({int(m.group(2)) for k in sd for m in [_BLOCK_KEY.match(k)] if m and m.group(1) == name})
        if not idx or idx != list(range(len(idx))):
            raise AuthorsCheckpointError(f'authors\' checkpoint: sub-blocks of {name} missing or not numbered '
                                         f'0..n-1 (found {idx})')
        num_blocks.append(len(idx))
        table = f'{name}.0.attn.relative_position_bias_table'
        if table not in sd:
            raise AuthorsCheckpointError(f'authors\' checkpoint: missing key {table!r}')
        heads.append(int(sd[table].shape[1]))
        has_down.append([f'{name}.{j}.attn.downsamp.downproj.weight' in sd for j in idx])
    side = round(int(sd['encoder_level1.0.attn.relative_position_bias_table'].shape[0]) ** 0.5)
    window = (side + 1) // 2
    hidden = int(sd['encoder_level1.0.ffn.project_in1.weight'].shape[0])
    expansion = 2.6 if int(dim * 2.6) == hidden else hidden / dim
    scales = [list(s) for s in (PAPER_SCALES if scales is None else scales)]
    pattern = [[float(v) < 1 for v in s] for s in scales]
    if pattern != has_down:
        raise AuthorsCheckpointError(
            f'authors\' checkpoint: the sub-blocks with a down-sampling projection {has_down} do not match the '
            f'scales {scales}; give the scales it was trained with')
    opt: Dict[str, Any] = {'type': 'MPT', 'compat': 'authors', 'in_chans': in_chans}
    if out_chans != in_chans:
        opt['out_chans'] = out_chans
    if (dim, num_blocks, heads, window, expansion, scales) != (40, [6] * 4, [1, 2, 4, 8], 8, 2.6,
                                                               [list(s) for s in PAPER_SCALES]):
        opt.update(dim=dim, num_blocks=num_blocks, heads=heads, scales=scales, window_size=window,
                   ffn_expansion=expansion)
    return opt


def expected_state_dict(network_opt: Mapping[str, Any]) -> Dict[str, torch.Size]:
    """Parameter names and shapes of ``MPT(**network_opt)`` (built on the meta device: no memory, no init)."""
    from mpt_arch import MPT

    kwargs = {k: v for k, v in network_opt.items() if k != 'type'}
    with torch.device('meta'):
        net = MPT(**kwargs)
    return {k: v.shape for k, v in net.state_dict().items()}


def convert_authors_state_dict(
    sd: Mapping[str, Any], scales: Optional[Sequence[Sequence[float]]] = None,
) -> Tuple[Dict[str, torch.Tensor], Dict[str, Any]]:
    """Authors' state dict (any prefix, possibly wrapped) -> ``(state_dict, network_opt)`` for
    ``MPT(compat='authors')`` (``network_opt`` is the ``network_g`` block). Raises :class:`AuthorsCheckpointError`
    naming the keys for foreign files, missing or extra tensors and shapes that do not fit."""
    sd = unwrap(sd)
    if not is_authors_state_dict(sd):
        sample = _listing(list(sd)[:8]) if isinstance(sd, Mapping) else type(sd).__name__
        raise AuthorsCheckpointError(f'not an authors\' MPT checkpoint (no inproj.weight / encoder_level1.0.attn.* '
                                     f'keys after stripping {", ".join(PREFIXES)}); its keys: {sample}')
    sd = strip_prefix(sd)
    bad = [k for k, v in sd.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise AuthorsCheckpointError(f'authors\' checkpoint: entries that are not tensors: {_listing(bad)}')
    network_opt = detect_network_opt(sd, scales)
    expected = expected_state_dict(network_opt)
    wanted = {target: authors_names(target) for target in expected}
    known = {a for names in wanted.values() for a in names}
    extra = [k for k in sd if k not in known and not k.endswith(_DROPPED)]
    missing = [a for names in wanted.values() for a in names if a not in sd]
    if missing or extra:
        parts = [f'missing key(s) {_listing(missing)}'] if missing else []
        parts += [f'unexpected key(s) {_listing(extra)}'] if extra else []
        raise AuthorsCheckpointError(f'authors\' checkpoint: {"; ".join(parts)}')
    out: Dict[str, torch.Tensor] = {}
    wrong = []
    for target, shape in expected.items():
        tail = int(torch.Size(shape[1:]).numel())
        parts = []
        for name in wanted[target]:  # (C, C, 1, 1) conv -> (C, C) linear, (h, 1, 1) -> (h,), q;kv concatenated
            t = sd[name]
            fits = t.dim() > 0 and t.numel() == t.shape[0] * tail
            parts.append(t.reshape(t.shape[0], *shape[1:]) if fits else t)
        try:
            tensor = torch.cat(parts) if len(parts) > 1 else parts[0]
        except RuntimeError:
            tensor = None
        if tensor is None or tensor.shape != shape:
            got = ', '.join(f'{n} {tuple(sd[n].shape)}' for n in wanted[target])
            wrong.append(f'{got} -> {target} needs {tuple(shape)}')
            continue
        out[target] = tensor.detach().clone()
    if wrong:
        raise AuthorsCheckpointError('authors\' checkpoint: shape(s) that do not fit: ' + '; '.join(wrong))
    return out, network_opt


def authors_names(target: str) -> List[str]:
    """The authors' key(s) (prefix-stripped) that make up the plugin key ``target``, in concatenation order."""
    for authors, plugin in _TOP.items():
        if plugin == target:
            return [authors]
    level, _, rest = target.partition('.blocks.')
    block, _, leaf = rest.partition('.')
    name = next(a for a, p in _LEVEL.items() if p == level)
    return [f'{name}.{block}.{a}' for a, p in _BLOCK.items() if p == leaf]


def load_authors_checkpoint(path: str, scales: Optional[Sequence[Sequence[float]]] = None,
                            ) -> Tuple[Dict[str, torch.Tensor], Dict[str, Any]]:
    """:func:`convert_authors_state_dict` of the file at ``path`` (``torch.load(weights_only=True)``, to CPU)."""
    return convert_authors_state_dict(torch.load(path, map_location='cpu', weights_only=True), scales)


def network_opt_yaml(network_opt: Mapping[str, Any]) -> str:
    """The ``network_g`` block to paste into a BasicSR option file."""
    lines = ['network_g:']
    for key, value in network_opt.items():
        lines.append(f'  {key}: {value}')
    return '\n'.join(lines)


def load_authors_network(path: str, device: str = 'cpu', scales: Optional[Sequence[Sequence[float]]] = None,
                         announce: bool = True) -> Optional[Tuple[torch.nn.Module, Dict[str, Any]]]:
    """``(network, network_opt)`` when ``path`` is an authors' checkpoint: converted on load, strict-loaded into
    ``MPT(compat='authors')`` (in eval mode on ``device``); None for any other file (``mpt-deblur``'s hook)."""
    if not os.path.isfile(path):
        return None  # the caller's own loader reports it
    from mpt_common.checkpoint import check_finite, load_checkpoint

    obj = load_checkpoint(path)  # weights_only=True; a corrupt file is an error naming it
    if not is_authors_state_dict(obj):
        return None
    state, network_opt = convert_authors_state_dict(obj, scales)
    check_finite(state, path)
    from mpt_arch import MPT

    net = MPT(**{k: v for k, v in network_opt.items() if k != 'type'})
    net.load_state_dict(state, strict=True)
    if announce:
        args = ', '.join(f'{k}={v!r}' for k, v in network_opt.items() if k != 'type')
        print(f"{path}: authors' MPT checkpoint, converted on load -> MPT({args})", flush=True)
    return net.to(device).eval(), network_opt
