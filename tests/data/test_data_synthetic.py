"""SyntheticDefocusDataset and the Poisson-Gaussian noise model: statistics, determinism, options, BasicSR."""

import os
import random

import cv2
import numpy as np
import pytest

from helpers.scripts import load_script
from mpt_data.noise import poisson_gaussian
from mpt_data.synthetic_defocus_dataset import SyntheticDefocusDataset


def test_poisson_gaussian_mean_and_variance():
    rng = np.random.default_rng(0)
    x = np.full((400, 400), 0.3, np.float32)
    photons, read = 200.0, 0.02
    y = poisson_gaussian(x, photons, read, rng)
    assert y.mean() == pytest.approx(0.3, abs=2e-3)
    assert y.var() == pytest.approx(0.3 / photons + read**2, rel=0.03)
    # shot noise alone: variance proportional to the signal
    lo = poisson_gaussian(np.full((400, 400), 0.1, np.float32), photons, 0.0, rng).var()
    hi = poisson_gaussian(np.full((400, 400), 0.4, np.float32), photons, 0.0, rng).var()
    assert hi / lo == pytest.approx(4.0, rel=0.08)
    assert np.array_equal(poisson_gaussian(x, None, 0.0, rng), x)  # no noise: unchanged


def test_poisson_gaussian_refuses_bad_values():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match='non-negative'):
        poisson_gaussian(np.full((2, 2), -0.5, np.float32), 10.0, 0.0, rng)
    with pytest.raises(ValueError, match='photons'):
        poisson_gaussian(np.ones((2, 2), np.float32), 0.0, 0.0, rng)


@pytest.fixture
def sharp_folder(tmp_path):
    rng = np.random.default_rng(1)
    folder = tmp_path / 'sharp'
    folder.mkdir()
    for i, (h, w) in enumerate([(70, 90), (40, 50)]):  # the second is smaller than a training crop + margin
        img = (rng.random((h, w, 3)) * 255).astype(np.uint8)
        cv2.imwrite(str(folder / f'img{i}.png'), cv2.GaussianBlur(img, (0, 0), 1.0))
    cv2.imwrite(str(folder / 'deep.png'), (rng.random((48, 48)) * 65535).astype(np.uint16))
    (folder / 'notes.txt').write_text('not an image')
    return str(folder)


def _opt(folder, **kw):
    opt = dict(name='synthetic', phase='val', dataroot_gt=folder, in_chans=1, to_gray=True, pairs_per_image=3,
               val_seed=5)
    opt.update(kw)
    return opt


def test_validation_pairs_are_a_function_of_seed_and_index(sharp_folder):
    a = SyntheticDefocusDataset(_opt(sharp_folder))
    b = SyntheticDefocusDataset(_opt(sharp_folder))
    assert len(a) == 9
    order = list(range(len(a)))
    random.Random(0).shuffle(order)  # any access order gives the same pairs
    for i in order:
        pa, pb = a.pair(i), b.pair(i)
        assert np.array_equal(pa.lq, pb.lq) and np.array_equal(pa.gt, pb.gt) and pa.params == pb.params
    other = SyntheticDefocusDataset(_opt(sharp_folder, val_seed=6))
    assert not np.array_equal(a.pair(0).lq, other.pair(0).lq)
    assert len({str(a.pair(i).params) for i in range(len(a))}) == len(a)  # every pair draws its own degradation


def test_validation_pair_is_the_true_psf_blur_plus_noise(sharp_folder, tmp_path):
    meta = tmp_path / 'meta.txt'
    meta.write_text('img0.png\n')
    ds = SyntheticDefocusDataset(_opt(sharp_folder, meta_info_file=str(meta), in_chans=3, to_gray=False,
                                      noise={'photons': None, 'read_noise': [0, 0]},
                                      psf={'disk': {'radius': [2.0, 2.0]}}))
    pair = ds.pair(0)
    assert pair.params['psf'] == 'disk' and pair.params['radius'] == 2.0
    expected = cv2.filter2D(pair.gt, -1, pair.psf, borderType=cv2.BORDER_REFLECT_101)
    np.testing.assert_allclose(pair.lq, expected, atol=1e-6)
    assert pair.gt.shape == (70, 90, 3)


