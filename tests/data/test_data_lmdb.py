"""scripts/make_lmdb.py: the LMDB holds exactly the folder data, under the keys the datasets expect."""

import os

import numpy as np
import pytest
import torch

from helpers.layouts import make_bbbc006, make_lfdof, make_paired_folder, write_png
from helpers.scripts import load_script
from mpt_data import BBBC006Dataset, PairedDefocusDataset, UnlabeledDefocusDataset
from mpt_data.image_io import ImageLoader


def _script():
    return load_script('make_lmdb')


def test_bbbc006_lmdb_is_bitwise_identical(tmp_path):
    make_bbbc006(tmp_path / 'BBBC006', wells=('a01', 'b02'), sites=('1',))
    lmdb_path = tmp_path / 'BBBC006.lmdb'
    _script().main(['bbbc006', str(tmp_path / 'BBBC006'), '--output', str(lmdb_path)])
    lines = (lmdb_path / 'meta_info.txt').read_text().split('\n')
    assert 'z16_a01_s1_w2.png (40,48,1) 1' in lines
    base = dict(name='b', phase='val', channel='both', normalize='input_percentile', split='all')
    disk = BBBC006Dataset(dict(base, dataroot=str(tmp_path / 'BBBC006')))
    lmdb = BBBC006Dataset(dict(base, dataroot=str(lmdb_path), io_backend={'type': 'lmdb'}))
    assert len(disk) == len(lmdb) == 12
    for (d_lq, _, d_field), (l_lq, _, l_field) in zip(disk.samples, lmdb.samples):
        assert d_field == l_field
        raw_disk = disk.loader.read_raw(d_lq)
        raw_lmdb = lmdb.loader.read_raw(l_lq)
        assert raw_disk.dtype == raw_lmdb.dtype == 'uint16' and (raw_disk == raw_lmdb).all()
    for i in (0, 7):
        a, b = disk[i], lmdb[i]
        assert torch.equal(a['lq'], b['lq']) and torch.equal(a['gt'], b['gt'])


def test_lfdof_and_folder_lmdb_pairing(tmp_path):
    make_lfdof(tmp_path / 'LFDOF', 'train')
    made = _script().make_lfdof(str(tmp_path / 'LFDOF'), ['train'])
    assert [os.path.basename(m) for m in made] == ['input.lmdb', 'ground_truth.lmdb']
    opt = dict(name='l', phase='val', layout='lfdof', dataroot=str(tmp_path / 'LFDOF'), split='train')
    disk = PairedDefocusDataset(opt)
    lmdb = PairedDefocusDataset(dict(opt, io_backend={'type': 'lmdb'}))
    assert [s[0] for s in lmdb.samples][:2] == ['s001/000', 's001/001'] and lmdb.samples[0][2] == 's001'
    for i in range(len(disk)):
        assert torch.equal(disk[i]['lq'], lmdb[i]['lq']) and torch.equal(disk[i]['gt'], lmdb[i]['gt'])
    # 16-bit paired folders (3DHistech/CaDISBlur style) via the generic folder command
    make_paired_folder(tmp_path / 'p' / 'blur', tmp_path / 'p' / 'sharp', ['f1.png', 'f2.png'], dtype='uint16')
    script = _script()
    script.main(['folder', str(tmp_path / 'p' / 'blur')])
    script.main(['folder', str(tmp_path / 'p' / 'sharp')])
    folder_opt = dict(name='p', phase='val', dataroot_lq=str(tmp_path / 'p' / 'blur'),
                      dataroot_gt=str(tmp_path / 'p' / 'sharp'))
    lmdb_opt = dict(folder_opt, dataroot_lq=folder_opt['dataroot_lq'] + '.lmdb',
                    dataroot_gt=folder_opt['dataroot_gt'] + '.lmdb', io_backend={'type': 'lmdb'})
    a, b = PairedDefocusDataset(folder_opt)[1], PairedDefocusDataset(lmdb_opt)[1]
    assert torch.equal(a['lq'], b['lq']) and torch.equal(a['gt'], b['gt']) and b['gt_path'] == 'f2'
    raw = ImageLoader({'type': 'lmdb'}, {'x': str(tmp_path / 'p' / 'sharp.lmdb')}).read_raw('f2', 'x')
    assert raw.dtype == 'uint16'
    un = UnlabeledDefocusDataset(dict(name='u', phase='val', dataroot_lq=lmdb_opt['dataroot_lq'],
                                      io_backend={'type': 'lmdb'}))
    assert un.paths == ['f1', 'f2'] and torch.equal(un[0]['lq'], PairedDefocusDataset(folder_opt)[0]['lq'])


def test_forced_tiff_conversion_and_errors(tmp_path):
    make_bbbc006(tmp_path / 'B', wells=('a01',), sites=('1',), channels=('1',))
    script = _script()
    out = script.make_bbbc006(str(tmp_path / 'B'), str(tmp_path / 'conv.lmdb'), [2, 16], convert_tiff=True)
    base = dict(name='b', phase='val', channel='w1', input_planes=[2], normalize='dtype')
    a = BBBC006Dataset(dict(base, dataroot=str(tmp_path / 'B')))[0]
    b = BBBC006Dataset(dict(base, dataroot=out, io_backend={'type': 'lmdb'}))[0]
    assert torch.equal(a['lq'], b['lq']) and torch.equal(a['gt'], b['gt'])
    assert not [n for n in os.listdir(tmp_path) if n.startswith('tiff2png_')]  # temporary PNGs removed
    with pytest.raises(FileExistsError, match='conv.lmdb'):
        script.make_bbbc006(str(tmp_path / 'B'), out, [2, 16])
    (tmp_path / 'dots').mkdir()
    make_paired_folder(tmp_path / 'dots', tmp_path / 'dots_gt', ['a.b.png'])
    with pytest.raises(ValueError, match='a.b.png'):
        script.make_folder(str(tmp_path / 'dots'))


def test_map_holds_images_that_compress_worse_than_the_first(tmp_path):
    """BasicSR sizes the map from the first image; a blank first field then overflowed it (MDB_MAP_FULL)."""
    rng = np.random.default_rng(0)
    write_png(tmp_path / 'f' / 'a_blank.png', np.zeros((64, 64), np.uint16))
    noise = [rng.integers(0, 65535, (64, 64), dtype=np.uint16) for _ in range(3)]
    for i, img in enumerate(noise):
        write_png(tmp_path / 'f' / f'b{i}.png', img)
    db = _script().make_folder(str(tmp_path / 'f'))
    loader = ImageLoader({'type': 'lmdb'}, {'x': db}, in_chans=1)
    for i, img in enumerate(noise):
        assert np.array_equal(loader.read_raw(f'b{i}', 'x')[..., 0], img)
