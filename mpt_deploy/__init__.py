"""Deployment: apply trained networks to image files.

``model_loading`` (option file -> network, checkpoints, the intensity map), ``inference`` (planes and stacks through
the network, tiled by ``tiling``), ``deblur`` (the ``mpt-deblur`` command: files, ``stacks``, ``safe_output``),
``starter_models`` (the shipped models), ``authors_checkpoint`` (the authors' released weights),
``bioimageio_export`` / ``bioimageio_model`` / ``model_card`` (bioimage.io packages).
"""
