"""How long ``check_files`` takes on a BBBC006-sized set: N 16-bit 696x520 TIFF pairs, every file decoded once.

Writes the images into a scratch folder (``PairedDefocusDataset``'s folder layout), builds the training dataset
(which runs the start-up check) and prints the time per file and for N files; ``--markdown PAGE`` writes the result
into the page's ``<!-- check_files:begin -->`` block.

    python -m tools.check_files_speed --pairs 1000 --markdown docs/guides/training.md
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time
from typing import Optional, Sequence

import numpy as np

MARKS = ('<!-- check_files:begin -->', '<!-- check_files:end -->')


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--pairs', type=int, default=1000, help='input/ground-truth pairs to write and check')
    parser.add_argument('--markdown', metavar='PAGE', help='write the result into the marked block of PAGE')
    args = parser.parse_args(argv)
    import tifffile
    import torch

    from mpt_data import PairedDefocusDataset
    from mpt_metrics.table_output import write_markdown

    folder = tempfile.mkdtemp(prefix='mpt_check_files_')
    try:
        rng = np.random.default_rng(0)
        base = (rng.random((520, 696)) * 3000 + 200).astype(np.uint16)
        for sub in ('lq', 'gt'):
            os.makedirs(os.path.join(folder, sub))
        for i in range(args.pairs):
            for sub in ('lq', 'gt'):
                tifffile.imwrite(os.path.join(folder, sub, f'{i:05d}.tif'), np.roll(base, i, axis=1))
        opt = {'name': 'speed', 'type': 'PairedDefocusDataset', 'phase': 'train', 'gt_size': 256, 'in_chans': 1,
               'dataroot_lq': os.path.join(folder, 'lq'), 'dataroot_gt': os.path.join(folder, 'gt'),
               'io_backend': {'type': 'disk'}}
        start = time.perf_counter()
        PairedDefocusDataset(opt)
        seconds = time.perf_counter() - start
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    files = 2 * args.pairs
    line = (f'`check_files` decoded {files} BBBC006-sized files (16-bit 696x520 TIFF) in {seconds:.1f} s '
            f'({1000 * seconds / files:.2f} ms per file): about {10 * seconds / files * 1000:.0f} s for 10,000 files '
            '(files in the page cache; a cold network disk adds its reading time).')
    print(line)
    if args.markdown:
        env = {'cpu': platform.processor() or platform.machine(), 'torch': torch.__version__}
        write_markdown(args.markdown, [line], [], env, argv, '-m tools.check_files_speed', MARKS)
    return 0


if __name__ == '__main__':
    sys.exit(main())
