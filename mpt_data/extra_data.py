"""Extra data for EFCR_ex (Sec. 3.2, "Knowledge transfer from extra data").

A training dataset option ``extra_dataset: {type: ..., ...}`` builds a second dataset with
:func:`basicsr.data.build_dataset`; every sample of the main dataset then also carries ``extra_lq`` and
``extra_lq_path``, plus ``extra_gt`` and ``extra_gt_path`` when the extra dataset is labeled (LFDOF for
EFCR_ex, an unlabeled microscopy set such as WNLO/CataBlur for the unlabeled variant).

* The extra dataset inherits ``phase``, ``gt_size`` and ``in_chans`` from the main one unless it sets them; a
  different ``gt_size`` is an error because the extra crops must batch with the main ones.
* ``extra_sampling``: ``random`` (default; index drawn with Python's ``random``, which BasicSR's
  ``worker_init_fn`` seeds per worker from the experiment seed) or ``cyclic`` (``index % len(extra)``, fully
  deterministic, walks the extra set in order alongside the main one).
"""

from __future__ import annotations

import random
from typing import Optional

EXTRA_KEYS = ('lq', 'lq_path', 'gt', 'gt_path')


class ExtraDatasetMixin:
    """Adds the ``extra_*`` keys to samples; call :meth:`init_extra` in ``__init__``, :meth:`attach_extra` last."""

    extra = None
    extra_sampling = 'random'
    default_in_chans = 3  # channels of the main samples when the options do not say (BBBC006: 1)

    def init_extra(self, opt: dict) -> None:
        extra_opt: Optional[dict] = opt.get('extra_dataset')
        if not extra_opt:
            self.extra = None
            return
        from basicsr.data import build_dataset

        extra_opt = dict(extra_opt)
        if 'type' not in extra_opt:
            raise ValueError('extra_dataset needs a type (e.g. PairedDefocusDataset or UnlabeledDefocusDataset).')
        if extra_opt.get('extra_dataset'):
            raise ValueError('extra_dataset cannot itself have an extra_dataset.')
        extra_opt.setdefault('name', f"{opt.get('name', 'train')}_extra")
        extra_opt.setdefault('phase', opt.get('phase', 'train'))
        extra_opt.setdefault('in_chans', opt.get('in_chans', self.default_in_chans))
        if 'io_backend' in opt:
            extra_opt.setdefault('io_backend', opt['io_backend'])
        if 'gt_size' in opt:
            extra_opt.setdefault('gt_size', opt['gt_size'])
            if int(extra_opt['gt_size']) != int(opt['gt_size']):
                raise ValueError(f"extra_dataset gt_size {extra_opt['gt_size']} differs from the main gt_size "
                                 f"{opt['gt_size']}; extra crops must batch with the main ones.")
        self.extra_sampling = opt.get('extra_sampling', 'random')
        if self.extra_sampling not in ('random', 'cyclic'):
            raise ValueError(f"extra_sampling must be 'random' or 'cyclic', got {self.extra_sampling!r}.")
        self.extra = build_dataset(extra_opt)
        if len(self.extra) == 0:
            raise ValueError(f"extra_dataset {extra_opt['name']!r} is empty.")

    def attach_extra(self, sample: dict, index: int) -> dict:
        """Add ``extra_lq``/``extra_lq_path`` (+ ``extra_gt``/``extra_gt_path`` when labeled) to ``sample``."""
        if self.extra is None:
            return sample
        if self.extra_sampling == 'cyclic':
            extra_index = index % len(self.extra)
        else:
            extra_index = random.randrange(len(self.extra))
        extra = self.extra[extra_index]
        if extra['lq'].shape[0] != sample['lq'].shape[0]:
            raise ValueError(f"Extra image {extra['lq_path']!r} has {extra['lq'].shape[0]} channel(s) but the main "
                             f"sample {sample['lq_path']!r} has {sample['lq'].shape[0]} (use to_gray: true).")
        for key in EXTRA_KEYS:
            if key in extra:
                sample[f'extra_{key}'] = extra[key]
        return sample
