"""PairedDefocusDataset's layouts resolved to folders, its defaults and every refusal's full message."""

import os

import numpy as np
import pytest

from helpers.layouts import make_dpdd, make_lfdof, make_paired_folder, write_png
from helpers.raised import raised
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


def _remove_meta_lines(db: str, prefix: str) -> None:
    meta = os.path.join(db, 'meta_info.txt')
    with open(meta) as fin:
        lines = [line for line in fin.read().splitlines() if not line.startswith(prefix)]
    with open(meta, 'w') as fout:
        fout.write('\n'.join(lines) + '\n')


def test_lmdb_layouts_keys_and_names(tmp_path):
    """LMDB samples: (key, client key of its input database, ground-truth key); errors name database[key]."""
    from helpers.scripts import load_script

    make_lmdb = load_script('make_lmdb')
    make_paired_folder(tmp_path / 'a', tmp_path / 'gt', ['f1.png', 'f2.png'], h=20, w=24)
    make_paired_folder(tmp_path / 'b', tmp_path / 'unused', ['f1.png', 'f2.png'], h=20, w=24, seed=5)
    for folder in ('a', 'b', 'gt'):
        make_lmdb.main(['folder', str(tmp_path / folder)])
    dbs = {name: str(tmp_path / f'{name}.lmdb') for name in ('a', 'b', 'gt')}
    lmdb = {'io_backend': {'type': 'lmdb'}}
    ds = PairedDefocusDataset(_opt(dataroot_lq=[dbs['a'], dbs['b']], dataroot_gt=dbs['gt'], **lmdb))
    assert ds.samples == [('f1', 'lq0', 'f1'), ('f2', 'lq0', 'f2'), ('f1', 'lq1', 'f1'), ('f2', 'lq1', 'f2')]
    assert ds.loader.lmdb_roots == {'lq0': dbs['a'], 'lq1': dbs['b'], 'gt': dbs['gt']}
    disk = PairedDefocusDataset(_opt(dataroot_lq=[str(tmp_path / 'a'), str(tmp_path / 'b')],
                                     dataroot_gt=str(tmp_path / 'gt')))
    for i in (1, 2):
        assert np.array_equal(ds[i]['lq'].numpy(), disk[i]['lq'].numpy())
        assert np.array_equal(ds[i]['gt'].numpy(), disk[i]['gt'].numpy())
    crop = dict(check_files=False, phase='train', gt_size=32, use_scale=False)
    small = PairedDefocusDataset(_opt(dataroot_lq=dbs['b'], dataroot_gt=dbs['gt'], **lmdb, **crop))
    with pytest.raises(ImageReadError) as err:
        small.check_files()
    named = sorted(line.split("'")[1] for line in str(err.value).splitlines()[1:])
    assert named == sorted(f'{db}[{key}]' for db in (dbs['b'], dbs['gt']) for key in ('f1', 'f2'))
    with pytest.raises(ValueError) as err:
        small[0]
    assert str(err.value) == f"Image '{dbs['b']}[f1]'/'{dbs['gt']}[f1]' is 24x20, smaller than gt_size 32."

    make_dpdd(tmp_path / 'DPDD', 'val', n=2, h=20, w=24)
    make_lmdb.main(['dpdd', str(tmp_path / 'DPDD'), '--splits', 'val'])
    dpdd = PairedDefocusDataset(_opt(layout='dpdd', dataroot=str(tmp_path / 'DPDD'), split='val', **lmdb))
    base = str(tmp_path / 'DPDD' / 'val_c')
    assert dpdd.loader.lmdb_roots == {'lq0': os.path.join(base, 'source.lmdb'),
                                      'gt': os.path.join(base, 'target.lmdb')}
    assert dpdd.samples == [('0000', 'lq0', '0000'), ('0001', 'lq0', '0001')]

    make_lfdof(tmp_path / 'LFDOF', 'test', scenes=('s001', 's002'), per_scene=2, h=20, w=24)
    make_lmdb.main(['lfdof', str(tmp_path / 'LFDOF'), '--splits', 'test'])
    lfdof = dict(layout='lfdof', dataroot=str(tmp_path / 'LFDOF'), split='test', **lmdb)
    assert PairedDefocusDataset(_opt(**lfdof)).samples == [
        ('s001/000', 'lq0', 's001'), ('s001/001', 'lq0', 's001'), ('s002/000', 'lq0', 's002'),
        ('s002/001', 'lq0', 's002')]
    base = str(tmp_path / 'LFDOF' / 'test_data')
    _remove_meta_lines(os.path.join(base, 'ground_truth.lmdb'), 's002')
    assert _error(**lfdof) == (f"LMDB input key 's002/000' of {os.path.join(base, 'input.lmdb')!r} has no "
                               f"ground-truth key 's002' in {os.path.join(base, 'ground_truth.lmdb')!r}.")


