"""Deployment: apply trained networks to image files (``mpt-deblur``, tiled inference, checkpoint loading)."""
