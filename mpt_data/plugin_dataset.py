"""The base class of the plugin's datasets: each dataset declares its own option facts here, once.

A dataset class registered in BasicSR's ``DATASET_REGISTRY`` that derives from :class:`PluginDataset` states

* :attr:`~PluginDataset.OPTION_KEYS`: the option keys it reads beyond the :data:`COMMON_KEYS` every plugin dataset
  accepts (BasicSR's data-pipeline keys, the shared reading/normalisation keys, the training augmentation);
* :attr:`~PluginDataset.REQUIRED_KEYS` (or :meth:`~PluginDataset.required_keys` where they depend on the options);
* :attr:`~PluginDataset.DEFAULT_NORMALIZE`: its default ``normalize`` mode (:mod:`mpt_data.normalization`).

The start-up option checks (:mod:`mpt_common.option_checks`) and ``mpt-deblur``'s normalisation lookup
(:func:`mpt_data.normalization.from_train_options`) read these attributes through the registry, so a new dataset
class is checked and deblurred correctly without editing any table. It also brings the shared ``check_files``
(:meth:`~PluginDataset.check_files`, over the samples of :meth:`~PluginDataset.header_samples`); the
``meta_info_file`` reader is :func:`mpt_data.image_io.read_meta_info`. ``docs/developer/extending.md`` shows a new
dataset in one file.
"""

from __future__ import annotations

from typing import Any, List, Mapping, Optional, Sequence

from torch.utils import data

from mpt_data.file_checks import Sample, check_files_enabled, check_samples

# keys BasicSR's data pipeline reads from every dataset section (build_dataloader, prefetchers, parse_options)
BASICSR_KEYS = ('name', 'type', 'phase', 'scale', 'io_backend', 'use_shuffle', 'num_worker_per_gpu',
                'batch_size_per_gpu', 'dataset_enlarge_ratio', 'prefetch_mode', 'pin_memory', 'persistent_workers',
                'num_prefetch_queue')
# read by the shared modules: image_io (in_chans, to_gray), extra_data, file_checks, normalization
SHARED_KEYS = ('in_chans', 'to_gray', 'extra_dataset', 'extra_sampling', 'check_files', 'normalize',
               'norm_percentiles', 'norm_max')
TRAIN_AUGMENT_KEYS = ('gt_size', 'use_scale', 'scale_range', 'use_hflip', 'use_vflip', 'use_rot')  # transforms
COMMON_KEYS = BASICSR_KEYS + SHARED_KEYS + TRAIN_AUGMENT_KEYS


class PluginDataset(data.Dataset):
    """A dataset of this plugin: option facts as class attributes, ``check_files`` over :meth:`header_samples`."""

    OPTION_KEYS: Sequence[str] = ()  # the dataset's own keys (COMMON_KEYS are added by option_keys)
    REQUIRED_KEYS: Sequence[str] = ()  # keys without a default, in every phase
    DEFAULT_NORMALIZE = 'dtype'  # mpt_data.normalization mode when the options set none
    DEFAULT_NAME = 'dataset'  # the dataset's name in messages when the options give no ``name``
    CHECK_CROP_SIZE = True  # check_files: images must be at least gt_size in training without random scaling

    opt: dict

    @classmethod
    def option_keys(cls) -> tuple:
        """Every option key this dataset reads."""
        return COMMON_KEYS + tuple(cls.OPTION_KEYS)

    @classmethod
    def required_keys(cls, opt: Mapping[str, Any], train: bool) -> List[str]:
        """Keys ``opt`` must set (``train``: a training section that does not inherit ``gt_size``)."""
        return (['gt_size'] if train else []) + list(cls.REQUIRED_KEYS)

    @property
    def dataset_name(self) -> str:
        return self.opt.get('name', self.DEFAULT_NAME)

    def header_samples(self) -> List[Sample]:
        """One entry per sample: its files, each as (display name, header reader); overridden by each dataset."""
        raise NotImplementedError

    def min_size(self) -> Optional[int]:
        """The smallest image side training needs (``gt_size`` without random scaling), else None."""
        gt_size = self.opt.get('gt_size') if not self.opt.get('use_scale', True) else None
        return int(gt_size) if self.CHECK_CROP_SIZE and self.opt.get('phase') == 'train' and gt_size else None

    def check_files(self) -> int:
        """Read every image header once and report all bad files together (:mod:`mpt_data.file_checks`)."""
        return check_samples(self.header_samples(), self.dataset_name, self.loader.in_chans, self.loader.to_gray,
                             self.min_size())

    def check_files_if_enabled(self) -> None:
        """:meth:`check_files` when the ``check_files`` option (default: on in training) asks for it."""
        if check_files_enabled(self.opt):
            self.check_files()