def test_training_crops_have_gt_size_and_a_blur_without_border(sharp_folder):
    np.random.seed(0)
    random.seed(0)
    ds = SyntheticDefocusDataset(_opt(sharp_folder, phase='train', gt_size=32, use_scale=False,
                                      psf={'gaussian': {'sigma': [1.5, 1.5]}},
                                      noise={'photons': None, 'read_noise': [0, 0]}))
    assert len(ds) == 3
    for i in range(3):
        sample = ds[i]
        assert sample['lq'].shape == sample['gt'].shape == (1, 32, 32)
        assert sample['lq'].std() < sample['gt'].std()  # blurred
    # the sharp crop had a margin: the blurred crop matches a blur of the larger window, not a padded one
    pair = ds.pair(0)
    assert np.abs(pair.lq - pair.gt).mean() > 0


def test_input_percentile_normalisation_maps_the_input_to_its_percentiles(sharp_folder):
    ds = SyntheticDefocusDataset(_opt(sharp_folder, normalize='input_percentile', norm_percentiles=[1, 99]))
    pair = ds.pair(2)
    lo, hi = np.percentile(pair.lq, [1, 99])
    assert lo == pytest.approx(0, abs=1e-5) and hi == pytest.approx(1, abs=1e-5)


def test_norm_context_maps_a_crop_by_the_percentiles_of_the_region_around_it(tmp_path):
    folder = tmp_path / 'sparse'
    folder.mkdir()
    img = np.full((160, 160), 1000, np.uint16)  # dark background, one bright square in a corner
    img[8:40, 8:40] = 40000
    cv2.imwrite(str(folder / 'sparse.png'), img)
    opt = _opt(str(folder), phase='train', gt_size=32, use_scale=False, use_hflip=False, use_rot=False,
               psf={'gaussian': {'sigma': [1.0, 1.0]}}, noise={'photons': [3000, 3000], 'read_noise': [0, 0]},
               normalize='input_percentile')
    own, context = SyntheticDefocusDataset(opt), SyntheticDefocusDataset({**opt, 'norm_context': 144})
    np.random.seed(0)
    own_top = [float(np.percentile(own.pair(0).lq, 99.9)) for _ in range(20)]
    context_top = [float(np.percentile(context.pair(0).lq, 99.9)) for _ in range(20)]
    assert context.pair(0).lq.shape == (32, 32, 1)
    assert min(own_top) > 0.99  # each crop stretched to its own percentiles: dark crops too
    # with the region's map the dark crops stay dark (as in a whole image) and the bright one reaches 1
    assert min(context_top) < 0.1 and max(context_top) > 0.9
    with pytest.raises(ValueError, match='norm_context'):
        SyntheticDefocusDataset({**opt, 'norm_context': -1})


@pytest.mark.parametrize('bad,match', [
    ({'psf': {'motion': {}}}, 'unknown psf type'),
    ({'psf': {'disk': {'sigma': [1, 2]}}}, r'psf.disk has unknown key'),
    ({'psf': {'disk': {'radius': [3, 1]}}}, r'psf.disk.radius'),
    ({'noise': {'photon': [1, 2]}}, 'noise has unknown key'),
    ({'noise': {'clean_fraction': 2}}, 'clean_fraction'),
    ({'normalize': 'gt_percentile'}, 'not available for synthetic'),
])
def test_bad_options_are_errors_naming_the_key(sharp_folder, bad, match):
    with pytest.raises(ValueError, match=match):
        SyntheticDefocusDataset(_opt(sharp_folder, **bad))


