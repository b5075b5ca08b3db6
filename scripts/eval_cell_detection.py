"""Cell detection on BBBC006 before and after deblurring (paper Sec. 4.3, Table 6).

Segments nuclei in BBBC006 w1 (Hoechst) images with a pluggable segmenter and reports StarDist's matching AP
(TP / (TP + FP + FN), see mpt_metrics/instance_ap.py) at IoU 0.5, 0.7, 0.9 and their mean, against the published
in-focus nuclei labels ``BBBC006_v1_labels/mcf-z-stacks-03212011_<well>_s<site>.png``. Images are matched to
labels by (well, site) parsed from the file name, so blurry planes, deblurred outputs (BasicSR saves them as
``<input stem>_<suffix>.png``) and the sharp plane all find their label. Several images may share one label
(e.g. z = 02, 06, 10 of the same site); all are scored and the counts pooled.

Example:
    python scripts/eval_cell_detection.py --labels BBBC006/BBBC006_v1_labels \\
        --blur BBBC006/test/z02_w1 --deblurred results/MPT_BBBC006_w1/visualization/BBBC006_w1 \\
        --sharp BBBC006/test/z16_w1 --out results/table6
"""

import argparse
import re
import sys
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from mpt_metrics.instance_ap import PAPER_IOU_THRESHOLDS, match_counts, pool_counts, summarize
from mpt_metrics.nuclei_segmentation import Segmenter, build_segmenter
from mpt_metrics.table_output import name_path_argument, write_table

# Published BBBC006 naming (docs/guides/datasets.md): images carry _w<channel>, labels do not.
BBBC006_RE = re.compile(r'mcf-z-stacks-03212011_([A-Za-z0-9]+)_s([0-9])(?:_w([0-9]))?')
IMAGE_SUFFIXES = ('.tif', '.tiff', '.png')
Key = Tuple[str, int]


def parse_key(path: Path) -> Tuple[Key, Optional[int]]:
    """((well, site), channel or None) from a BBBC006 file name; ValueError when the name does not match."""
    match = BBBC006_RE.search(Path(path).name)
    if match is None:
        raise ValueError(f'{path}: name does not follow the BBBC006 pattern {BBBC006_RE.pattern}')
    channel = None if match.group(3) is None else int(match.group(3))
    return (match.group(1).lower(), int(match.group(2))), channel


def index_labels(label_dir: Path) -> Dict[Key, Path]:
    """(well, site) -> label file for every BBBC006 label PNG in a folder."""
    label_dir = Path(label_dir)
    if not label_dir.is_dir():
        raise FileNotFoundError(f'label folder {label_dir} does not exist')
    labels: Dict[Key, Path] = {}
    for path in sorted(label_dir.glob('*.png')):
        key, _ = parse_key(path)
        if key in labels:
            raise ValueError(f'two label files for well {key[0]} site {key[1]}: {labels[key]} and {path}')
        labels[key] = path
    if not labels:
        raise FileNotFoundError(f'no BBBC006 label PNGs (mcf-z-stacks-03212011_<well>_s<site>.png) in {label_dir}')
    return labels


def collect_images(source: Path, channel: Optional[int] = 1) -> List[Path]:
    """Images of one table row: a folder (searched recursively) or a text file listing one path per line.

    Files whose name carries a different ``_w<channel>`` are skipped; names without a channel are kept.
    """
    source = Path(source)
    if source.is_dir():
        paths = sorted(p for p in source.rglob('*') if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        paths = [p for p in paths if BBBC006_RE.search(p.name)]
    elif source.is_file():
        lines = [line.strip() for line in source.read_text().splitlines()]
        paths = [(source.parent / line) if not Path(line).is_absolute() else Path(line) for line in lines if line]
        for path in paths:
            if not path.is_file():
                raise FileNotFoundError(f'{path} (listed in {source}) does not exist')
            parse_key(path)
    else:
        raise FileNotFoundError(f'{source} is neither a folder nor a file list')
    if channel is not None:
        paths = [p for p in paths if parse_key(p)[1] in (None, channel)]
    if not paths:
        raise FileNotFoundError(f'no BBBC006 images of channel w{channel} in {source}')
    return paths


def read_image(path: Path) -> np.ndarray:
    """A 16-bit TIFF or a PNG, unchanged bit depth."""
    path = Path(path)
    if path.suffix.lower() in ('.tif', '.tiff'):
        import tifffile

        image = tifffile.imread(str(path))
    else:
        import cv2

        image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if image is not None and image.ndim == 3:
            image = image[..., ::-1]  # BGR(A) -> RGB(A); grey images saved as colour stay equal per channel
    if image is None:
        raise OSError(f'could not read image {path}')
    return np.asarray(image)


def read_instance_labels(path: Path) -> np.ndarray:
    """Instance label image: a grey PNG of object ids, or a colour PNG where each colour is one object."""
    labels = read_image(path)
    if labels.ndim == 3:
        colours = labels[..., :3].reshape(-1, 3)
        if np.array_equal(colours[:, 0], colours[:, 1]) and np.array_equal(colours[:, 0], colours[:, 2]):
            labels = labels[..., 0]
        else:
            _, ids = np.unique(colours, axis=0, return_inverse=True)
            background = colours.sum(axis=1) == 0
            # Renumber so black is 0 and every other colour an object id >= 1.
            ids = ids.ravel() + 1
            ids[background] = 0
            labels = ids.reshape(labels.shape[:2])
    if labels.ndim != 2 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f'{path} is not an instance label image (shape {labels.shape}, dtype {labels.dtype})')
    return labels.astype(np.int64)


