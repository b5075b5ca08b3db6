"""BBBC006Dataset on a miniature replica of the published z-stack layout."""

import os

import numpy as np
import pytest
import tifffile
import torch

from helpers.layouts import bbbc_field_image, make_bbbc006, make_lfdof
from mpt_data import BBBC006Dataset
from mpt_data.bbbc006_dataset import parse_file_name
from mpt_data.image_io import ImageReadError


def _opt(root, **kw):
    opt = dict(name='bbbc', type='BBBC006Dataset', dataroot=str(root), channel='both', phase='val',
               normalize='dtype', split='all')
    opt.update(kw)
    return opt


def test_pairs_match_field_not_file_name(tmp_path):
    fields = make_bbbc006(tmp_path)
    ds = BBBC006Dataset(_opt(tmp_path))
    assert len(ds) == len(fields) * 3  # inputs z 2, 6, 10
    for lq_path, gt_path, field in ds.samples:
        assert '_z_16' in gt_path and '_z_16' not in lq_path
        assert parse_file_name(os.path.basename(lq_path)) == parse_file_name(os.path.basename(gt_path)) == field
        assert os.path.basename(lq_path) != os.path.basename(gt_path)
    # content check: the gt of each sample is the field's own image (brightness differs per field)
    sample = ds[5]
    field = ds.samples[5][2]
    expected = bbbc_field_image(fields[field]).astype(np.float32) / 65535
    assert torch.equal(sample['gt'][0], torch.from_numpy(expected))
    assert sample['lq'].shape == (1, 40, 48) and sample['lq'].dtype == torch.float32


def test_channel_option(tmp_path):
    make_bbbc006(tmp_path)
    w2 = BBBC006Dataset(_opt(tmp_path, channel='w2'))
    assert {f[2] for _, _, f in w2.samples} == {'2'}
    assert len(w2) * 2 == len(BBBC006Dataset(_opt(tmp_path)))
    with pytest.raises(ValueError, match='w3'):
        BBBC006Dataset(_opt(tmp_path, channel='w3'))


def test_well_split_is_disjoint_and_deterministic(tmp_path):
    make_bbbc006(tmp_path)
    train = BBBC006Dataset(_opt(tmp_path, split='train', test_fraction=0.5))
    test = BBBC006Dataset(_opt(tmp_path, split='test', test_fraction=0.5))
    assert train.wells and test.wells
    assert not set(train.wells) & set(test.wells)
    assert set(train.wells) | set(test.wells) == {'a01', 'a02', 'b03', 'c04', 'd05', 'e06', 'f07', 'g08'}
    assert len(train) + len(test) == len(BBBC006Dataset(_opt(tmp_path)))
    assert BBBC006Dataset(_opt(tmp_path, split='test', test_fraction=0.5)).wells == test.wells
    forced = BBBC006Dataset(_opt(tmp_path, split='test', test_wells=['B03']))
    assert forced.wells == ['b03']


def test_split_seed_changes_the_split_as_the_documented_hash_says(tmp_path):
    import hashlib

    make_bbbc006(tmp_path)
    wells = ['a01', 'a02', 'b03', 'c04', 'd05', 'e06', 'f07', 'g08']

    def expected(seed):  # independent: md5 of '<seed>:<WELL>', first 32 bits as a fraction, below test_fraction
        return sorted(w for w in wells if int(hashlib.md5(f'{seed}:{w.upper()}'.encode()).hexdigest()[:8], 16)
                      / 2**32 < 0.5)

    seed = next(s for s in range(1, 100) if expected(s) != expected(0))
    for split_seed in (0, seed):
        got = BBBC006Dataset(_opt(tmp_path, split='test', test_fraction=0.5, split_seed=split_seed)).wells
        assert sorted(got) == expected(split_seed)
    assert expected(seed) != expected(0)


def test_normalisations(tmp_path):
    fields = make_bbbc006(tmp_path, wells=('a01',), sites=('1',), channels=('1',))
    raw_gt = bbbc_field_image(fields[('a01', '1', '1')]).astype(np.float64)
    lq_dir = tmp_path / 'BBBC006_v1_images_z_02'
    raw_lq = tifffile.imread(lq_dir / os.listdir(lq_dir)[0]).astype(np.float64)
    # default: the input's own percentiles, the same (unclipped) affine map for the ground truth
    opt = _opt(tmp_path, input_planes=[2], norm_percentiles=[0, 100])
    del opt['normalize']
    default = BBBC006Dataset(opt)[0]
    low, high = raw_lq.min(), raw_lq.max()
    assert float(default['lq'].min()) == 0.0 and float(default['lq'].max()) == 1.0
    assert np.allclose(default['gt'][0].numpy(), (raw_gt - low) / (high - low), atol=1e-6)
    assert float(default['gt'].max()) > 1.0  # the sharper ground truth exceeds the input's range: not clipped
    # legacy: the ground truth's map (clipped); 'percentile' is its old name
    for name in ('gt_percentile', 'percentile'):
        pct = BBBC006Dataset(_opt(tmp_path, normalize=name, norm_percentiles=[0, 100]))[0]
        assert float(pct['gt'].min()) == 0.0 and float(pct['gt'].max()) == 1.0
        expected = (raw_gt - raw_gt.min()) / (raw_gt.max() - raw_gt.min())
        assert np.allclose(pct['gt'][0].numpy(), expected, atol=1e-6)
        assert float(pct['lq'].max()) < 1.0 and float(pct['lq'].min()) > 0.0
    fixed = BBBC006Dataset(_opt(tmp_path, normalize='fixed', norm_max=4095))[0]
    assert np.allclose(fixed['gt'][0].numpy(), np.clip(raw_gt / 4095, 0, 1), atol=1e-6)
    dtype = BBBC006Dataset(_opt(tmp_path, normalize='dtype'))[0]
    assert np.allclose(dtype['gt'][0].numpy(), raw_gt / 65535, atol=1e-7)
    with pytest.raises(ValueError, match='normalize must be one of'):
        BBBC006Dataset(_opt(tmp_path, normalize='gt'))


