"""Datasets own their option facts: a new registered ``PluginDataset`` is checked and normalised with no table edited.

The class below is what a user writes for their own folder layout (``docs/developer/extending.md``): the option
checks of ``mpt-train`` and the normalisation ``mpt-deblur`` reads from an option file then come from it alone.
"""

import numpy as np
import pytest
from basicsr.utils.registry import DATASET_REGISTRY

from mpt_common.option_checks import OptionError, check_options
from mpt_data import BBBC006Dataset, PairedDefocusDataset, SyntheticDefocusDataset, UnlabeledDefocusDataset
from mpt_data.image_io import ImageLoader, ImageReadError, read_meta_info
from mpt_data.normalization import dataset_default, from_train_options
from mpt_data.plugin_dataset import COMMON_KEYS, PluginDataset
from mpt_plugin.smoke import smoke_options


class TiledWellsDataset(PluginDataset):
    """A user's own layout: blurry images of a plate, one folder per well (only the facts matter here)."""

    OPTION_KEYS = ('dataroot_lq', 'wells')
    REQUIRED_KEYS = ('dataroot_lq', 'wells')
    DEFAULT_NORMALIZE = 'input_percentile'
    DEFAULT_NAME = 'tiled wells'

    def __init__(self, opt: dict) -> None:
        self.opt = opt
        self.loader = ImageLoader({'type': 'disk'}, None, in_chans=1)
        self.paths = list(opt['paths'])

    def header_samples(self) -> list:
        return [[(p, lambda p=p: self.loader.inspect(p))] for p in self.paths]


@pytest.fixture(scope='module')
def registered_type():
    name = 'TiledWellsDataset'
    if name not in DATASET_REGISTRY:
        DATASET_REGISTRY.register(TiledWellsDataset)
    return name


def test_every_plugin_dataset_declares_its_facts():
    assert BBBC006Dataset.DEFAULT_NORMALIZE == 'input_percentile'
    for cls in (PairedDefocusDataset, UnlabeledDefocusDataset, SyntheticDefocusDataset):
        assert cls.DEFAULT_NORMALIZE == 'dtype'
    for cls in (BBBC006Dataset, PairedDefocusDataset, UnlabeledDefocusDataset, SyntheticDefocusDataset):
        assert issubclass(cls, PluginDataset) and DATASET_REGISTRY.get(cls.__name__) is cls
        assert set(COMMON_KEYS) < set(cls.option_keys())
    assert BBBC006Dataset.required_keys({}, train=True) == ['gt_size', 'dataroot']
    assert UnlabeledDefocusDataset.required_keys({}, train=False) == ['dataroot_lq']
    assert PairedDefocusDataset.required_keys({'layout': 'dpdd'}, train=False) == ['dataroot', 'split']
    assert PairedDefocusDataset.required_keys({'layout': 'lfdof'}, train=False) == ['dataroot_lq', 'dataroot_gt']
    assert SyntheticDefocusDataset.required_keys({}, train=True) == ['gt_size']


def test_a_new_dataset_class_is_checked_from_its_own_declaration(registered_type, tmp_path):
    opt = smoke_options(str(tmp_path), val=False)
    opt['datasets'] = {'train': {'type': registered_type, 'phase': 'train', 'dataroot_lq': 'x', 'welsl': 3}}
    with pytest.raises(OptionError) as err:
        check_options(opt, is_train=False)
    message = str(err.value)
    assert "datasets.train: unknown key 'welsl'; did you mean 'wells'?" in message
    assert "datasets.train: required key 'wells' is missing" in message
    assert "datasets.train: required key 'gt_size' is missing" in message
    opt['datasets'] = {'val': {'type': registered_type, 'phase': 'val', 'dataroot_lq': 'x', 'wells': ['A01']}}
    check_options(opt, is_train=False)


def test_a_new_dataset_class_brings_its_default_normalisation_to_mpt_deblur(registered_type):
    assert dataset_default(registered_type) == 'input_percentile'
    assert from_train_options({'datasets': {'val': {'type': registered_type}}}).mode == 'input_percentile'
    assert dataset_default('PairedImageDataset') == 'dtype'  # BasicSR's own: divide by the dtype maximum


def test_shared_check_files_and_meta_info(tmp_path):
    good, bad = tmp_path / 'good.png', tmp_path / 'bad.png'
    import cv2

    cv2.imwrite(str(good), np.zeros((8, 8), np.uint8))
    bad.write_bytes(b'not an image')
    ds = TiledWellsDataset({'paths': [str(good)], 'name': 'plate'})
    assert ds.check_files() == 1
    ds = TiledWellsDataset({'paths': [str(good), str(bad)]})
    with pytest.raises(ImageReadError, match=r"(?s)1 problem\(s\) in dataset 'tiled wells'.*bad\.png"):
        ds.check_files()
    meta = tmp_path / 'meta.txt'
    meta.write_text('a/1.png (8,8,1)\n\n  b/2.png\n')
    assert read_meta_info(str(meta)) == ['a/1.png', 'b/2.png']
