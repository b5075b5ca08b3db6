"""Models registered in BasicSR's MODEL_REGISTRY: EFCRModel (L1 + EFCR training, paper Sec. 3.2)."""

import mpt_common.basicsr_compat  # noqa: F401  (before any basicsr import)

from .efcr_model import EFCR_MODES, EFCRModel
from .optimizers import TorchOptimizerMixin, build_torch_optimizer

__all__ = ['EFCR_MODES', 'EFCRModel', 'TorchOptimizerMixin', 'build_torch_optimizer']
