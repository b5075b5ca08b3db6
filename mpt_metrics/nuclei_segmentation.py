"""Nuclei instance segmenters for the BBBC006 cell-detection check (paper Sec. 4.3, Table 6).

The paper segments nuclei with StarDist. Two interchangeable segmenters are offered, each a callable
``image (H x W, any dtype) -> int32 instance labels``:

- ``ClassicalNucleiSegmenter`` (default, scikit-image/scipy only): percentile normalisation, Gaussian smoothing,
  Otsu threshold, hole filling and small-object removal, then a distance-transform watershed seeded by
  ``peak_local_max`` so touching nuclei are split.
- ``StarDistSegmenter``: StarDist2D with a pretrained model (default ``2D_versatile_fluo``). StarDist and
  TensorFlow are optional and imported on first use; ``from_pretrained`` downloads weights unless they are
  already cached (``~/.keras/models/StarDist2D/<name>/``), so offline machines need the cache filled beforehand.

Heavy imports happen inside the functions (this package auto-imports every module).
"""

from typing import Callable, Optional

import numpy as np

Segmenter = Callable[[np.ndarray], np.ndarray]


def to_gray(image: np.ndarray, name: str = 'image') -> np.ndarray:
    """2-D float64 view of an image; a 3-channel image with equal channels (saved grey) is reduced to one."""
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[2] in (3, 4):
        rgb = image[..., :3]
        if not (np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2])):
            raise ValueError(f'{name} is colour (shape {image.shape}); nuclei segmentation needs one channel')
        image = rgb[..., 0]
    elif image.ndim == 3 and image.shape[2] == 1:
        image = image[..., 0]
    if image.ndim != 2:
        raise ValueError(f'{name} must be a 2-D grey image, got shape {image.shape}')
    return image.astype(np.float64)


def normalize_percentile(image: np.ndarray, low: float = 1.0, high: float = 99.8) -> np.ndarray:
    """Map the [low, high] percentile range to [0, 1] (as StarDist/CSBDeep do), clipping outside values.

    Makes the segmenters independent of bit depth (16-bit TIFF inputs, 8-bit PNG network outputs).
    """
    image = to_gray(image)
    lo, hi = np.percentile(image, (low, high))
    if hi <= lo:
        return np.zeros_like(image)
    return np.clip((image - lo) / (hi - lo), 0.0, 1.0)


def remove_small(labels: np.ndarray, min_size: int) -> np.ndarray:
    """Zero every labelled object with fewer than ``min_size`` pixels."""
    if min_size <= 1 or labels.max() == 0:
        return labels
    sizes = np.bincount(labels.ravel())
    small = sizes < min_size
    small[0] = False
    return np.where(small[labels], 0, labels)


class ClassicalNucleiSegmenter:
    """Otsu threshold + distance-transform watershed (needs only scikit-image and scipy).

    Args:
        sigma: Gaussian smoothing (pixels) before thresholding.
        min_size: objects smaller than this many pixels are dropped (noise, debris).
        min_distance: minimum distance (pixels) between watershed seeds; about a nucleus radius.
        threshold: fixed threshold on the normalised [0, 1] image instead of Otsu's.
    """

    def __init__(self, sigma: float = 1.0, min_size: int = 30, min_distance: int = 5,
                 threshold: Optional[float] = None):
        if min_distance < 1:
            raise ValueError(f'min_distance must be >= 1, got {min_distance}')
        self.sigma, self.min_size, self.min_distance, self.threshold = sigma, min_size, min_distance, threshold

    def __call__(self, image: np.ndarray) -> np.ndarray:
        from scipy import ndimage as ndi
        from skimage.feature import peak_local_max
        from skimage.filters import gaussian, threshold_otsu
        from skimage.segmentation import watershed

        image = normalize_percentile(image)
        smooth = gaussian(image, sigma=self.sigma) if self.sigma > 0 else image
        if smooth.max() <= smooth.min():
            return np.zeros(image.shape, np.int32)
        level = threshold_otsu(smooth) if self.threshold is None else self.threshold
        mask = ndi.binary_fill_holes(smooth > level)
        components, _ = ndi.label(mask)
        components = remove_small(components, self.min_size)
        mask = components > 0
        if not mask.any():
            return np.zeros(image.shape, np.int32)
        distance = ndi.distance_transform_edt(mask)
        peaks = peak_local_max(distance, min_distance=self.min_distance, labels=components, exclude_border=False)
        markers = np.zeros(image.shape, np.int32)
        markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
        labels = watershed(-distance, markers, mask=mask)
        return remove_small(labels.astype(np.int32), self.min_size)


class StarDistSegmenter:
    """StarDist2D pretrained model (the paper's segmenter); StarDist/TensorFlow imported on first call."""

    def __init__(self, model_name: str = '2D_versatile_fluo', prob_thresh: Optional[float] = None,
                 nms_thresh: Optional[float] = None):
        self.model_name, self.prob_thresh, self.nms_thresh = model_name, prob_thresh, nms_thresh
        self._model = None

    def _load(self):
        try:
            from stardist.models import StarDist2D
        except ImportError as err:
            raise ImportError(
                'the StarDist segmenter needs the optional packages stardist and tensorflow '
                '(pip install stardist tensorflow); or use the classical segmenter') from err
        try:
            return StarDist2D.from_pretrained(self.model_name)
        except Exception as err:
            raise RuntimeError(
                f'could not load the pretrained StarDist model {self.model_name!r}; it is downloaded on first use, '
                'so on an offline machine copy it into ~/.keras/models/StarDist2D/ beforehand') from err

    def __call__(self, image: np.ndarray) -> np.ndarray:
        if self._model is None:
            self._model = self._load()
            if self._model is None:
                raise RuntimeError(f'unknown StarDist pretrained model {self.model_name!r}')
        labels, _ = self._model.predict_instances(
            normalize_percentile(image).astype(np.float32), prob_thresh=self.prob_thresh, nms_thresh=self.nms_thresh)
        return labels.astype(np.int32)


def build_segmenter(name: str, **kwargs) -> Segmenter:
    """``'classical'`` or ``'stardist'`` segmenter; kwargs go to its constructor."""
    segmenters = {'classical': ClassicalNucleiSegmenter, 'stardist': StarDistSegmenter}
    if name not in segmenters:
        raise ValueError(f'unknown segmenter {name!r}; choose one of {sorted(segmenters)}')
    return segmenters[name](**kwargs)
