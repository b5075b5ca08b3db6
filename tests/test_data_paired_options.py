"""PairedDefocusDataset's layouts resolved to folders, its defaults and every refusal's full message."""

import os

import numpy as np
import pytest
from raised import raised
from test_data_layouts import make_dpdd, make_lfdof, make_paired_folder, write_png

from mpt_data import PairedDefocusDataset
from mpt_data.image_io import ImageReadError
from mpt_data.paired_defocus_dataset import pair_folder


def _opt(**kw):
    return {'name': 'paired', 'type': 'PairedDefocusDataset', 'phase': 'val', **kw}


def _error(kind=ValueError, **kw) -> str:
    return raised(kind, PairedDefocusDataset, _opt(**kw))


def test_defaults_folder_layout_rgb_dtype(tmp_path):
    make_paired_folder(tmp_path / 'lq', tmp_path / 'gt', ['a.png'])
    ds = PairedDefocusDataset(_opt(dataroot_lq=str(tmp_path / 'lq'), dataroot_gt=str(tmp_path / 'gt')))
    assert ds.layout == 'folder' and ds.norm.mode == 'dtype' and not ds.is_lmdb and ds.loader.in_chans == 3
    assert ds.samples == [(str(tmp_path / 'lq' / 'a.png'), 'default', str(tmp_path / 'gt' / 'a.png'))]


def test_layout_roots(tmp_path):
    make_dpdd(tmp_path, 'test', n=1)
    ds = PairedDefocusDataset(_opt(layout='dpdd', dataroot=str(tmp_path), split='test'))
    assert ds._roots() == ([str(tmp_path / 'test_c' / 'source')], str(tmp_path / 'test_c' / 'target'))
    ds.is_lmdb = True
    assert ds._roots() == ([str(tmp_path / 'test_c' / 'source.lmdb')], str(tmp_path / 'test_c' / 'target.lmdb'))
    make_lfdof(tmp_path, 'train', scenes=('s001',), per_scene=1)
    ds = PairedDefocusDataset(_opt(layout='lfdof', dataroot=str(tmp_path), split='train'))
    base = tmp_path / 'train_data'
    assert ds._roots() == ([str(base / 'input')], str(base / 'ground_truth'))
    ds.is_lmdb = True
    assert ds._roots() == ([str(base / 'input.lmdb')], str(base / 'ground_truth.lmdb'))
    lf = PairedDefocusDataset(_opt(layout='lfdof', dataroot_lq=str(base / 'input'),
                                   dataroot_gt=str(base / 'ground_truth')))
    assert lf.samples == ds.samples


def test_layout_option_errors(tmp_path):
    assert _error(layout='zip') == "layout must be one of ('folder', 'dpdd', 'lfdof'), got 'zip'."
    assert _error(layout='dpdd', dataroot=str(tmp_path)) == 'layout dpdd needs dataroot and split.'
    assert _error(layout='dpdd', split='train') == 'layout dpdd needs dataroot and split.'
    assert _error(layout='dpdd', dataroot=str(tmp_path), split='all') == (
        "DPDD split must be train, val or test, got 'all'.")
    assert _error(layout='lfdof', dataroot=str(tmp_path)) == 'layout lfdof needs dataroot and split.'
    assert _error(layout='lfdof', dataroot=str(tmp_path), split='val') == (
        "LFDOF split must be train or test, got 'val'.")
    assert _error(dataroot_gt=str(tmp_path)) == 'layout folder needs dataroot_lq and dataroot_gt.'
    assert _error(dataroot_lq=str(tmp_path)) == 'layout folder needs dataroot_lq and dataroot_gt.'
    assert _error(layout='lfdof', dataroot_lq=[str(tmp_path), str(tmp_path)], dataroot_gt=str(tmp_path)) == (
        'layout lfdof takes a single dataroot_lq (the input folder).')


def test_folder_errors(tmp_path):
    missing = str(tmp_path / 'missing')
    assert _error(FileNotFoundError, dataroot_lq=missing, dataroot_gt=missing) == (
        f'Image folder {missing!r} does not exist.')
    (tmp_path / 'empty').mkdir()
    (tmp_path / 'empty' / 'readme.txt').write_text('x')
    empty = str(tmp_path / 'empty')
    assert _error(dataroot_lq=empty, dataroot_gt=empty) == f'Folder {empty!r} contains no image.'
    assert _error(FileNotFoundError, layout='lfdof', dataroot_lq=missing, dataroot_gt=empty) == (
        f'LFDOF input folder {missing!r} does not exist.')


def test_unpaired_files_are_all_named(tmp_path):
    make_paired_folder(tmp_path / 'lq', tmp_path / 'gt', ['a.png', 'b.png'])
    os.rename(tmp_path / 'lq' / 'b.png', tmp_path / 'lq' / 'c.png')
    lq, gt = str(tmp_path / 'lq'), str(tmp_path / 'gt')
    pairs, unpaired = pair_folder(lq, gt, ['a.png', 'b.png'])
    assert pairs == [(os.path.join(lq, 'a.png'), os.path.join(gt, 'a.png'))]
    assert unpaired == [f"{os.path.join(gt, 'b.png')!r} has no input 'b.png' in {lq!r}",
                        f"{os.path.join(lq, 'c.png')!r} has no ground truth in {gt!r}"]
    with pytest.raises(ImageReadError) as err:
        PairedDefocusDataset(_opt(dataroot_lq=lq, dataroot_gt=gt))
    assert str(err.value) == "\n".join(["Dataset 'paired': 2 unpaired file(s):", *(f'  - {u}' for u in unpaired)])


def test_filename_template(tmp_path):
    make_paired_folder(tmp_path / 'lq', tmp_path / 'gt', ['a.png'])
    os.rename(tmp_path / 'lq' / 'a.png', tmp_path / 'lq' / 'a_blur.png')
    lq, gt = str(tmp_path / 'lq'), str(tmp_path / 'gt')
    assert pair_folder(lq, gt, ['a.png'], '{}_blur') == ([(os.path.join(lq, 'a_blur.png'),
                                                           os.path.join(gt, 'a.png'))], [])
    ds = PairedDefocusDataset(_opt(dataroot_lq=lq, dataroot_gt=gt, filename_tmpl='{}_blur'))
    assert len(ds) == 1


def test_lfdof_errors(tmp_path):
    make_lfdof(tmp_path, 'test', scenes=('s001', 's002'), per_scene=1)
    base = tmp_path / 'test_data'
    gt_root = str(base / 'ground_truth')
    os.remove(base / 'ground_truth' / 's002.png')
    lq = os.path.join(str(base / 'input'), 's002', sorted(os.listdir(base / 'input' / 's002'))[0])
    assert _error(layout='lfdof', dataroot=str(tmp_path), split='test') == (
        f'Input {lq!r} has no ground truth s002.* in {gt_root!r}.')
    write_png(base / 'ground_truth' / 's001.tif', np.zeros((4, 4, 3), np.uint8))
    assert _error(layout='lfdof', dataroot=str(tmp_path), split='test') == (
        f"Two ground truths for LFDOF scene 's001' in {gt_root!r}: 's001.png' and 's001.tif'.")
