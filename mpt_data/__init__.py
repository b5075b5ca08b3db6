"""Datasets of the paper's experiments (Sec. 4.1), registered in BasicSR's DATASET_REGISTRY.

``BBBC006Dataset`` (z-stack pairs), ``PairedDefocusDataset`` (3DHistech, CaDISBlur, DPDD, LFDOF),
``UnlabeledDefocusDataset`` (WNLO, CataBlur, CUHK), ``SyntheticDefocusDataset`` (pairs made from sharp images with
the PSFs of ``psf`` and the noise of ``noise``); their common base (option facts, ``check_files``) in
``plugin_dataset``, shared reading in ``image_io``, augmentation in ``transforms``, EFCR_ex extra data in
``extra_data``, disk-PSF defocus synthesis in ``defocus``.

Every ``*_dataset.py`` module of this folder is imported here, as BasicSR does for its own ``basicsr/data``, so a
new dataset is one new file (``docs/extending.md``).
"""

import importlib
from pathlib import Path

import mpt_common.basicsr_compat  # noqa: F401  (before any basicsr import)

DATASET_MODULES = [importlib.import_module(f'{__name__}.{path.stem}')
                   for path in sorted(Path(__file__).parent.glob('*_dataset.py'))]

from mpt_data.bbbc006_dataset import BBBC006Dataset  # noqa: E402
from mpt_data.paired_defocus_dataset import PairedDefocusDataset  # noqa: E402
from mpt_data.synthetic_defocus_dataset import SyntheticDefocusDataset  # noqa: E402
from mpt_data.unlabeled_dataset import UnlabeledDefocusDataset  # noqa: E402

__all__ = ['BBBC006Dataset', 'PairedDefocusDataset', 'SyntheticDefocusDataset', 'UnlabeledDefocusDataset']