def test_non_images_are_noted_and_lfdof_ignores_stray_files(tmp_path, basicsr_log):
    make_paired_folder(tmp_path / 'lq', tmp_path / 'gt', ['a.png'])
    (tmp_path / 'lq' / 'notes.txt').write_text('x')
    assert len(PairedDefocusDataset(_opt(dataroot_lq=str(tmp_path / 'lq'), dataroot_gt=str(tmp_path / 'gt')))) == 1
    assert [m for m in basicsr_log.messages if m.startswith('Ignoring')] == [
        f"Ignoring 1 non-image file(s) in {str(tmp_path / 'lq')!r}: notes.txt."]
    make_lfdof(tmp_path, 'test', scenes=('s001',), per_scene=2)
    (tmp_path / 'test_data' / 'input' / 'README.txt').write_text('not a scene')  # a file beside the scene folders
    ds = PairedDefocusDataset(_opt(layout='lfdof', dataroot=str(tmp_path), split='test'))
    assert [os.path.relpath(lq, tmp_path / 'test_data' / 'input') for lq, _, _ in ds.samples] == [
        os.path.join('s001', '000.png'), os.path.join('s001', '001.png')]


def test_lfdof_meta_info_lines_may_carry_basicsr_fields(tmp_path):
    make_lfdof(tmp_path, 'test', scenes=('s001', 's002'), per_scene=2)
    meta = tmp_path / 'meta.txt'
    meta.write_text('s002/001.png (34,50,3) 1\n\ns001/000.png (34,50,3) 1\n')
    ds = PairedDefocusDataset(_opt(layout='lfdof', dataroot=str(tmp_path), split='test', meta_info_file=str(meta)))
    base = tmp_path / 'test_data'
    assert ds.samples == [(str(base / 'input' / 's002/001.png'), 'default', str(base / 'ground_truth' / 's002.png')),
                          (str(base / 'input' / 's001/000.png'), 'default', str(base / 'ground_truth' / 's001.png'))]


def test_unpaired_files_of_every_input_folder_are_named(tmp_path):
    for folder in ('a', 'b'):
        make_paired_folder(tmp_path / folder, tmp_path / 'gt', ['x.png', 'y.png'])
        os.rename(tmp_path / folder / 'y.png', tmp_path / folder / f'{folder}.png')
    roots = [str(tmp_path / 'a'), str(tmp_path / 'b')]
    for name, shown in (('mine', 'mine'), (None, 'dataset')):
        opt = {k: v for k, v in _opt(dataroot_lq=roots, dataroot_gt=str(tmp_path / 'gt'), name=name).items()
               if v is not None}
        with pytest.raises(ImageReadError) as err:
            PairedDefocusDataset(opt)
        lines = str(err.value).splitlines()
        assert lines[0] == f"Dataset {shown!r}: 4 unpaired file(s):"
        assert sum(str(tmp_path / 'a') in line for line in lines) == 2  # both folders are reported
        assert sum(str(tmp_path / 'b') in line for line in lines[1:]) == 2


def test_start_up_check_names_the_dataset_and_crops_only_unscaled_training(tmp_path):
    make_paired_folder(tmp_path / 'lq', tmp_path / 'gt', ['a.png'], h=20, w=24)
    folders = dict(dataroot_lq=str(tmp_path / 'lq'), dataroot_gt=str(tmp_path / 'gt'), check_files=False,
                   phase='train', gt_size=32)
    for kw in ({}, {'use_scale': True}):  # random scaling (the default) enlarges images smaller than the crop
        assert PairedDefocusDataset(_opt(**folders, **kw)).check_files() == 2
    for name, shown in (('mine', 'mine'), (None, 'dataset')):
        opt = {k: v for k, v in _opt(**folders, use_scale=False, name=name).items() if v is not None}
        with pytest.raises(ImageReadError) as err:
            PairedDefocusDataset(opt).check_files()
        assert str(err.value).startswith(f"check_files: 2 problem(s) in dataset {shown!r}")


