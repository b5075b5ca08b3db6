"""BBBC006Dataset's option defaults, layout helpers and every refusal's full message."""

import os

import numpy as np
import pytest
import tifffile

from helpers.layouts import BBBC_PREFIX, make_bbbc006
from helpers.raised import raised
from mpt_data import BBBC006Dataset
from mpt_data.bbbc006_dataset import FILE_PATTERN, lmdb_key, parse_file_name, plane_folder
from mpt_data.image_io import ImageReadError


def _opt(root, **kw):
    return {'name': 'bbbc', 'type': 'BBBC006Dataset', 'dataroot': str(root), 'phase': 'val', **kw}


def _error(root, kind=ValueError, **kw) -> str:
    return raised(kind, BBBC006Dataset, _opt(root, **kw))


def test_layout_helpers():
    assert plane_folder(6) == 'BBBC006_v1_images_z_06' and plane_folder(16) == 'BBBC006_v1_images_z_16'
    assert lmdb_key(2, ('a01', '1', '2')) == 'z02_a01_s1_w2'
    assert parse_file_name(f'{BBBC_PREFIX}_B03_s2_w1ABC.tif') == ('B03', '2', '1')
    with pytest.raises(ValueError) as err:
        parse_file_name('other.tif')
    assert str(err.value) == f"'other.tif' does not match the BBBC006 pattern {FILE_PATTERN.pattern}."


def test_defaults(tmp_path):
    make_bbbc006(tmp_path, wells=('a01', 'b03'), planes=(2, 6, 10, 16))
    ds = BBBC006Dataset(_opt(tmp_path))
    assert ds.channels == ('1',) and ds.gt_plane == 16 and ds.input_planes == [2, 6, 10]
    assert ds.split == 'all' and ds.test_fraction == 0.2 and ds.split_seed == 0 and ds.test_wells is None
    assert ds.normalize == 'input_percentile' and not ds.is_lmdb
    assert len(ds) == 2 * 2 * 3  # wells x sites x input planes, channel w1 only
    assert ds.wells == ['a01', 'b03']


def test_test_wells_are_case_insensitive_and_train_is_the_rest(tmp_path):
    make_bbbc006(tmp_path, wells=('a01', 'b03', 'c04'))
    assert BBBC006Dataset(_opt(tmp_path, split='test', test_wells=['B03'])).wells == ['b03']
    assert BBBC006Dataset(_opt(tmp_path, split='train', test_wells=['B03', 'a01'])).wells == ['c04']


def test_option_errors(tmp_path):
    make_bbbc006(tmp_path, wells=('a01',))
    assert _error(tmp_path, channel='w3') == "channel must be 'w1', 'w2' or 'both', got 'w3'."
    assert _error(tmp_path, gt_plane=6) == 'gt_plane 6 is also listed in input_planes [2, 6, 10].'
    assert _error(tmp_path, split='val') == "split must be 'train', 'test' or 'all', got 'val'."
    assert _error(tmp_path, split='test', test_wells=['z99'], channel='w2') == (
        f"No BBBC006 pair for split 'test', channel 'w2', input planes [2, 6, 10] in {str(tmp_path)!r}.")


def test_folder_errors(tmp_path):
    missing = tmp_path / 'nowhere'
    assert _error(missing, FileNotFoundError) == f'BBBC006 dataroot {str(missing)!r} does not exist.'
    make_bbbc006(tmp_path, wells=('a01',))
    folder = str(tmp_path / 'BBBC006_v1_images_z_03')
    assert _error(tmp_path, FileNotFoundError, input_planes=[3]) == (
        f'BBBC006 plane folder {folder!r} does not exist.')
    os.mkdir(folder)
    (tmp_path / 'BBBC006_v1_images_z_03' / 'notes.txt').write_text('not an image')
    assert _error(tmp_path, input_planes=[3]) == f'BBBC006 plane folder {folder!r} contains no TIFF image.'
    z2 = tmp_path / 'BBBC006_v1_images_z_02'
    first = next(n for n in sorted(os.listdir(z2)) if '_s2_w1' in n)  # site and channel differ in the message
    field = parse_file_name(first)
    twin = f'{BBBC_PREFIX}_{field[0]}_s{field[1]}_w{field[2]}-copy.TIFF'
    tifffile.imwrite(z2 / twin, np.zeros((4, 4), np.uint16))
    names = sorted([first, twin])
    assert _error(tmp_path, channel='both') == (
        f'Two images for well {field[0]} site {field[1]} channel w{field[2]} in {str(z2)!r}: '
        f'{names[0]!r} and {names[1]!r}.')


