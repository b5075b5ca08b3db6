"""Semantic segmentation on CaDISBlur before and after deblurring (paper Sec. 4.3, Table 7).

Scores class-map predictions of a segmentation network (the paper used OCRNet) run on blurry, deblurred and
sharp frames against the CaDIS ground-truth class maps: mIoU and pixel accuracy from one confusion matrix per
table cell (see mpt_metrics/segmentation.py). CaDISBlur has two focal-plane variants, blurry instruments (``ins``)
and blurry anatomy (``ana``); each prediction folder is tied to a variant and a table row:

    --pred ins:blur=DIR --pred ins:deblurred=DIR --pred ana:blur=DIR ... --pred sharp=DIR  (no variant: both)

Predictions are single-channel PNGs of class ids (the ids of the CaDIS experiment used, e.g. Experiment I's 8
classes), matched to ground truth by file stem; a stem with an extra ``_suffix`` (BasicSR's saved-image naming)
also matches. Folders are searched recursively.

Example:
    python scripts/eval_segmentation.py --gt CaDIS/labels --num-classes 8 \\
        --pred ins:blur=ocr/ins_blur --pred ins:deblurred=ocr/ins_mpt \\
        --pred ana:blur=ocr/ana_blur --pred ana:deblurred=ocr/ana_mpt --pred sharp=ocr/sharp --out results/table7
"""

import argparse
import math
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from mpt_metrics.segmentation import SegmentationScore
from mpt_metrics.table_output import write_table

VARIANTS = ('ins', 'ana')


def read_class_map(path: Path) -> np.ndarray:
    """Single-channel class-id PNG (a 3-channel PNG with equal channels is accepted)."""
    import cv2

    array = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if array is None:
        raise OSError(f'could not read class map {path}')
    if array.ndim == 3:
        if not all(np.array_equal(array[..., 0], array[..., c]) for c in range(1, min(array.shape[2], 3))):
            raise ValueError(f'{path} is a colour image; class maps must store class ids in one channel')
        array = array[..., 0]
    return array


def index_stems(folder: Path, what: str) -> Dict[str, Path]:
    """file stem -> PNG path for every PNG under a folder (stems must be unique)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f'{what} folder {folder} does not exist')
    stems: Dict[str, Path] = {}
    for path in sorted(folder.rglob('*.png')):
        if path.stem in stems:
            raise ValueError(f'{what}: file stem {path.stem!r} occurs twice ({stems[path.stem]} and {path})')
        stems[path.stem] = path
    if not stems:
        raise FileNotFoundError(f'no PNG files in {what} folder {folder}')
    return stems


def match_ground_truth(pred_stem: str, gt_stems: Dict[str, Path]) -> Optional[Path]:
    """Ground truth for a prediction: same stem, else the longest stem S with pred_stem == S + '_...'."""
    stem = pred_stem
    while True:
        if stem in gt_stems:
            return gt_stems[stem]
        if '_' not in stem:
            return None
        stem = stem.rsplit('_', 1)[0]


def score_folder(pred_dir: Path, gt_stems: Dict[str, Path], num_classes: int,
                 ignore_index: Optional[int]) -> SegmentationScore:
    """Confusion-matrix scores of every prediction in a folder against its ground truth."""
    score = SegmentationScore(num_classes, ignore_index)
    for stem, pred_path in index_stems(pred_dir, 'prediction').items():
        gt_path = match_ground_truth(stem, gt_stems)
        if gt_path is None:
            raise KeyError(f'{pred_path}: no ground-truth class map with stem {stem!r} (or a prefix of it)')
        gt, pred = read_class_map(gt_path), read_class_map(pred_path)
        if gt.shape != pred.shape:
            raise ValueError(f'{pred_path} is {pred.shape} but its ground truth {gt_path} is {gt.shape}')
        try:
            score.update(gt, pred)
        except ValueError as err:
            raise ValueError(f'{pred_path} vs {gt_path}: {err}') from err
    return score


def parse_pred(text: str) -> List[Tuple[str, str, Path]]:
    """``[variant:]row=DIR`` -> [(variant, row, DIR)], both variants when none is given."""
    if '=' not in text:
        raise argparse.ArgumentTypeError(f'--pred needs [ins|ana:]ROW=FOLDER, got {text!r}')
    spec, folder = text.split('=', 1)
    if ':' in spec:
        variant, row = spec.split(':', 1)
        if variant not in VARIANTS:
            raise argparse.ArgumentTypeError(f'variant must be one of {VARIANTS}, got {variant!r} in {text!r}')
        return [(variant, row, Path(folder))]
    return [(variant, spec, Path(folder)) for variant in VARIANTS]


def _fmt(value: Optional[float]) -> str:
    return 'n/a' if value is None or math.isnan(value) else f'{value:.4f}'


def markdown_table(results: Dict[str, Dict[str, Dict[str, float]]]) -> str:
    """Table 7 layout: rows = methods, columns mIoU/PA for blurry instruments then blurry anatomy."""
    lines = ['| Method | mIoU_ins | PA_ins | mIoU_ana | PA_ana |', '|---|---|---|---|---|']
    for row, by_variant in results.items():
        cells = []
        for variant in VARIANTS:
            scores = by_variant.get(variant, {})
            cells += [_fmt(scores.get('mIoU')), _fmt(scores.get('PA'))]
        lines.append(f'| {row} | ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines) + '\n'


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--gt', type=Path, required=True, help='folder of ground-truth class-map PNGs')
    parser.add_argument('--pred', type=parse_pred, action='append', required=True,
                        help='[ins|ana:]ROW=FOLDER of predicted class maps (repeatable)')
    parser.add_argument('--num-classes', type=int, default=8, help='classes of the CaDIS experiment (I: 8)')
    parser.add_argument('--ignore-index', default='255',
                        help="ground-truth value left unscored ('none' to score every pixel)")
    parser.add_argument('--out', type=Path, help='write OUT.md and OUT.csv')
    args = parser.parse_args(argv)
    ignore_index = None if args.ignore_index.lower() == 'none' else int(args.ignore_index)

    gt_stems = index_stems(args.gt, 'ground truth')
    results: Dict[str, Dict[str, Dict[str, float]]] = {}
    images: Dict[Tuple[str, str], int] = {}
    for variant, row, folder in (entry for group in args.pred for entry in group):
        if variant in results.get(row, {}):
            parser.error(f'row {row!r} variant {variant!r} given twice')
        score = score_folder(folder, gt_stems, args.num_classes, ignore_index)
        results.setdefault(row, {})[variant] = score.result()
        images[(row, variant)] = score.num_images
        print(f'{variant}:{row}: {score.num_images} images', file=sys.stderr)
    for variant in VARIANTS:
        counts = {n for (_, v), n in images.items() if v == variant}
        if len(counts) > 1:
            print(f'warning: rows of variant {variant} scored different numbers of images {sorted(counts)}; '
                  'their scores are not comparable', file=sys.stderr)
    write_table(args.out, markdown_table(results), ['method', 'variant', 'images', 'mIoU', 'PA'],
                ([row, variant, count, f"{results[row][variant]['mIoU']:.6f}", f"{results[row][variant]['PA']:.6f}"]
                 for (row, variant), count in images.items()))
    return 0


if __name__ == '__main__':
    sys.exit(main())
