"""Collect the sharp images the starter models are trained and evaluated on, from files that ship inside registry
packages (scikit-image's ``skimage/data`` and matplotlib's ``mpl-data/sample_data``; nothing is downloaded).

Whole images are split three ways, never a crop of one image in two splits:

* ``train``: what ``options/train_MPT_starter_<gray|rgb>.yml`` synthesise pairs from (``SyntheticDefocusDataset``);
* ``tune``: where ``tools/benchmark_quality.py`` tunes the Richardson-Lucy iterations and the Wiener balance;
* ``heldout``: the evaluation images, from a different package (matplotlib) where possible.

The gray set also takes the luminance of the RGB training images. Files keep their bit depth (the matplotlib MRI
slice is 16-bit). Layout: ``<out>/<gray|rgb>/<train|tune|heldout>/<name>.png``. Sources and licences:
:data:`SOURCES` (also in the starter models' model cards).

Example: ``python -m tools.make_starter_data --out starter_data``
"""

from __future__ import annotations

import argparse
import gzip
import os
import os.path as osp
import sys
from typing import Dict, NamedTuple, Optional, Sequence

import cv2
import numpy as np


class Source(NamedTuple):
    package: str
    file: str
    licence: str
    content: str


SOURCES: Dict[str, Source] = {
    'astronaut': Source('scikit-image', 'astronaut.png', 'public domain (NASA)', 'photograph'),
    'brick': Source('scikit-image', 'brick.png', 'CC0 (CC0Textures)', 'texture'),
    'camera': Source('scikit-image', 'camera.png', 'CC0 (Lav Varshney)', 'photograph'),
    'cell': Source('scikit-image', 'cell.png', 'CC0 (Guck lab)', 'phase-contrast microscopy'),
    'chelsea': Source('scikit-image', 'chelsea.png', 'CC0 (Stefan van der Walt)', 'photograph'),
    'coffee': Source('scikit-image', 'coffee.png', 'CC0 (Rachel Michetti)', 'photograph'),
    'coins': Source('scikit-image', 'coins.png', 'no known copyright restrictions (Brooklyn Museum)', 'photograph'),
    'grass': Source('scikit-image', 'grass.png', 'CC0 (DeviantArt linolafett)', 'texture'),
    'gravel': Source('scikit-image', 'gravel.png', 'CC0 (CC0Textures)', 'texture'),
    'hubble_deep_field': Source('scikit-image', 'hubble_deep_field.jpg', 'public domain (NASA)', 'astronomy'),
    'ihc': Source('scikit-image', 'ihc.png', 'no known copyright restrictions', 'immunohistochemistry microscopy'),
    'microaneurysms': Source('scikit-image', 'microaneurysms.png', 'CC0 (Andreas Maier)', 'retinal angiography'),
    'moon': Source('scikit-image', 'moon.png', 'no known copyright restrictions', 'astronomy'),
    'motorcycle_left': Source('scikit-image', 'motorcycle_left.png', 'Middlebury stereo 2014 (research use)',
                              'photograph'),
    'retina': Source('scikit-image', 'retina.jpg', 'CC0 (Wikimedia Commons)', 'fundus photograph'),
    'rocket': Source('scikit-image', 'rocket.jpg', 'public domain (SpaceX)', 'photograph'),
    'text': Source('scikit-image', 'text.png', 'public domain (Wikipedia)', 'text'),
    'grace_hopper': Source('matplotlib', 'grace_hopper.jpg', 'public domain (U.S. Navy)', 'photograph'),
    's1045': Source('matplotlib', 's1045.ima.gz', 'matplotlib sample data (matplotlib licence)',
                    'MRI slice, 16-bit'),
}

SPLITS: Dict[str, Dict[str, Sequence[str]]] = {
    'rgb': {'train': ('astronaut', 'coffee', 'hubble_deep_field', 'ihc', 'retina', 'motorcycle_left'),
            'tune': ('rocket',),
            'heldout': ('grace_hopper', 'chelsea')},
    'gray': {'train': ('camera', 'brick', 'grass', 'gravel', 'cell', 'text', 'microaneurysms', 'astronaut', 'coffee',
                       'hubble_deep_field', 'ihc', 'retina', 'motorcycle_left'),
             'tune': ('coins',),
             'heldout': ('s1045', 'grace_hopper', 'moon')},
}
MAX_SIDE = 768  # larger photographs are reduced (INTER_AREA) to keep epochs short


def source_path(source: Source) -> str:
    """Where the installed package keeps the file."""
    if source.package == 'scikit-image':
        import skimage

        return osp.join(osp.dirname(skimage.__file__), 'data', source.file)
    import matplotlib

    return osp.join(matplotlib.get_data_path(), 'sample_data', source.file)


def load(name: str, subset: str) -> np.ndarray:
    """The image ``name`` as uint8/uint16, gray (H x W) or BGR (H x W x 3), at most :data:`MAX_SIDE` pixels."""
    path = source_path(SOURCES[name])
    if not osp.isfile(path):
        raise FileNotFoundError(f'{path!r} is missing from the installed {SOURCES[name].package}.')
    if name == 's1045':  # raw 256 x 256 little-endian uint16
        with gzip.open(path, 'rb') as fin:
            img = np.frombuffer(fin.read(), '<u2').reshape(256, 256).copy()
    else:
        img = cv2.imread(path, cv2.IMREAD_COLOR if subset == 'rgb' else cv2.IMREAD_GRAYSCALE)
        if img is None:
            raise OSError(f'Could not read {path!r}.')
    factor = MAX_SIDE / max(img.shape[:2])
    if factor < 1:
        img = cv2.resize(img, None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA)
    return img


def build(out: str = 'starter_data', subsets: Sequence[str] = ('gray', 'rgb')) -> Dict[str, Dict[str, int]]:
    """Write the splits; returns ``{subset: {split: n_images}}``."""
    counts: Dict[str, Dict[str, int]] = {}
    for subset in subsets:
        counts[subset] = {}
        for split, names in SPLITS[subset].items():
            folder = osp.join(out, subset, split)
            os.makedirs(folder, exist_ok=True)
            for name in names:
                if not cv2.imwrite(osp.join(folder, f'{name}.png'), load(name, subset)):
                    raise OSError(f'Could not write {osp.join(folder, name)}.png.')
            counts[subset][split] = len(names)
    return counts


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--out', default='starter_data', help='output folder (default: ./starter_data)')
    parser.add_argument('--subsets', nargs='+', default=['gray', 'rgb'], choices=sorted(SPLITS))
    args = parser.parse_args(argv)
    for subset, splits in build(args.out, args.subsets).items():
        print(f'{subset}: ' + ', '.join(f'{n} {split}' for split, n in splits.items()) + f' in {args.out}/{subset}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
