"""``check_files``: decode every file once at start-up and report all problems of a dataset together.

Dataset option ``check_files`` (default ``true`` for ``phase: train``, ``false`` otherwise). When on, the dataset
reads and decodes each of its images once while it is built (:meth:`mpt_data.image_io.ImageLoader.inspect`: the
header, then every pixel, so a file cut short fails here and not at the batch that draws it hours later) and
raises one :class:`~mpt_data.image_io.ImageReadError` listing every

* unreadable file (damaged, truncated header or data, not an image, missing LMDB key),
* image with the wrong channel count for ``in_chans`` (RGB is fine with ``to_gray: true``) or an unsupported
  dtype (the normalisation contract's: uint8, uint16, float32),
* pair whose input and ground truth differ in size,
* image smaller than ``gt_size`` in training,

so a run never stops at iteration 12 000 on the first bad file drawn. Unpaired files (an input without its
ground truth or the other way round) are found while the pairs are listed, with or without ``check_files``, and
also reported all together. Files without an image extension are ignored with a note in the log (:func:`note_ignored`).
"""

from __future__ import annotations

import time
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

from mpt_common.messages import preview
from mpt_data.image_io import ImageHeader, ImageReadError
from mpt_data.normalization import SUPPORTED_DTYPES

SUPPORTED = tuple(dtype.__name__ for dtype in SUPPORTED_DTYPES)  # 'uint8', 'uint16', 'float32'
MAX_LISTED = 50  # problems printed in full; the rest are counted

# one sample: the images that must have the same size, each as (display name, header reader)
Sample = Sequence[Tuple[str, Callable[[], ImageHeader]]]


def check_files_enabled(opt: dict) -> bool:
    """The dataset option ``check_files``; defaults to True in training, False otherwise."""
    return bool(opt.get('check_files', opt.get('phase') == 'train'))


def _logger():
    from basicsr.utils import get_root_logger

    return get_root_logger()


def format_problems(title: str, problems: List[str]) -> str:
    """``title`` and the problems as a bulleted list (the first :data:`MAX_LISTED`, then a count)."""
    lines = [f'  - {p}' for p in problems[:MAX_LISTED]]
    if len(problems) > MAX_LISTED:
        lines.append(f'  ... and {len(problems) - MAX_LISTED} more')
    return '\n'.join([title, *lines])


def note_ignored(folder: str, names: Iterable[str]) -> List[str]:
    """Log that non-image files of ``folder`` are ignored (not counted, not paired); returns the names."""
    names = sorted(names)
    if names:
        _logger().warning(f'Ignoring {len(names)} non-image file(s) in {folder!r}: {preview(names, 10)}.')
    return names


def raise_unpaired(dataset_name: str, unpaired: List[str]) -> None:
    """Raise one error listing every unpaired file (no-op for an empty list)."""
    if unpaired:
        raise ImageReadError(format_problems(f'Dataset {dataset_name!r}: {len(unpaired)} unpaired file(s):',
                                             unpaired))


def check_samples(samples: Iterable[Sample], dataset_name: str, in_chans: int, to_gray: bool = False,
                  gt_size: Optional[int] = None) -> int:
    """Read each distinct file's header once; raise one :class:`ImageReadError` listing all problems.

    Returns the number of headers read.
    """
    headers: Dict[str, Optional[ImageHeader]] = {}
    problems: List[str] = []
    start = time.time()
    for sample in samples:
        read = []
        for name, reader in sample:
            if name not in headers:
                try:
                    header = reader()
                except ImageReadError as err:
                    headers[name] = None
                    problems.append(str(err))
                    continue
                headers[name] = header
                if header.dtype not in SUPPORTED:
                    problems.append(f'{name!r} has dtype {header.dtype}; supported: {", ".join(SUPPORTED)} '
                                    '(mpt_data.normalization)')
                if header.channels != in_chans and not (to_gray and in_chans == 1 and header.channels == 3):
                    hint = ' (to_gray: true converts RGB)' if in_chans == 1 and header.channels == 3 else ''
                    problems.append(f'{name!r} has {header.channels} channel(s) but in_chans is {in_chans}{hint}')
                if gt_size and min(header.height, header.width) < gt_size:
                    problems.append(f'{name!r} is {header.width}x{header.height}, smaller than gt_size {gt_size}')
            if headers[name] is not None:
                read.append((name, headers[name]))
        for name, header in read[1:]:
            first_name, first = read[0]
            if (header.height, header.width) != (first.height, first.width):
                problems.append(f'pair size mismatch: {first_name!r} is {first.width}x{first.height} but {name!r} '
                                f'is {header.width}x{header.height} (W x H)')
    if problems:
        raise ImageReadError(format_problems(
            f'check_files: {len(problems)} problem(s) in dataset {dataset_name!r} (fix or remove these files; '
            'check_files: false skips this start-up check):', problems))
    _logger().info(f'check_files: {len(headers)} image header(s) of dataset {dataset_name!r} are fine '
                   f'({time.time() - start:.2f} s).')
    return len(headers)
