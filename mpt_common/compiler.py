"""``torch.compile`` as the plugin applies it to a network (``train.compile``, ``mpt-deblur --compile``, the
benchmark's ``+compile`` variants)."""

from __future__ import annotations

from typing import Any

COMPILE_DEFAULTS = {'dynamic': False}
"""Static shapes: MPT's levels run the same layer code at several map sizes, and with automatic dynamic shapes
Inductor (torch 2.14, CPU) fails on the training graph of the paper configuration ("cannot determine truth value of
Relational: 80*s27*s53 < 80", measured with ``python -m tools.benchmark --variants fp32+compile``). One graph per
size avoids it and suits fixed-size training crops and tiles; an option given by the user wins."""


def compile_module(module: Any, **options: Any) -> Any:
    """``module.compile(**options)`` in place over :data:`COMPILE_DEFAULTS` (parameter names and checkpoints
    unchanged); returns ``module``."""
    module.compile(**{**COMPILE_DEFAULTS, **options})
    return module