def test_16_and_8_bit_images_only(tmp_path):
    make_bbbc006(tmp_path, wells=('a01',), sites=('1',), channels=('1',))
    ds = BBBC006Dataset(_opt(tmp_path, normalize='dtype'))
    lq_path, gt_path, _ = ds.samples[0]
    gt8 = (tifffile.imread(gt_path) // 16).astype(np.uint8)
    tifffile.imwrite(gt_path, gt8)
    np.testing.assert_array_equal(ds[0]['gt'][0].numpy(), gt8.astype(np.float32) / 255)  # 8-bit: divided by 255
    tifffile.imwrite(lq_path, tifffile.imread(lq_path).astype(np.float32))
    with pytest.raises(ImageReadError) as err:
        ds[0]
    assert str(err.value) == f'Image {lq_path!r} has dtype float32; BBBC006 images are 16-bit.'


def test_well_split_threshold_is_strict():
    """A well is a test well when md5('<seed>:<WELL>')[:8] / 2^32 is *below* test_fraction (docs/guides/datasets.md)."""
    import hashlib

    from mpt_data.bbbc006_dataset import is_test_well

    value = int(hashlib.md5(b'0:A01').hexdigest()[:8], 16) / 0x100000000
    assert not is_test_well('a01', value) and is_test_well('A01', np.nextafter(value, 1.0))


def test_non_tiff_files_are_noted_and_tiffs_of_any_case_are_used(tmp_path, basicsr_log):
    make_bbbc006(tmp_path, wells=('a01',), sites=('1',), channels=('1',))
    z2 = tmp_path / 'BBBC006_v1_images_z_02'
    tif = sorted(os.listdir(z2))[0]
    os.rename(z2 / tif, z2 / tif.replace('.tif', '.TIFF'))
    for name in ('Notes.txt', 'zz.txt'):  # sorted before and after the TIFF: neither ends the scan
        (z2 / name).write_text('x')
    ds = BBBC006Dataset(_opt(tmp_path))
    assert len(ds) == 3 and any(lq.endswith('.TIFF') for lq, _, _ in ds.samples)
    assert sum(lq.endswith('.tif') for lq, _, _ in ds.samples) == 2  # planes 6 and 10 keep the lower-case .tif
    # only the text files are noted, in z2 alone (the .tif folders have nothing to ignore)
    assert [m for m in basicsr_log.messages if m.startswith('Ignoring')] == [
        f"Ignoring 2 non-image file(s) in {str(z2)!r}: Notes.txt, zz.txt."]


def test_every_missing_ground_truth_is_named(tmp_path):
    make_bbbc006(tmp_path, wells=('a01', 'b03'), sites=('2',), channels=('1',), planes=(2, 16))
    z16 = tmp_path / 'BBBC006_v1_images_z_16'
    for name in os.listdir(z16):
        os.remove(z16 / name)
    tifffile.imwrite(z16 / f'{BBBC_PREFIX}_c04_s2_w1X.tif', np.zeros((4, 4), np.uint16))
    lq = {w: str(tmp_path / 'BBBC006_v1_images_z_02' / n) for n in os.listdir(tmp_path / 'BBBC006_v1_images_z_02')
          for w in ('a01', 'b03') if f'_{w}_' in n}
    lines = [f'  - Missing in-focus plane z16 for {lq[w]!r} (well {w}, site 2, channel w1) in {str(z16)!r}'
             for w in ('a01', 'b03')]
    for opt, name in (({'name': 'mine'}, 'mine'), ({'name': None}, None)):
        kw = dict(input_planes=[2], **opt)
        with pytest.raises(ImageReadError) as err:
            BBBC006Dataset({k: v for k, v in _opt(tmp_path, **kw).items() if v is not None})
        assert str(err.value) == '\n'.join([f"Dataset {name or 'BBBC006'!r}: 2 unpaired file(s):", *lines])


def test_samples_name_their_files_and_size_errors_name_both(tmp_path):
    make_bbbc006(tmp_path, wells=('a01',), sites=('1',), channels=('1',))
    ds = BBBC006Dataset(_opt(tmp_path, phase='train', gt_size=64, use_scale=False, use_hflip=False, check_files=False,
                                   use_rot=False))
    lq_path, gt_path, _ = ds.samples[0]
    with pytest.raises(ValueError) as err:  # the 48 x 40 images are smaller than the crop
        ds[0]
    assert str(err.value) == f"Image {lq_path!r}/{gt_path!r} is 48x40, smaller than gt_size 64."
    sample = BBBC006Dataset(_opt(tmp_path))[0]
    assert (sample['lq_path'], sample['gt_path']) == (lq_path, gt_path)
    tifffile.imwrite(gt_path, np.zeros((40, 40), np.uint16))
    with pytest.raises(ImageReadError, match=f'{os.path.basename(lq_path)}.*48x40.*{os.path.basename(gt_path)}'):
        BBBC006Dataset(_opt(tmp_path))[0]


def test_extra_dataset_is_attached(tmp_path):
    from helpers.layouts import make_paired_folder

    make_bbbc006(tmp_path / 'bbbc', wells=('a01',), sites=('1',), channels=('1',))
    make_paired_folder(tmp_path / 'x' / 'lq', tmp_path / 'x' / 'gt', ['e.png'], c=1, h=40, w=48)
    extra = {'type': 'UnlabeledDefocusDataset', 'dataroot_lq': str(tmp_path / 'x' / 'lq'), 'in_chans': 1}
    sample = BBBC006Dataset(_opt(tmp_path / 'bbbc', extra_dataset=extra))[0]
    assert sample['extra_lq'].shape == sample['lq'].shape and sample['extra_lq_path'].endswith('e.png')
    # cyclic sampling: sample i gets extra image i mod len(extra), so __getitem__ must pass its index on
    make_paired_folder(tmp_path / 'x' / 'lq', tmp_path / 'x' / 'gt', ['f.png'], c=1, h=40, w=48)
    ds = BBBC006Dataset(_opt(tmp_path / 'bbbc', extra_dataset=extra, extra_sampling='cyclic'))
    assert [os.path.basename(ds[i]['extra_lq_path']) for i in range(3)] == ['e.png', 'f.png', 'e.png']


def _size_problems(ds) -> str:
    with pytest.raises(ImageReadError) as err:
        ds.check_files()
    return str(err.value)


def test_start_up_check_names_each_file_and_applies_the_crop_only_to_unscaled_training(tmp_path):
    make_bbbc006(tmp_path, wells=('a01',), sites=('1',), channels=('1',))
    ds = BBBC006Dataset(_opt(tmp_path, check_files=False, phase='train', gt_size=64, use_scale=False))
    files = sorted({p for lq, gt, _ in ds.samples for p in (lq, gt)})
    msg = _size_problems(ds)
    assert msg.startswith("check_files: 4 problem(s) in dataset 'bbbc'")
    assert sorted(line.split("'")[1] for line in msg.splitlines()[1:]) == files
    assert all(line.endswith('is 48x40, smaller than gt_size 64') for line in msg.splitlines()[1:])
    # no size problem: random scaling may enlarge the image, validation does not crop, the crop fits
    for kw in ({'gt_size': 64}, {'gt_size': 64, 'use_scale': True}, {'gt_size': 64, 'use_scale': False, 'phase': 'val'},
               {'gt_size': 40, 'use_scale': False}):
        opt = {'check_files': False, 'phase': 'train', **kw}
        assert BBBC006Dataset(_opt(tmp_path, **opt)).check_files() == 4  # distinct headers read
    unnamed = BBBC006Dataset({k: v for k, v in _opt(tmp_path, check_files=False, phase='train', gt_size=64,
                                                     use_scale=False).items() if k != 'name'})
    assert _size_problems(unnamed).startswith("check_files: 4 problem(s) in dataset 'BBBC006'")


def test_start_up_check_names_lmdb_keys_with_their_database(tmp_path):
    from helpers.scripts import load_script

    make_bbbc006(tmp_path / 'B', wells=('a01',), sites=('1',), channels=('1',))
    db = str(tmp_path / 'B.lmdb')
    load_script('make_lmdb').main(['bbbc006', str(tmp_path / 'B'), '--output', db])
    ds = BBBC006Dataset(_opt(db, io_backend={'type': 'lmdb'}, check_files=False, phase='train', gt_size=64,
                             use_scale=False))
    names = sorted(line.split("'")[1] for line in _size_problems(ds).splitlines()[1:])
    assert names == sorted({f'{db}[{key}]' for lq, gt, _ in ds.samples for key in (lq, gt)})
    assert names[0] == f'{db}[z02_a01_s1_w1]'


def _bbbc006_lmdb(tmp_path) -> str:
    from helpers.scripts import load_script

    make_bbbc006(tmp_path / 'B', wells=('a01',), sites=('2',), channels=('1',))
    db = str(tmp_path / 'B.lmdb')
    load_script('make_lmdb').main(['bbbc006', str(tmp_path / 'B'), '--output', db])
    return db


def _edit_meta(db: str, edit) -> None:
    meta = os.path.join(db, 'meta_info.txt')
    with open(meta) as fin:
        lines = fin.read().splitlines()
    with open(meta, 'w') as fout:
        fout.write('\n'.join(edit(lines)) + '\n')


def test_lmdb_key_errors_name_the_key_and_the_database(tmp_path):
    db = _bbbc006_lmdb(tmp_path)
    lmdb = {'io_backend': {'type': 'lmdb'}, 'input_planes': [2]}
    assert len(BBBC006Dataset(_opt(db, **lmdb))) == 1
    _edit_meta(db, lambda lines: [line for line in lines if not line.startswith('z16_')])
    with pytest.raises(ImageReadError) as err:
        BBBC006Dataset(_opt(db, **lmdb))
    assert str(err.value) == ("Dataset 'bbbc': 1 unpaired file(s):\n  - Missing in-focus plane z16 for "
                              f"'z02_a01_s2_w1' (well a01, site 2, channel w1) in {db!r}")
    _edit_meta(db, lambda lines: lines + ['notes.png (4,4,1) 1'])
    assert _error(db, **lmdb) == (f"LMDB key 'notes' in {db!r} is not a BBBC006 key "
                                  '(z<NN>_<well>_s<site>_w<channel>).')
