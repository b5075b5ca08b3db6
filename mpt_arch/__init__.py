"""Multi-Pyramid Transformer (MPT) network as a BasicSR architecture (``type: MPT``)."""

try:  # installed plugin: BasicSR 1.4.2 needs the torchvision shim before any basicsr import
    import mpt_plugin.compat  # noqa: F401
except ModuleNotFoundError as err:  # folder dropped into another BasicSR project's archs/ (see README)
    if err.name != 'mpt_plugin':
        raise

from .mpt_arch import MPT  # noqa: E402

__all__ = ['MPT']