def center_crop(array: np.ndarray, size: Optional[Tuple[int, int]], name: str) -> np.ndarray:
    if size is None:
        return array
    h, w = size
    if array.shape[0] < h or array.shape[1] < w:
        raise ValueError(f'{name} is {array.shape[:2]}, smaller than the crop {size}')
    top, left = (array.shape[0] - h) // 2, (array.shape[1] - w) // 2
    return array[top:top + h, left:left + w]


def evaluate_row(paths: Sequence[Path], labels: Dict[Key, Path], segmenter: Segmenter,
                 thresholds: Sequence[float] = PAPER_IOU_THRESHOLDS,
                 crop: Optional[Tuple[int, int]] = None) -> Tuple[Dict[str, float], int]:
    """Pooled AP scores of one table row and the number of images scored."""
    per_image = []
    for path in paths:
        key, _ = parse_key(path)
        if key not in labels:
            raise KeyError(f'{path}: no label for well {key[0]} site {key[1]} in the label folder')
        gt = center_crop(read_instance_labels(labels[key]), crop, str(labels[key]))
        image = center_crop(read_image(path), crop, str(path))
        if image.shape[:2] != gt.shape:
            raise ValueError(f'{path} is {image.shape[:2]} but its label {labels[key].name} is {gt.shape}; '
                             'pass --crop HxW to score both on a common centred crop')
        per_image.append(match_counts(gt, segmenter(image), thresholds))
    return summarize(pool_counts(per_image)), len(per_image)


def markdown_table(results: Mapping[str, Dict[str, float]], thresholds: Sequence[float]) -> str:
    """Table 6 layout: one row per input kind, AP per IoU threshold and the mean."""
    cols = [f'{t:g}' for t in thresholds]
    lines = ['| IoU | ' + ' | '.join(cols) + ' | Mean AP |', '|---' * (len(cols) + 2) + '|']
    for name, scores in results.items():
        lines.append(f'| {name} | ' + ' | '.join(f'{scores[c]:.4f}' for c in cols + ['mean']) + ' |')
    return '\n'.join(lines) + '\n'


def _parse_size(text: str) -> Tuple[int, int]:
    match = re.fullmatch(r'(\d+)[xX](\d+)', text)
    if not match:
        raise argparse.ArgumentTypeError(f'crop must look like 512x640 (height x width), got {text!r}')
    return int(match.group(1)), int(match.group(2))


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--labels', type=Path, required=True, help='BBBC006_v1_labels folder')
    parser.add_argument('--blur', type=Path, help='blurry w1 images: folder or file list')
    parser.add_argument('--deblurred', type=Path, help='deblurred w1 images: folder or file list')
    parser.add_argument('--sharp', type=Path, help='in-focus (z=16) w1 images: folder or file list')
    parser.add_argument('--method', type=name_path_argument('--method', 'FOLDER_OR_LIST'), action='append', default=[],
                        help='extra row NAME=FOLDER_OR_LIST (repeatable), placed between deblurred and sharp')
    parser.add_argument('--channel', type=int, default=1, help='BBBC006 channel to score (w1 = nuclei)')
    parser.add_argument('--segmenter', choices=('classical', 'stardist'), default='classical')
    parser.add_argument('--stardist-model', default='2D_versatile_fluo', help='pretrained StarDist2D model name')
    parser.add_argument('--min-size', type=int, default=30, help='classical: smallest nucleus in pixels')
    parser.add_argument('--min-distance', type=int, default=5, help='classical: min distance between seeds')
    parser.add_argument('--sigma', type=float, default=1.0, help='classical: Gaussian smoothing sigma')
    parser.add_argument('--thresholds', type=float, nargs='+', default=list(PAPER_IOU_THRESHOLDS))
    parser.add_argument('--crop', type=_parse_size, help='score a centred HxW crop of images and labels')
    parser.add_argument('--max-images', type=int, help='score only the first N images of each row')
    parser.add_argument('--out', type=Path, help='write OUT.md and OUT.csv')
    args = parser.parse_args(argv)

    rows = [('blur', args.blur), ('deblurred', args.deblurred), *args.method, ('sharp', args.sharp)]
    rows = [(name, src) for name, src in rows if src is not None]
    if not rows:
        parser.error('give at least one of --blur, --deblurred, --sharp, --method')
    if args.segmenter == 'classical':
        segmenter = build_segmenter('classical', sigma=args.sigma, min_size=args.min_size,
                                    min_distance=args.min_distance)
    else:
        segmenter = build_segmenter('stardist', model_name=args.stardist_model)
    labels = index_labels(args.labels)

    results: Dict[str, Dict[str, float]] = {}
    counts = {}
    for name, source in rows:
        paths = collect_images(source, args.channel)[:args.max_images]
        results[name], counts[name] = evaluate_row(paths, labels, segmenter, args.thresholds, args.crop)
        print(f'{name}: {counts[name]} images scored', file=sys.stderr)
    cols = [f'{t:g}' for t in args.thresholds]
    write_table(args.out, markdown_table(results, args.thresholds),
                ['method', 'images'] + [f'AP@{c}' for c in cols] + ['mean_AP'],
                ([name, counts[name]] + [f'{scores[c]:.6f}' for c in cols + ['mean']]
                 for name, scores in results.items()))
    return 0


if __name__ == '__main__':
    sys.exit(main())
