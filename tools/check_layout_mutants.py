"""Evidence for the region-layout mutants declared equivalent in ``tests/mutation_equivalents.txt``.

Each mutation is applied to a copy of ``mpt_arch/region_geometry.py`` loaded under another name, and the layouts of
both pairings are compared with the unmutated module's over a grid of map sizes, ratios and shifts: the gather
indices, the number of masked regions and the masks must be identical. The issue's seam bug (wrapped part labelled
like the last region) is the control and must differ::

    python -m tools.check_layout_mutants
"""

from __future__ import annotations

import importlib.util
import os.path as osp
import sys
from types import ModuleType

import torch

SOURCE = osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))), 'mpt_arch', 'region_geometry.py')
NEEDS_MASK = ('needs_mask = (q_lab.amin(1) != q_lab.amax(1)) | (k_lab.amin(1) != k_lab.amax(1)) | '
              '(q_lab[:, 0] != k_lab[:, 0])')
# mutant -> (original text, mutated text)
MUTANTS = {
    '_labels 3': ('torch.zeros(length, dtype=torch.long)', 'torch.zeros(length, dtype=None)'),
    '_labels 5': ('torch.zeros(length, dtype=torch.long)', 'torch.zeros(length, )'),
    '_labels 7': ('labels[length - region:length - shift] = 1', 'labels[length + region:length - shift] = 1'),
    '_labels 8': ('labels[length - region:length - shift] = 1', 'labels[length - region:length + shift] = 1'),
    '_labels 11': ('labels[length - shift:] = 2', 'labels[length + shift:] = 2'),
    '_labels 12': ('labels[length - shift:] = 2', 'labels[length - shift:] = 3'),
    'build_region_layout 163': ('torch.full_like(k_lab, -1)', 'torch.full_like(k_lab, -2)'),
    'build_region_layout 167': (NEEDS_MASK, NEEDS_MASK.replace('q_lab.amin(1)', 'q_lab.amin(None)')),
    'build_region_layout 177': (NEEDS_MASK, NEEDS_MASK.replace('(q_lab[:, 0] !=', '(q_lab[:, 1] !=')),
    'build_region_layout 179': (NEEDS_MASK, NEEDS_MASK.replace('!= k_lab[:, 0])', '!= k_lab[:, 1])')),
    'build_authors_layout 164': ('needs_mask = k_lab.amin(1) != k_lab.amax(1)\n',
                                 'needs_mask = k_lab.amin(None) != k_lab.amax(1)\n'),
    'control: the seam bug': ('labels[length - shift:] = 2', 'labels[length - shift:] = 1'),
}


def load(text: str, name: str) -> ModuleType:
    module = importlib.util.module_from_spec(importlib.util.spec_from_loader(name, loader=None))
    sys.modules[name] = module  # dataclasses look their module up
    exec(compile(text, name, 'exec'), module.__dict__)
    return module


def same(a, b) -> bool:
    masks = (a.border_mask is None and b.border_mask is None) or (
        a.border_mask is not None and b.border_mask is not None and torch.equal(a.border_mask, b.border_mask))
    return (a.n_border == b.n_border and masks and torch.equal(a.q_src, b.q_src) and torch.equal(a.k_src, b.k_src)
            and torch.equal(a.out_src, b.out_src))


def geometries():
    for r in (1, 2, 4, 8):
        for shifted in (False, True):
            for h in (1, 3, 16, 17, 33, 70):
                for w in (1, 5, 16, 31, 48):
                    yield 'build_region_layout', (h, w, r, 4, shifted)
            for a in (1, 2, 3):
                for b in (1, 2, 5):
                    yield 'build_authors_layout', (a * r * 4, b * r * 4, r, 4, shifted)


def main() -> int:
    with open(SOURCE, encoding='utf-8') as fin:
        source = fin.read()
    reference = load(source, 'region_geometry_reference')
    for number, (mutant, (old, new)) in enumerate(MUTANTS.items()):
        if source.count(old) != 1:
            raise SystemExit(f'{mutant}: {old!r} is not found exactly once in {SOURCE} (the module changed)')
        mutated = load(source.replace(old, new), f'region_geometry_mutant_{number}')
        cases = list(geometries())
        differ = sum(not same(getattr(reference, f)(*args), getattr(mutated, f)(*args)) for f, args in cases)
        print(f'{mutant}: {differ} of {len(cases)} geometries differ')
    return 0


if __name__ == '__main__':
    sys.exit(main())
