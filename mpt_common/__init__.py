"""Foundations shared by every layer of the plugin; this package imports no other project package.

* :mod:`~mpt_common.basicsr_compat`: the torchvision shim that lets BasicSR 1.4.2 import (imported before any
  ``basicsr`` import by every package that registers in BasicSR);
* :mod:`~mpt_common.checkpoint`: checkpoints loaded as data (``weights_only``), finiteness checks;
* :mod:`~mpt_common.option_file`: the safe YAML loader for option files;
* :mod:`~mpt_common.atomic`: atomic, fsync-ed file writes (checkpoints, deblurred images);
* :mod:`~mpt_common.tiling`: inference in blended tiles, the tile size from free memory (``mpt-deblur``, the
  napari widget, validation and ``mpt-test``);
* :mod:`~mpt_common.malloc_reuse`: glibc setting that keeps freed CPU tensor memory in the process.
"""
