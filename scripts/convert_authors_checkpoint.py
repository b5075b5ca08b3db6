"""Convert an authors' released MPT checkpoint for ``MPT(compat='authors')``.

``python scripts/convert_authors_checkpoint.py IN.pth OUT.pth [--scales JSON]`` reads ``IN`` with
``torch.load(weights_only=True)`` (prefix ``module.Network.``, ``Network.``, ``module.`` or none), maps every tensor
by name (``mpt_deploy.authors_checkpoint``), drops the ``relative_position_index`` buffers and writes
``{'params': state_dict}``, which BasicSR's ``path.pretrain_network_g`` loads with ``strict_load_g: true``. It prints
the ``network_g`` block to paste. A missing or extra tensor, a shape that does not fit or a file that is not an
authors' checkpoint is an error naming the keys (exit status 2).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Optional, Sequence

import torch

from mpt_deploy.authors_checkpoint import AuthorsCheckpointError, load_authors_checkpoint, network_opt_yaml


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('input', help="the authors' checkpoint (.pth)")
    parser.add_argument('output', help="converted checkpoint ({'params': state_dict})")
    parser.add_argument('--scales', type=json.loads, default=None,
                        help='per-level CSWA scales as JSON, when not the paper\'s S1..S4, e.g. [[0.125,0.25],...]')
    args = parser.parse_args(argv)
    try:
        state, network_opt = load_authors_checkpoint(args.input, args.scales)
    except AuthorsCheckpointError as err:
        print(f'convert_authors_checkpoint: {args.input}: {err}', file=sys.stderr)
        return 2
    torch.save({'params': state}, args.output)
    n = sum(t.numel() for t in state.values())
    print(f'{args.input} -> {args.output}: {len(state)} tensors, {n:,} parameters')
    print(network_opt_yaml(network_opt))
    return 0


if __name__ == '__main__':
    sys.exit(main())
