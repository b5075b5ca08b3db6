"""Peak inference memory per input pixel and per feature channel, the constant behind ``mpt-deblur --tile auto``
(``mpt_common.tiling.BYTES_PER_PIXEL_PER_FEATURE``).

Each measurement runs in a fresh subprocess: the network is built and run once on a small input (allocator and
caches warm), the kernel's peak-RSS mark is reset to the current RSS (``/proc/self/clear_refs``, Linux), and the
peak's growth over one forward at the measured size is divided by ``H * W * dim``. CPU only (a CUDA figure needs
``torch.cuda.max_memory_allocated`` on a GPU).

    python -m tools.tile_memory                      # paper configuration and the gray starter model, 256^2 and 512^2
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from typing import Dict, List, Optional, Sequence

CONFIGS: Dict[str, Dict] = {
    'paper (dim 40)': {'in_chans': 1},
    'starter (dim 24)': {'in_chans': 1, 'dim': 24, 'num_blocks': [1, 1, 1], 'heads': [1, 2, 4],
                         'scales': [[0.5], [0.5], [1]]},
}

_CHILD = r'''
import json, resource, sys
import torch
from mpt_arch import MPT


def status(key):
    with open('/proc/self/status') as handle:
        return next(int(line.split()[1]) * 1024 for line in handle if line.startswith(key))


torch.set_num_threads(2)
cfg, size = json.loads(sys.argv[1]), int(sys.argv[2])
net = MPT(**cfg).eval()
with torch.inference_mode():
    net(torch.rand(1, cfg['in_chans'], 64, 64))
    x = torch.rand(1, cfg['in_chans'], size, size)
    try:  # Linux: reset the peak to the current RSS, so the peak of the forward alone is read back
        with open('/proc/self/clear_refs', 'w') as handle:
            handle.write('5')
        before = status('VmRSS:')
        net(x)
        grown = status('VmHWM:') - before
    except (OSError, StopIteration):  # elsewhere: growth of the lifetime peak (misses what fits below it)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        net(x)
        grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024
print(json.dumps({'bytes': grown, 'dim': net.conv_in.out_channels}))
'''


def measure(config: Dict, size: int) -> Dict:
    """Peak-RSS growth of one forward at ``size x size`` in a fresh process."""
    out = subprocess.run([sys.executable, '-c', _CHILD, json.dumps(config), str(size)], check=True,
                         capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--sizes', type=int, nargs='+', default=[256, 512])
    args = parser.parse_args(argv)
    rows: List[str] = ['| network | input | peak growth (MB) | bytes / pixel / feature |', '|---|---|---|---|']
    for name, config in CONFIGS.items():
        for size in args.sizes:
            got = measure(config, size)
            rows.append(f'| {name} | {size}x{size} | {got["bytes"] / 1e6:.0f} | '
                        f'{got["bytes"] / (size * size * got["dim"]):.0f} |')
    print('\n'.join(rows))
    return 0


if __name__ == '__main__':
    sys.exit(main())