def test_missing_folder_and_corrupt_file_are_named(sharp_folder, tmp_path):
    with pytest.raises(FileNotFoundError, match='nowhere'):
        SyntheticDefocusDataset(_opt(str(tmp_path / 'nowhere')))
    with open(os.path.join(sharp_folder, 'broken.png'), 'wb') as fout:
        fout.write(b'\x89PNG garbage')
    with pytest.raises(ValueError, match='broken.png'):
        SyntheticDefocusDataset(_opt(sharp_folder, check_files=True))  # at start-up, before any pair
    ds = SyntheticDefocusDataset(_opt(sharp_folder))  # or at the read
    with pytest.raises(ValueError, match='broken.png'):
        [ds.pair(i) for i in range(len(ds))]


def test_registered_and_built_by_basicsr(sharp_folder):
    from basicsr.data import build_dataset

    ds = build_dataset(dict(_opt(sharp_folder), type='SyntheticDefocusDataset'))
    assert isinstance(ds, SyntheticDefocusDataset)
    sample = ds[0]
    assert sample['lq'].shape[0] == 1 and sample['lq_path'].startswith('deep_s0_')


def test_lmdb_backend_gives_the_same_pairs_as_the_folder(sharp_folder, tmp_path):
    gray = tmp_path / 'gray'
    gray.mkdir()
    for name in ('img0.png', 'deep.png'):
        img = cv2.imread(os.path.join(sharp_folder, name), cv2.IMREAD_UNCHANGED)
        cv2.imwrite(str(gray / name), img if img.ndim == 2 else cv2.cvtColor(img, cv2.COLOR_BGR2GRAY))
    lmdb_path = str(tmp_path / 'sharp.lmdb')
    load_script('make_lmdb').main(['folder', str(gray), '--output', lmdb_path])
    disk = SyntheticDefocusDataset(_opt(str(gray), to_gray=False))
    lmdb = SyntheticDefocusDataset(_opt(lmdb_path, to_gray=False, io_backend={'type': 'lmdb'}))
    assert len(disk) == len(lmdb) == 6
    for i in range(len(disk)):
        a, b = disk.pair(i), lmdb.pair(i)
        assert np.array_equal(a.gt, b.gt) and np.array_equal(a.lq, b.lq)
    assert lmdb[0]['gt_path'].startswith(lmdb_path)


def test_a_crop_that_is_the_whole_cached_image_is_flipped_on_a_copy(tmp_path):
    """102x102 image, 39-pixel kernel (margin 19), gt_size 64: the crop is the whole read-only cached image; BasicSR
    flips in place (OpenCV 5 refuses a read-only destination: training died mid-run)."""
    from mpt_data.psf import make_psf
    from mpt_data.transforms import random_flips

    folder = tmp_path / 'one'
    folder.mkdir()
    sharp = (np.random.default_rng(0).random((102, 102)) * 255).astype(np.uint8)
    cv2.imwrite(str(folder / 'img.png'), sharp)
    sigma = 5.4
    assert make_psf('gaussian', sigma=sigma).shape == (39, 39)
    ds = SyntheticDefocusDataset(_opt(str(folder), phase='train', gt_size=64, use_scale=False, cache_images=True,
                                      use_hflip=True, use_vflip=True, to_gray=False,
                                      psf={'gaussian': {'sigma': [sigma, sigma]}}, noise={'photons': None}))
    for seed in range(6):  # every flip combination
        np.random.seed(seed)
        random.seed(seed)
        assert ds[0]['gt'].shape == (1, 64, 64)
    cached = ds.cache[0]
    assert not cached.flags.writeable and np.array_equal(cached[:, :, 0], sharp.astype(np.float32) / 255)
    frozen = np.arange(12, dtype=np.float32).reshape(3, 4, 1)
    frozen.setflags(write=False)
    for seed in range(4):
        random.seed(seed)
        (out,) = random_flips([frozen])
        assert out.shape == frozen.shape and np.array_equal(frozen.ravel(), np.arange(12))  # input untouched


