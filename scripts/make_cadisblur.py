"""Synthesise CaDISBlur (Sec. 4.1, Supp. Sec. 6) from CaDIS frames and their class maps.

For every frame two blurry versions simulate two focal planes, using the segmentation mask:

* ``blur_anatomy/<frame>.png``: focal plane on the instruments -> anatomy (everything that is not an instrument)
  blurred (the paper's "ana" rows of Table 7);
* ``blur_instruments/<frame>.png``: focal plane on the anatomy -> instruments blurred ("ins");
* ``sharp/<frame>.png``: the original frame (ground truth).

Blur is a defocus *disk* PSF (``mpt_data.defocus.disk_psf``) with a radius drawn per frame and version from
``--radius`` (default 4-10 px for 960x540 frames). Layers are composited with a feathered matte: the blurred
background is a normalised convolution (no instrument colour bleeds into it) and a blurred foreground is blurred
premultiplied and laid over the background filled behind it, so object borders show neither halo nor hard edge
(``mpt_data.defocus``). Every random draw comes from ``--seed`` and the frame name, so the output does not depend
on processing order. Frames whose instruments (or anatomy) cover less than ``--min-fraction`` of the image are
skipped (all three files), so the three folders stay paired.

Input layout (CaDIS as published): ``<cadis>/VideoNN/Images/<frame>.png`` and ``<cadis>/VideoNN/Labels/<frame>.png``
(class ids). Default instrument ids: 7-35, the instrument classes of CaDIS's 36-class label set
(Grammatikopoulou et al., Medical Image Analysis 2021: 0 pupil, 1 surgical tape, 2 hand, 3 eye retractors, 4 iris,
5 skin, 6 cornea, 7-35 instruments and their handles); override with ``--instrument-ids``. The train/test split is
by video (``--test-videos``, or a seeded ``--test-fraction`` of the videos), so no surgery is in both.

Example::

    python scripts/make_cadisblur.py datasets/CaDIS datasets/CaDISBlur --seed 0
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import os
import os.path as osp
import sys
from typing import Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np
from tqdm import tqdm

from mpt_data.defocus import composite_two_planes

DEFAULT_INSTRUMENT_IDS = tuple(range(7, 36))
VERSIONS = (('blur_anatomy', 'background'), ('blur_instruments', 'foreground'))


def frame_rng(seed: int, name: str) -> np.random.Generator:
    """Random generator that depends only on the seed and the frame name (order independent)."""
    digest = hashlib.sha256(f'{seed}:{name}'.encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], 'little'))


def find_frames(cadis_root: str) -> Dict[str, List[Tuple[str, str]]]:
    """``{video: [(image path, label path), ...]}`` from the published CaDIS layout."""
    if not osp.isdir(cadis_root):
        raise FileNotFoundError(f'CaDIS folder {cadis_root!r} does not exist.')
    videos = {}
    for video in sorted(os.listdir(cadis_root)):
        images = osp.join(cadis_root, video, 'Images')
        labels = osp.join(cadis_root, video, 'Labels')
        if not osp.isdir(images):
            continue
        if not osp.isdir(labels):
            raise FileNotFoundError(f'{video}: {labels!r} is missing (class maps are needed for CaDISBlur).')
        pairs = []
        for name in sorted(os.listdir(images)):
            if name.lower().endswith('.png'):
                label = osp.join(labels, name)
                if not osp.isfile(label):
                    raise FileNotFoundError(f'No class map {label!r} for frame {osp.join(images, name)!r}.')
                pairs.append((osp.join(images, name), label))
        if pairs:
            videos[video] = pairs
    if not videos:
        raise ValueError(f'No CaDIS video (VideoNN/Images/*.png) found in {cadis_root!r}.')
    return videos


def split_videos(videos: Sequence[str], test_videos: Optional[Sequence[str]], test_fraction: float,
                 seed: int) -> Dict[str, str]:
    """``{video: 'train'|'test'}``; explicit ``test_videos`` or a seeded fraction (at least one test video)."""
    videos = sorted(videos)
    if test_videos:
        unknown = set(test_videos) - set(videos)
        if unknown:
            raise ValueError(f'--test-videos {sorted(unknown)} not found among {videos}.')
        test = set(test_videos)
    else:
        order = np.random.default_rng(seed).permutation(len(videos))
        n_test = max(1, int(round(test_fraction * len(videos)))) if len(videos) > 1 else 0
        test = {videos[i] for i in order[:n_test]}
    return {v: ('test' if v in test else 'train') for v in videos}


def synthesize_frame(img: np.ndarray, labels: np.ndarray, instrument_ids: Sequence[int], rng: np.random.Generator,
                     radius_range: Sequence[float], feather: float) -> Dict[str, Tuple[np.ndarray, float]]:
    """The two blurry versions of one 8-bit frame: ``{folder: (uint8 image, radius)}``."""
    mask = np.isin(labels, np.asarray(instrument_ids)).astype(np.float32)
    img_f = img.astype(np.float32) / 255.0
    out = {}
    for folder, blur in VERSIONS:
        radius = float(rng.uniform(radius_range[0], radius_range[1]))
        blurred = composite_two_planes(img_f, mask, radius, blur, feather)
        out[folder] = (np.round(blurred * 255.0).astype(np.uint8), radius)
    return out


def make_cadisblur(cadis_root: str, output: str, seed: int = 0, radius_range: Sequence[float] = (4.0, 10.0),
                   feather: float = 1.0, instrument_ids: Sequence[int] = DEFAULT_INSTRUMENT_IDS,
                   test_videos: Optional[Sequence[str]] = None, test_fraction: float = 0.2,
                   min_fraction: float = 0.005) -> Dict[str, int]:
    """Write ``<output>/<split>/{sharp,blur_anatomy,blur_instruments}`` and ``<output>/params.csv``."""
    if not 0 < radius_range[0] <= radius_range[1]:
        raise ValueError(f'radius range must satisfy 0 < min <= max, got {list(radius_range)}.')
    videos = find_frames(cadis_root)
    splits = split_videos(list(videos), test_videos, test_fraction, seed)
    counts = {'train': 0, 'test': 0, 'skipped': 0}
    os.makedirs(output, exist_ok=True)
    frames = [(video, pair) for video in sorted(videos) for pair in videos[video]]
    with open(osp.join(output, 'params.csv'), 'w', newline='') as fcsv:
        writer = csv.writer(fcsv)
        writer.writerow(['split', 'video', 'frame', 'radius_blur_anatomy', 'radius_blur_instruments',
                         'instrument_fraction'])
        for video, (image_path, label_path) in tqdm(frames, unit='frame', desc='CaDISBlur'):
            img = cv2.imread(image_path, cv2.IMREAD_COLOR)
            if img is None:
                raise ValueError(f'Cannot read CaDIS frame {image_path!r}.')
            labels = cv2.imread(label_path, cv2.IMREAD_UNCHANGED)
            if labels is None:
                raise ValueError(f'Cannot read class map {label_path!r}.')
            if labels.ndim == 3:
                labels = labels[:, :, 0]
            if labels.shape != img.shape[:2]:
                raise ValueError(f'Class map {label_path!r} is {labels.shape[::-1]} but frame {image_path!r} is '
                                 f'{img.shape[1::-1]} (W, H).')
            fraction = float(np.isin(labels, np.asarray(instrument_ids)).mean())
            if not min_fraction <= fraction <= 1 - min_fraction:
                counts['skipped'] += 1
                continue
            name = osp.basename(image_path)
            rng = frame_rng(seed, f'{video}/{name}')
            versions = synthesize_frame(img, labels, instrument_ids, rng, radius_range, feather)
            split = splits[video]
            for folder, image in [('sharp', img)] + [(k, v[0]) for k, v in versions.items()]:
                target = osp.join(output, split, folder, name)
                os.makedirs(osp.dirname(target), exist_ok=True)
                if not cv2.imwrite(target, image):
                    raise OSError(f'Could not write {target!r}.')
            writer.writerow([split, video, name, f"{versions['blur_anatomy'][1]:.4f}",
                             f"{versions['blur_instruments'][1]:.4f}", f'{fraction:.5f}'])
            counts[split] += 1
    return counts


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('cadis', help='CaDIS root holding VideoNN/Images and VideoNN/Labels')
    parser.add_argument('output', help='CaDISBlur output folder')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--radius', type=float, nargs=2, default=[4.0, 10.0], metavar=('MIN', 'MAX'),
                        help='disk PSF radius range in pixels (one draw per frame and version)')
    parser.add_argument('--feather', type=float, default=1.0, help='matte feathering (Gaussian sigma, pixels)')
    parser.add_argument('--instrument-ids', type=int, nargs='+', default=list(DEFAULT_INSTRUMENT_IDS))
    parser.add_argument('--test-videos', nargs='+', help='videos of the test split (default: seeded fraction)')
    parser.add_argument('--test-fraction', type=float, default=0.2)
    parser.add_argument('--min-fraction', type=float, default=0.005,
                        help='skip frames whose instrument (or anatomy) area is below this fraction')
    args = parser.parse_args(argv)
    counts = make_cadisblur(args.cadis, args.output, args.seed, args.radius, args.feather, args.instrument_ids,
                            args.test_videos, args.test_fraction, args.min_fraction)
    print(f"CaDISBlur written to {args.output}: {counts['train']} train and {counts['test']} test frames "
          f"({counts['skipped']} skipped without instruments or anatomy).")


if __name__ == '__main__':
    sys.exit(main())