def test_flat_ground_truth_is_an_error(tmp_path):
    make_bbbc006(tmp_path, wells=('a01',), sites=('1',), channels=('1',))
    gt_dir = tmp_path / 'BBBC006_v1_images_z_16'
    gt_file = gt_dir / os.listdir(gt_dir)[0]
    tifffile.imwrite(gt_file, np.full((40, 48), 700, np.uint16))
    ds = BBBC006Dataset(_opt(tmp_path, normalize='gt_percentile'))
    with pytest.raises(ImageReadError, match=gt_file.name):
        ds[0]
    lq_dir = tmp_path / 'BBBC006_v1_images_z_02'
    lq_file = lq_dir / os.listdir(lq_dir)[0]
    tifffile.imwrite(lq_file, np.full((40, 48), 300, np.uint16))  # flat input: the default map names it
    with pytest.raises(ImageReadError, match=lq_file.name):
        BBBC006Dataset(_opt(tmp_path, normalize='input_percentile', input_planes=[2]))[0]
    assert float(BBBC006Dataset(_opt(tmp_path, normalize='dtype'))[0]['gt'].max()) == pytest.approx(700 / 65535)


def test_missing_in_focus_plane_names_the_input(tmp_path):
    make_bbbc006(tmp_path, wells=('a01', 'a02'), sites=('1',), channels=('1',))
    gt_dir = tmp_path / 'BBBC006_v1_images_z_16'
    victim = [n for n in os.listdir(gt_dir) if '_a02_' in n][0]
    os.remove(gt_dir / victim)
    with pytest.raises(ValueError, match=r'Missing in-focus plane z16 for .*mcf-z-stacks-03212011_a02_s1_w1'):
        BBBC006Dataset(_opt(tmp_path))


def test_bad_images_are_named(tmp_path):
    make_bbbc006(tmp_path, wells=('a01',), sites=('1',), channels=('1',))
    lq_dir = tmp_path / 'BBBC006_v1_images_z_02'
    lq_file = lq_dir / os.listdir(lq_dir)[0]
    data = lq_file.read_bytes()
    lq_file.write_bytes(data[: len(data) // 2])  # truncated
    ds = BBBC006Dataset(_opt(tmp_path, input_planes=[2]))
    with pytest.raises(ImageReadError, match=lq_file.name):
        ds[0]
    tifffile.imwrite(lq_file, np.zeros((30, 48), np.uint16))  # size differs from its ground truth
    with pytest.raises(ImageReadError, match=f'{lq_file.name}.*48x30.*48x40'):
        ds[0]
    tifffile.imwrite(lq_file, np.zeros((40, 48, 3), np.uint16))  # not grayscale
    with pytest.raises(ImageReadError, match=f'{lq_file.name}.*3 channel'):
        ds[0]


def test_empty_or_missing_plane_folder(tmp_path):
    make_bbbc006(tmp_path, wells=('a01',), sites=('1',), channels=('1',))
    for name in os.listdir(tmp_path / 'BBBC006_v1_images_z_06'):
        os.remove(tmp_path / 'BBBC006_v1_images_z_06' / name)
    with pytest.raises(ValueError, match='BBBC006_v1_images_z_06.*no TIFF'):
        BBBC006Dataset(_opt(tmp_path))
    with pytest.raises(FileNotFoundError, match='BBBC006_v1_images_z_07'):
        BBBC006Dataset(_opt(tmp_path, input_planes=[7]))


def test_training_crops_are_aligned(tmp_path):
    make_bbbc006(tmp_path, wells=('a01', 'a02'), identical=True)
    ds = BBBC006Dataset(_opt(tmp_path, phase='train', gt_size=24, use_hflip=True, use_vflip=True,
                             use_scale=True, scale_range=[0.6, 1.4]))
    full = BBBC006Dataset(_opt(tmp_path))[0]['gt']
    crops = [ds[i % len(ds)] for i in range(12)]
    for sample in crops:
        assert sample['lq'].shape == sample['gt'].shape == (1, 24, 24)
        assert torch.equal(sample['lq'], sample['gt'])  # identical planes -> identical crops
    assert not all(torch.equal(crops[0]['gt'], c['gt']) for c in crops[1:])
    assert float(full.max()) <= 1.0


def test_extra_lfdof_in_grayscale(tmp_path):
    """The paper's EFCR_ex on BBBC006: LFDOF converted to one channel rides along every sample."""
    make_bbbc006(tmp_path / 'B', wells=('a01',), sites=('1',), channels=('1',))
    make_lfdof(tmp_path / 'LFDOF', 'train')
    ds = BBBC006Dataset(_opt(tmp_path / 'B', phase='train', gt_size=24, extra_dataset=dict(
        type='PairedDefocusDataset', layout='lfdof', dataroot=str(tmp_path / 'LFDOF'), split='train', to_gray=True)))
    sample = ds[0]
    assert sample['extra_lq'].shape == sample['extra_gt'].shape == sample['lq'].shape == (1, 24, 24)
    assert 'ground_truth' in sample['extra_gt_path']
