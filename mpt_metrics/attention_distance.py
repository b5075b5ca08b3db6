"""Normalised average attention distance (paper Sec. 1, Fig. 1): how far, in pixels, attention reaches.

For one attention map with weights A[q, k] (softmax over keys k), query positions p_q and key positions p_k:

    d = mean over queries q of  sum_k A[q, k] * ||p_q - p_k||_2

averaged over heads and images, then divided by a normaliser so maps of any size are comparable. The paper
says "attention intensity weighted by pixel distance then normalized by image size" without naming the size;
here the normaliser is the diagonal sqrt(H'^2 + W'^2) of the map the attention layer works on (its input's
full-resolution frame), so every value lies in [0, 1). Layers of a U-shaped network see maps of different
sizes; each layer is normalised by its own map diagonal before layers are averaged.

``model_attention_distance`` applies the measure to every attention module exposing the analysis hook of
``mpt_arch`` CSWA (attribute ``keep_attention``; see mpt_arch/cswa.py for the stored tensors).
Torch is imported lazily (this package auto-imports every module).
"""

import math
from typing import TYPE_CHECKING, Dict, Iterable, List, Optional, Tuple

if TYPE_CHECKING:
    import torch
    from torch import nn


def mean_attention_distance(attention: 'torch.Tensor', query_xy: 'torch.Tensor', key_xy: 'torch.Tensor',
                            query_valid: Optional['torch.Tensor'] = None) -> 'torch.Tensor':
    """Attention-weighted query-key distance averaged over queries (and every leading axis).

    Args:
        attention: ``(..., Lq, Lk)`` non-negative weights (rows normally sum to 1).
        query_xy: ``(..., Lq, 2)`` query positions, broadcastable against ``attention``'s leading axes.
        key_xy: ``(..., Lk, 2)`` key positions, broadcastable likewise.
        query_valid: optional ``(..., Lq)`` bool mask; False queries (e.g. padding) are left out of the mean.

    Returns:
        0-d tensor, in pixels.
    """
    import torch

    if attention.dim() < 2 or query_xy.shape[-1] != 2 or key_xy.shape[-1] != 2:
        raise ValueError(f'expected attention (..., Lq, Lk) and positions (..., L, 2), got {tuple(attention.shape)}, '
                         f'{tuple(query_xy.shape)}, {tuple(key_xy.shape)}')
    if query_xy.shape[-2] != attention.shape[-2] or key_xy.shape[-2] != attention.shape[-1]:
        raise ValueError(f'attention {tuple(attention.shape)} does not match {query_xy.shape[-2]} queries and '
                         f'{key_xy.shape[-2]} keys')
    if bool((attention < 0).any()):
        raise ValueError('attention weights must be non-negative (pass softmax weights, not logits)')
    attention = attention.float()
    distance = (query_xy.float().unsqueeze(-2) - key_xy.float().unsqueeze(-3)).norm(dim=-1)  # ..., Lq, Lk
    per_query = (attention * distance).sum(-1)  # ..., Lq
    if query_valid is None:
        return per_query.mean()
    weight = torch.broadcast_to(query_valid.to(per_query.dtype), per_query.shape)
    if not bool(weight.any()):
        raise ValueError('no valid query to average over')
    return (per_query * weight).sum() / weight.sum()


def normalised_attention_distance(attention: 'torch.Tensor', query_xy: 'torch.Tensor', key_xy: 'torch.Tensor',
                                  map_size: Tuple[int, int],
                                  query_valid: Optional['torch.Tensor'] = None) -> float:
    """``mean_attention_distance`` divided by the map diagonal sqrt(H'^2 + W'^2); a float in [0, 1)."""
    height, width = map_size
    if height < 1 or width < 1:
        raise ValueError(f'map size must be positive, got {map_size}')
    return float(mean_attention_distance(attention, query_xy, key_xy, query_valid)) / math.hypot(height, width)


def attention_modules(model: 'nn.Module') -> List[Tuple[str, 'nn.Module']]:
    """(name, module) of every attention module exposing the ``keep_attention`` analysis hook (MPT's CSWA)."""
    found = [(name, m) for name, m in model.named_modules()
             if hasattr(m, 'keep_attention') or 'CSWA' in type(m).__name__]
    if not found:
        raise ValueError(f'{type(model).__name__} has no attention module with a keep_attention hook (MPT CSWA)')
    return found


def _layer_value(module: 'nn.Module') -> float:
    """Normalised distance of one CSWA call from its stored hook tensors.

    Layout of mpt_arch CSWA: attention ``(B, nR, heads, Lq, Lk)``, query/key coordinates ``(nR, L, 2)``,
    query validity ``(nR, Lq)``: insert a heads axis so positions broadcast against the attention.
    """
    attention = module.last_attention
    if attention is None or module.last_query_xy is None or module.last_map_size is None:
        raise RuntimeError(f'{type(module).__name__} stored no attention (is keep_attention honoured?)')
    query_xy, key_xy = module.last_query_xy, module.last_key_xy
    valid = getattr(module, 'last_query_valid', None)
    extra = attention.dim() - query_xy.dim()  # axes of attention not carried by the coordinates
    if extra > 0 and attention.dim() == 5:  # (B, nR, heads, Lq, Lk) vs (nR, L, 2): heads axis after nR
        query_xy, key_xy = query_xy.unsqueeze(1), key_xy.unsqueeze(1)
        valid = None if valid is None else valid.unsqueeze(1)
    return normalised_attention_distance(attention, query_xy, key_xy, module.last_map_size, valid)


def model_attention_distance(model: 'nn.Module', images: Iterable['torch.Tensor']) -> Dict[str, object]:
    """Normalised average attention distance of a model over images (Fig. 1).

    Every image (``(1, C, H, W)`` tensors) is run through the model with the attention hooks on; each attention
    layer's value is computed right after it runs (so only one layer's weights are held at a time).

    Returns:
        ``{'mean': float, 'per_layer': {name: float}, 'images': int}``; ``mean`` averages layers and images.
    """
    import torch

    modules = attention_modules(model)
    sums = {name: 0.0 for name, _ in modules}
    handles = []

    def make_hook(name):
        def hook(module, _inputs, _output):
            sums[name] += _layer_value(module)
            module.last_attention = None  # free the weights now
        return hook

    previous = {name: module.keep_attention for name, module in modules}
    count = 0
    try:
        for name, module in modules:
            module.keep_attention = True
            handles.append(module.register_forward_hook(make_hook(name)))
        model.eval()
        with torch.no_grad():
            for image in images:
                model(image)
                count += 1
    finally:
        for handle in handles:
            handle.remove()
        for name, module in modules:
            module.keep_attention = previous[name]
            module.last_attention = None
    if count == 0:
        raise ValueError('no images to measure')
    per_layer = {name: total / count for name, total in sums.items()}
    return {'mean': sum(per_layer.values()) / len(per_layer), 'per_layer': per_layer, 'images': count}
