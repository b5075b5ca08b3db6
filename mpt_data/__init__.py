"""Datasets of the paper's experiments (Sec. 4.1), registered in BasicSR's DATASET_REGISTRY.

``BBBC006Dataset`` (z-stack pairs), ``PairedDefocusDataset`` (3DHistech, CaDISBlur, DPDD, LFDOF),
``UnlabeledDefocusDataset`` (WNLO, CataBlur, CUHK), ``SyntheticDefocusDataset`` (pairs made from sharp images with
the PSFs of ``psf`` and the noise of ``noise``); shared reading in ``image_io``, augmentation in
``transforms``, EFCR_ex extra data in ``extra_data``, disk-PSF defocus synthesis in ``defocus``.
"""

import mpt_plugin.compat  # noqa: F401  (before any basicsr import)
from mpt_data.bbbc006_dataset import BBBC006Dataset
from mpt_data.paired_defocus_dataset import PairedDefocusDataset
from mpt_data.synthetic_defocus_dataset import SyntheticDefocusDataset
from mpt_data.unlabeled_dataset import UnlabeledDefocusDataset

__all__ = ['BBBC006Dataset', 'PairedDefocusDataset', 'SyntheticDefocusDataset', 'UnlabeledDefocusDataset']
