"""PairedDefocusDataset, UnlabeledDefocusDataset and extra_dataset on miniature published layouts."""

import os

import cv2
import numpy as np
import pytest
import torch

from helpers.layouts import make_dpdd, make_lfdof, make_paired_folder, texture, write_png
from mpt_data import PairedDefocusDataset, UnlabeledDefocusDataset
from mpt_data.image_io import ImageReadError


def _opt(**kw):
    opt = dict(name='paired', type='PairedDefocusDataset', phase='val', io_backend={'type': 'disk'})
    opt.update(kw)
    return opt


def test_folder_layout_8bit_rgb(tmp_path):
    make_paired_folder(tmp_path / 'blur', tmp_path / 'gt', ['a.png', 'b.png'], seed=3)
    ds = PairedDefocusDataset(_opt(dataroot_lq=str(tmp_path / 'blur'), dataroot_gt=str(tmp_path / 'gt')))
    assert len(ds) == 2
    sample = ds[1]
    assert os.path.basename(sample['lq_path']) == os.path.basename(sample['gt_path']) == 'b.png'
    expected = texture(4, 36, 44, 3).astype(np.float32) / 255  # RGB order kept
    assert torch.allclose(sample['gt'], torch.from_numpy(expected.transpose(2, 0, 1)))


def test_dpdd_layout_16bit(tmp_path):
    make_dpdd(tmp_path, 'val', n=2)
    ds = PairedDefocusDataset(_opt(layout='dpdd', dataroot=str(tmp_path), split='val'))
    sample = ds[0]
    raw = cv2.imread(str(tmp_path / 'val_c' / 'target' / '0000.png'), cv2.IMREAD_UNCHANGED)
    assert raw.dtype == np.uint16
    expected = raw[:, :, ::-1].astype(np.float32).transpose(2, 0, 1) / 65535
    assert torch.allclose(sample['gt'], torch.from_numpy(expected), atol=1e-7)
    assert sample['gt_path'].endswith(os.path.join('val_c', 'target', '0000.png'))
    assert sample['lq_path'].endswith(os.path.join('val_c', 'source', '0000.png'))


def test_lfdof_several_inputs_per_ground_truth(tmp_path):
    make_lfdof(tmp_path, 'test')
    ds = PairedDefocusDataset(_opt(layout='lfdof', dataroot=str(tmp_path), split='test'))
    assert len(ds) == 9
    for lq, _, gt in ds.samples:
        assert os.path.basename(os.path.dirname(lq)) == os.path.splitext(os.path.basename(gt))[0]
    meta = tmp_path / 'meta.txt'
    meta.write_text('s002/001.png\ns003/000.png\n')
    sub = PairedDefocusDataset(_opt(layout='lfdof', dataroot=str(tmp_path), split='test', meta_info_file=str(meta)))
    assert [os.path.basename(g) for _, _, g in sub.samples] == ['s002.png', 's003.png']
    os.remove(tmp_path / 'test_data' / 'ground_truth' / 's003.png')
    with pytest.raises(ValueError, match=r's003[/\\]000.png.*no ground truth'):
        PairedDefocusDataset(_opt(layout='lfdof', dataroot=str(tmp_path), split='test'))


def test_several_input_folders_and_meta_info(tmp_path):
    """CaDISBlur style: blur_anatomy and blur_instruments both paired with sharp."""
    make_paired_folder(tmp_path / 'blur_anatomy', tmp_path / 'sharp', ['f1.png', 'f2.png'])
    make_paired_folder(tmp_path / 'blur_instruments', tmp_path / 'sharp', ['f1.png', 'f2.png'])
    roots = [str(tmp_path / 'blur_anatomy'), str(tmp_path / 'blur_instruments')]
    ds = PairedDefocusDataset(_opt(dataroot_lq=roots, dataroot_gt=str(tmp_path / 'sharp')))
    assert len(ds) == 4 and {os.path.basename(os.path.dirname(lq)) for lq, _, _ in ds.samples} == {
        'blur_anatomy', 'blur_instruments'}
    meta = tmp_path / 'meta.txt'
    meta.write_text('f2.png (36,44,3)\n')
    ds = PairedDefocusDataset(_opt(dataroot_lq=roots, dataroot_gt=str(tmp_path / 'sharp'), meta_info_file=str(meta)))
    assert [os.path.basename(g) for _, _, g in ds.samples] == ['f2.png', 'f2.png']