def test_normalisation_errors_name_the_image_they_come_from(tmp_path):
    make_paired_folder(tmp_path / 'lq', tmp_path / 'gt', ['a.png'], c=1, h=20, w=24)
    lq, gt = str(tmp_path / 'lq' / 'a.png'), str(tmp_path / 'gt' / 'a.png')
    for flat, mode in ((lq, 'input_percentile'), (gt, 'gt_percentile')):
        make_paired_folder(tmp_path / 'lq', tmp_path / 'gt', ['a.png'], c=1, h=20, w=24)
        write_png(tmp_path / os.path.relpath(flat, tmp_path), np.full((20, 24), 7, np.uint8))
        ds = PairedDefocusDataset(_opt(dataroot_lq=str(tmp_path / 'lq'), dataroot_gt=str(tmp_path / 'gt'),
                                       in_chans=1, normalize=mode))
        with pytest.raises(ImageReadError) as err:
            ds[0]
        assert str(err.value).startswith(f'Image {flat!r} is flat between the 0.1th and 99.9th')


def test_lmdb_channel_options_match_the_folders(tmp_path):
    """in_chans and to_gray reach the LMDB reader as they reach the disk reader."""
    from helpers.scripts import load_script

    make_paired_folder(tmp_path / 'lq', tmp_path / 'gt', ['a.png'], h=20, w=24)
    for folder in ('lq', 'gt'):
        load_script('make_lmdb').main(['folder', str(tmp_path / folder)])
    lmdb = dict(dataroot_lq=str(tmp_path / 'lq.lmdb'), dataroot_gt=str(tmp_path / 'gt.lmdb'),
                io_backend={'type': 'lmdb'})
    disk = dict(dataroot_lq=str(tmp_path / 'lq'), dataroot_gt=str(tmp_path / 'gt'))
    for roots in (lmdb, disk):
        ds = PairedDefocusDataset(_opt(**roots))
        assert (ds.loader.in_chans, ds.loader.to_gray) == (3, False) and ds[0]['lq'].shape == (3, 20, 24)
        with pytest.raises(ImageReadError, match='3 channel.*in_chans is 1'):
            PairedDefocusDataset(_opt(**roots, in_chans=1))[0]
        gray = PairedDefocusDataset(_opt(**roots, in_chans=1, to_gray=True))
        assert (gray.loader.in_chans, gray.loader.to_gray) == (1, True)
        assert gray[0]['lq'].shape == gray[0]['gt'].shape == (1, 20, 24)
    lmdb_gray = PairedDefocusDataset(_opt(**lmdb, in_chans=1, to_gray=True))[0]
    disk_gray = PairedDefocusDataset(_opt(**disk, in_chans=1, to_gray=True))[0]
    assert np.array_equal(lmdb_gray['lq'].numpy(), disk_gray['lq'].numpy())


def test_dpdd_train_split_and_a_meta_info_without_pairs(tmp_path):
    make_dpdd(tmp_path, 'train', n=1)
    ds = PairedDefocusDataset(_opt(layout='dpdd', dataroot=str(tmp_path), split='train'))
    base = tmp_path / 'train_c'
    assert ds.samples == [(str(base / 'source' / '0000.png'), 'default', str(base / 'target' / '0000.png'))]
    meta = tmp_path / 'meta.txt'
    meta.write_text('\n0000.png (36,52,3)\n\n')  # blank lines are no pairs
    lq, gt = str(base / 'source'), str(base / 'target')
    assert PairedDefocusDataset(_opt(dataroot_lq=lq, dataroot_gt=gt, meta_info_file=str(meta))).samples == ds.samples
    meta.write_text('\n')
    assert _error(dataroot_lq=lq, dataroot_gt=gt, meta_info_file=str(meta)) == f'No pair found in {[lq]} / {gt!r}.'
