"""Generate ``tests/fixtures/authors_mpt_tiny.pt``, the frozen fixture of ``test_authors_compat.py`` (run once).

``PYTHONPATH=.:tests python tests/helpers/authors_fixture.py [--default-from DIR]``

* ``authors``: a tiny configuration of the authors' network (``../shared/reference/authors_mpt/MPT.py``, the
  oracle; dim 2, two sub-blocks per level, every parameter randomised, CSWA temperatures of both signs), its state
  dict under their trainer's ``module.Network.`` prefix without the 14 ``relative_position_index`` buffers (32 KiB
  each; the oracle test covers them), its CSWA scales, one grayscale 128x128 input and their output. Lets the exact
  check run in a clone without ``../shared``.
* ``default``: a tiny *default* ``MPT`` (``TINY_DEFAULT``), its state dict, a 37x45 input and its
  output, as computed by the ``mpt_arch`` of ``--default-from`` (a checkout of the commit before issue 12, so the
  test shows that compat mode left the default network's function unchanged).
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[2]
ORACLE = REPO.parent / 'shared' / 'reference' / 'authors_mpt' / 'MPT.py'
OUT = REPO / 'tests' / 'fixtures' / 'authors_mpt_tiny.pt'
TINY_AUTHORS = dict(dim=2, num_blocks=[2, 2, 2, 2],
                    downpool=[[[1, 1 / 8], [1, 1 / 4]], [[1, 1 / 4], [1, 1 / 2]], [[1, 1 / 2], [1, 1 / 2]],
                              [[1, 1 / 2], [1, 1]]])
TINY_DEFAULT = dict(in_chans=1, dim=4, num_blocks=[2, 2], heads=[1, 2], scales=[[0.5, 1], [0.25, 1]], window_size=4)


def load_oracle(path: Path = ORACLE):
    """The authors' ``MPT`` class, imported from ``path`` under a private module name."""
    spec = importlib.util.spec_from_file_location('authors_mpt_oracle', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.MPT


def randomise(net: torch.nn.Module, seed: int) -> None:
    """Every parameter drawn at random; temperatures of both signs (trained CSWA ones can be negative)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in net.named_parameters():
            if 'temperature' in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 3)
            else:
                p.copy_(torch.randn(p.shape, generator=gen) * (0.2 if p.dim() > 1 else 1.0))


def authors_part() -> dict:
    net = load_oracle()(inp_channels=1, out_channels=1, **TINY_AUTHORS).eval()
    randomise(net, 12)
    x = torch.rand(1, 1, 128, 128, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        y = net(x)['result']
    state = {'module.Network.' + k: v.clone() for k, v in net.state_dict().items()
             if not k.endswith('relative_position_index')}
    scales = [[s[1] for s in level] for level in TINY_AUTHORS['downpool']]
    return {'state': state, 'scales': scales, 'input': x, 'output': y}


def default_part(src: Path) -> dict:
    code = (
        'import sys, torch; import mpt_common.basicsr_compat; from mpt_arch import MPT\n'
        f'torch.manual_seed(3); net = MPT(**{TINY_DEFAULT!r}).eval()\n'
        'x = torch.rand(1, 1, 37, 45)\n'
        'with torch.no_grad(): y = net(x)\n'
        'with torch.enable_grad(): y_train = net(x).detach()\n'
        'torch.save({"state": net.state_dict(), "input": x, "output": y, "output_train": y_train}, sys.argv[1])\n'
    )
    tmp = OUT.with_suffix('.default.tmp')
    subprocess.run([sys.executable, '-c', code, str(tmp)], check=True, cwd=src, env={'PYTHONPATH': str(src),
                                                                                   'PATH': '/usr/bin:/bin'})
    part = torch.load(tmp, weights_only=True)
    tmp.unlink()
    part['config'] = TINY_DEFAULT
    return part


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--default-from', type=Path, default=REPO,
                        help='checkout whose mpt_arch computes the default-MPT golden output')
    args = parser.parse_args()
    OUT.parent.mkdir(exist_ok=True)
    torch.save({'authors': authors_part(), 'default': default_part(args.default_from.resolve())}, OUT)
    print(f'{OUT}: {OUT.stat().st_size / 1024:.0f} KiB')


if __name__ == '__main__':
    main()