def test_channels_grayscale_and_errors(tmp_path):
    make_paired_folder(tmp_path / 'lq', tmp_path / 'gt', ['x.png'])
    opt = _opt(dataroot_lq=str(tmp_path / 'lq'), dataroot_gt=str(tmp_path / 'gt'), in_chans=1)
    with pytest.raises(ImageReadError, match=r'lq[/\\]x.png.*3 channel.*in_chans is 1'):
        PairedDefocusDataset(opt)[0]
    gray = PairedDefocusDataset(dict(opt, to_gray=True))[0]
    assert gray['lq'].shape == (1, 36, 44)
    make_paired_folder(tmp_path / 'glq', tmp_path / 'ggt', ['g.png'], c=1)
    gopt = _opt(dataroot_lq=str(tmp_path / 'glq'), dataroot_gt=str(tmp_path / 'ggt'), in_chans=1)
    assert PairedDefocusDataset(gopt)[0]['gt'].shape == (1, 36, 44)
    with pytest.raises(ImageReadError, match=r'glq[/\\]g.png.*1 channel'):
        PairedDefocusDataset(dict(gopt, in_chans=3))[0]


def test_pair_size_mismatch_and_bad_files(tmp_path):
    make_paired_folder(tmp_path / 'lq', tmp_path / 'gt', ['x.png'])
    write_png(tmp_path / 'lq' / 'x.png', texture(0, 30, 44, 3))
    ds = PairedDefocusDataset(_opt(dataroot_lq=str(tmp_path / 'lq'), dataroot_gt=str(tmp_path / 'gt')))
    with pytest.raises(ImageReadError, match=r'lq[/\\]x.png.*44x30.*gt[/\\]x.png.*44x36'):
        ds[0]
    data = (tmp_path / 'gt' / 'x.png').read_bytes()
    (tmp_path / 'gt' / 'x.png').write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError, match=r'gt[/\\]x.png.*truncated'):
        ds[0]


def test_empty_and_missing_folders(tmp_path):
    (tmp_path / 'lq').mkdir()
    make_paired_folder(tmp_path / 'unused', tmp_path / 'gt', ['x.png'])
    with pytest.raises(ValueError, match=r"'.*lq' contains no image"):
        PairedDefocusDataset(_opt(dataroot_lq=str(tmp_path / 'lq'), dataroot_gt=str(tmp_path / 'gt')))
    with pytest.raises(FileNotFoundError, match='nope'):
        PairedDefocusDataset(_opt(dataroot_lq=str(tmp_path / 'nope'), dataroot_gt=str(tmp_path / 'gt')))
    (tmp_path / 'empty').mkdir()
    with pytest.raises(ValueError, match='No image found'):
        UnlabeledDefocusDataset(dict(name='u', phase='val', dataroot_lq=str(tmp_path / 'empty')))


def test_training_augmentation_keeps_pairs_aligned(tmp_path):
    make_paired_folder(tmp_path / 'lq', tmp_path / 'gt', ['a.png', 'b.png'], h=40, w=50, identical=True)
    ds = PairedDefocusDataset(_opt(phase='train', dataroot_lq=str(tmp_path / 'lq'), dataroot_gt=str(tmp_path / 'gt'),
                                   gt_size=32, use_hflip=True, use_vflip=True, scale_range=[0.5, 1.5]))
    shapes = set()
    for i in range(10):
        sample = ds[i % 2]
        shapes.add(tuple(sample['lq'].shape))
        assert torch.equal(sample['lq'], sample['gt'])
    assert shapes == {(3, 32, 32)}
    with pytest.raises(ValueError, match='smaller than gt_size 64'):
        PairedDefocusDataset(_opt(phase='train', dataroot_lq=str(tmp_path / 'lq'),
                                  dataroot_gt=str(tmp_path / 'gt'), gt_size=64, use_scale=False))[0]


