"""Multi-Pyramid Transformer (MPT) network as a BasicSR architecture (``type: MPT``)."""

try:  # installed plugin: BasicSR 1.4.2 needs the torchvision shim before any basicsr import
    import mpt_common.basicsr_compat  # noqa: F401
except ModuleNotFoundError as err:  # folder dropped into another BasicSR project's archs/ (see README)
    if err.name != 'mpt_common':
        raise

from .mpt_arch import MPT  # noqa: E402

__all__ = ['MPT']
