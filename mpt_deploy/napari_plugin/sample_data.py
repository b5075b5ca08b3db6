"""Sample data of the napari plugin: blurry/sharp pairs to try the **Deblur** widget with one click.

Both are made here, from nothing downloaded: a 16-bit widefield image of the 100x/1.4 oil objective of
``docs/guides/synthetic_data.md`` (0.52 um emission, 0.065 um pixels, 0.6 um out of focus, exact defocus phase,
:func:`mpt_data.psf.physical_widefield_psf`), with shot noise and a camera offset:

* ``cell``: scikit-image's ``cell.png`` (a light-microscopy image shipped in its wheel, public domain);
* ``fluorescence``: a procedural fluorescence-like scene (:mod:`mpt_data.scenes`, seed 7).
"""

from __future__ import annotations

from typing import List, Tuple

import numpy as np

OPTICS = {'na': 1.4, 'immersion_index': 1.518, 'wavelength_um': 0.52, 'pixel_size_um': 0.065, 'defocus_um': 0.6}
PHOTONS, OFFSET = 2000.0, 100  # photo-electrons at white; camera offset in counts
LayerData = Tuple[np.ndarray, dict, str]


def blurred_pair(sharp: np.ndarray, name: str, seed: int = 0) -> List[LayerData]:
    """``[blurry, sharp]`` uint16 layers of ``sharp`` (float in [0, 1]) through :data:`OPTICS`."""
    import cv2

    from mpt_data.noise import poisson_gaussian
    from mpt_data.psf import physical_widefield_psf

    psf = physical_widefield_psf(**OPTICS)
    blurred = np.maximum(cv2.filter2D(sharp.astype(np.float32), -1, psf, borderType=cv2.BORDER_REFLECT_101), 0)
    noisy = poisson_gaussian(blurred, PHOTONS, 0.002, np.random.default_rng(seed))
    scale = 60000.0

    def counts(img: np.ndarray) -> np.ndarray:
        return np.clip(np.rint(OFFSET + img * scale), 0, 65535).astype(np.uint16)

    meta = {'optics': dict(OPTICS), 'source': name}
    pixel = OPTICS['pixel_size_um']
    return [(counts(noisy), {'name': f'{name} (blurry)', 'scale': (pixel, pixel), 'metadata': meta}, 'image'),
            (counts(sharp), {'name': f'{name} (sharp)', 'scale': (pixel, pixel), 'metadata': meta,
                             'visible': False}, 'image')]


def cell() -> List[LayerData]:
    """scikit-image's ``cell.png``, defocused (napari sample ``mpt-basicsr:cell``)."""
    from skimage import data

    return blurred_pair(data.cell().astype(np.float32) / 255.0, 'cell')


def fluorescence() -> List[LayerData]:
    """A procedural fluorescence-like scene, defocused (napari sample ``mpt-basicsr:fluorescence``)."""
    from mpt_data.scenes import make_scene

    return blurred_pair(make_scene(np.random.default_rng(7), (384, 384), 1)[:, :, 0], 'fluorescence')