def test_flips_and_scaling_act():
    """Augmentation really changes the crops: four flip states, and a scale factor changes the pixel pitch."""
    from mpt_data.transforms import random_flips, train_augment

    img = texture(1, 20, 30, 1)[:, :, None].astype(np.float32) / 255
    seen = {random_flips([img], True, True)[0].tobytes() for _ in range(40)}
    assert len(seen) == 4  # identity, h-flip, v-flip, both
    ramp = np.tile(np.linspace(0, 1, 80, dtype=np.float32), (60, 1))[:, :, None]  # slope 1/79 per pixel
    opt = dict(gt_size=16, use_hflip=False, use_vflip=False)
    for factor in (0.5, 1.0, 2.0):
        (crop,) = train_augment([ramp], dict(opt, scale_range=[factor, factor]))
        assert crop.shape == (16, 16, 1)
        slope = float(np.median(np.diff(crop[8, :, 0])))
        assert slope == pytest.approx(1 / 79 / factor, rel=0.1)
    (small,) = train_augment([ramp[:20, :20]], dict(opt, scale_range=[0.1, 0.1]))
    assert small.shape == (16, 16, 1)  # the factor is raised so the crop still fits


def test_unlabeled_dataset(tmp_path):
    for i in range(3):
        write_png(tmp_path / 'wnlo' / 'sub' / f'{i}.png', texture(i, 40, 40, 3))
    ds = UnlabeledDefocusDataset(dict(name='u', phase='train', dataroot_lq=str(tmp_path / 'wnlo'), gt_size=16))
    sample = ds[0]
    assert set(sample) == {'lq', 'lq_path'} and sample['lq'].shape == (3, 16, 16)
    meta = tmp_path / 'meta.txt'
    meta.write_text('sub/2.png\n')
    ds = UnlabeledDefocusDataset(dict(name='u', phase='val', dataroot_lq=str(tmp_path / 'wnlo'),
                                      meta_info_file=str(meta)))
    assert len(ds) == 1 and ds[0]['lq_path'].endswith('2.png') and ds[0]['lq'].shape == (3, 40, 40)


def test_extra_dataset_labeled_and_unlabeled(tmp_path):
    make_paired_folder(tmp_path / 'lq', tmp_path / 'gt', ['a.png', 'b.png'], c=1, h=40, w=40)
    make_lfdof(tmp_path / 'LFDOF', 'train', h=40, w=48)
    main = dict(_opt(phase='train', dataroot_lq=str(tmp_path / 'lq'), dataroot_gt=str(tmp_path / 'gt'),
                     gt_size=24, in_chans=1))
    labeled = dict(main, extra_dataset=dict(type='PairedDefocusDataset', layout='lfdof',
                                            dataroot=str(tmp_path / 'LFDOF'), split='train', to_gray=True))
    sample = PairedDefocusDataset(labeled)[0]
    assert sample['extra_lq'].shape == sample['extra_gt'].shape == sample['lq'].shape == (1, 24, 24)
    assert 'LFDOF' in sample['extra_lq_path'] and 'ground_truth' in sample['extra_gt_path']
    unlabeled = dict(main, extra_sampling='cyclic', extra_dataset=dict(
        type='UnlabeledDefocusDataset', dataroot_lq=str(tmp_path / 'LFDOF' / 'train_data' / 'input'), to_gray=True))
    ds = PairedDefocusDataset(unlabeled)
    sample = ds[1]
    assert 'extra_gt' not in sample and sample['extra_lq'].shape == (1, 24, 24)
    assert sample['extra_lq_path'] == ds.extra.paths[1]  # cyclic sampling
    batch = torch.utils.data.default_collate([ds[0], ds[1]])
    assert batch['extra_lq'].shape == (2, 1, 24, 24)
    with pytest.raises(ValueError, match='gt_size 32 differs'):
        PairedDefocusDataset(dict(labeled, extra_dataset=dict(labeled['extra_dataset'], gt_size=32)))
    no_gray = dict(main, extra_dataset=dict(type='UnlabeledDefocusDataset',
                                            dataroot_lq=str(tmp_path / 'LFDOF' / 'train_data' / 'input')))
    with pytest.raises(ImageReadError, match='to_gray'):
        PairedDefocusDataset(no_gray)[0]
