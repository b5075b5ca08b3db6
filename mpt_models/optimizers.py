"""Optimizer construction by ``torch.optim`` class name (the paper trains with AdamW, Sec. 4.1).

BasicSR 1.4.2's ``BaseModel.get_optimizer`` only knows ``Adam``; :class:`TorchOptimizerMixin` replaces it so
``train.optim_g: {type: AdamW, lr: 1.0e-4, betas: [0.9, 0.999], weight_decay: 1.0e-4}`` works, while ``Adam``
and every other ``torch.optim`` optimizer (SGD, RMSprop, ...) keep working with their usual keywords.
"""

from __future__ import annotations

from typing import Any, Iterable

import torch

__all__ = ['TorchOptimizerMixin', 'build_torch_optimizer']


def build_torch_optimizer(optim_type: str, params: Iterable, lr: float, **kwargs: Any) -> torch.optim.Optimizer:
    """Instantiate ``torch.optim.<optim_type>(params, lr=lr, **kwargs)``; YAML lists for ``betas`` become tuples."""
    optim_cls = getattr(torch.optim, str(optim_type), None)
    if not (isinstance(optim_cls, type) and issubclass(optim_cls, torch.optim.Optimizer)):
        raise NotImplementedError(f'optimizer {optim_type!r} is not supported: train.optim_g.type must name a '
                                  'torch.optim optimizer class, e.g. Adam or AdamW')
    if isinstance(kwargs.get('betas'), list):
        kwargs['betas'] = tuple(kwargs['betas'])
    return optim_cls(params, lr=lr, **kwargs)


class TorchOptimizerMixin:
    """Overrides ``BaseModel.get_optimizer`` (put it before the BasicSR model class in the bases)."""

    def get_optimizer(self, optim_type: str, params: Iterable, lr: float, **kwargs: Any) -> torch.optim.Optimizer:
        return build_torch_optimizer(optim_type, params, lr, **kwargs)
