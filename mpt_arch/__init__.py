"""Multi-Pyramid Transformer (MPT) network as a BasicSR architecture (``type: MPT``)."""

import mpt_plugin.compat  # noqa: F401  (before any basicsr import)

from .mpt_arch import MPT  # noqa: E402

__all__ = ['MPT']