def test_gray_channels_gives_one_colour_channel_per_sample(tmp_path):
    """An RGB image whose channels differ: validation pair k of it is channel k mod 3, training crops each come from
    one channel (never the luminance of to_gray), gray images pass as they are; the option needs in_chans 1."""
    folder = tmp_path / 'rgb'
    folder.mkdir()
    rgb = np.zeros((48, 48, 3), np.uint8)
    rgb[:, :, 0], rgb[:, :, 1], rgb[:, :, 2] = 40, 120, 200  # flat channels: each value names its channel
    cv2.imwrite(str(folder / 'a_rgb.png'), rgb[:, :, ::-1])
    cv2.imwrite(str(folder / 'b_gray.png'), np.full((48, 48), 90, np.uint8))
    flat = {'psf': {'gaussian': {'sigma': [1.0, 1.0]}}, 'noise': {'photons': None, 'read_noise': [0, 0]}}
    ds = SyntheticDefocusDataset(_opt(str(folder), to_gray=False, gray_channels=True, pairs_per_image=4, **flat))
    values = [(ds.pair(i).gt.shape, round(float(ds.pair(i).gt.mean()) * 255)) for i in range(len(ds))]
    # pairs alternate between the two images (index mod 2); the RGB one walks its channels
    assert values == [((48, 48, 1), 40), ((48, 48, 1), 90), ((48, 48, 1), 120), ((48, 48, 1), 90),
                      ((48, 48, 1), 200), ((48, 48, 1), 90), ((48, 48, 1), 40), ((48, 48, 1), 90)]
    train = SyntheticDefocusDataset(_opt(str(folder), phase='train', gt_size=16, use_scale=False, to_gray=False,
                                         gray_channels=True, cache_images=True, **flat))
    np.random.seed(0)
    random.seed(0)
    seen = {round(float(train[0]['gt'].mean()) * 255) for _ in range(30)}
    assert seen == {40, 120, 200}  # every channel, and only channels
    assert train.cache[0].shape == (48, 48, 3) and not train.cache[0].flags.writeable
    luminance = SyntheticDefocusDataset(_opt(str(folder), **flat))  # to_gray: one value, none of the channels
    assert round(float(luminance.pair(0).gt.mean()) * 255) not in (40, 120, 200)
    for bad in ({'in_chans': 3, 'to_gray': False}, {'to_gray': True}):
        with pytest.raises(ValueError, match='gray_channels needs in_chans: 1 and no to_gray'):
            SyntheticDefocusDataset(_opt(str(folder), gray_channels=True, **bad))


def test_extra_dataset_attaches_unlabeled_crops_to_synthetic_pairs(sharp_folder, tmp_path):
    """EFCR's unlabeled mode beside synthetic pairs: each training sample carries a crop of a real blurry image."""
    blurry = tmp_path / 'blurry'
    blurry.mkdir()
    cv2.imwrite(str(blurry / 'b0.png'), np.full((40, 40), 77, np.uint8))
    ds = SyntheticDefocusDataset(_opt(sharp_folder, phase='train', gt_size=16, use_scale=False,
                                      extra_dataset={'type': 'UnlabeledDefocusDataset', 'dataroot_lq': str(blurry),
                                                     'to_gray': True}))
    np.random.seed(0)
    random.seed(0)
    sample = ds[1]
    assert sample['lq'].shape == sample['extra_lq'].shape == (1, 16, 16)
    assert float(sample['extra_lq'].mean()) == pytest.approx(77 / 255) and sample['extra_lq_path'].endswith('b0.png')
    assert 'extra_gt' not in sample
    with pytest.raises(ValueError, match='gt_size 32 differs'):
        SyntheticDefocusDataset(_opt(sharp_folder, phase='train', gt_size=16, extra_dataset={
            'type': 'UnlabeledDefocusDataset', 'dataroot_lq': str(blurry), 'gt_size': 32}))
