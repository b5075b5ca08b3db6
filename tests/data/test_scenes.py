"""Procedural fluorescence-like scenes (mpt_data.scenes) and their use as SyntheticDefocusDataset images."""

import numpy as np
import pytest

from mpt_data import SyntheticDefocusDataset
from mpt_data.scenes import SCENE_KINDS, make_scene


@pytest.mark.parametrize('kind', SCENE_KINDS)
def test_each_kind_is_seeded_in_range_and_mostly_dark(kind):
    a = make_scene(np.random.default_rng(3), (96, 128), 1, [kind])
    b = make_scene(np.random.default_rng(3), (96, 128), 1, [kind])
    c = make_scene(np.random.default_rng(4), (96, 128), 1, [kind])
    assert a.shape == (96, 128, 1) and a.dtype == np.float32
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert 0.0 <= a.min() and a.max() <= 1.0
    background = float(np.median(a))
    assert 0.002 <= background <= 0.05 + 1e-6  # the offset: a few per cent of the range at most
    assert a.max() > background + 1e-3  # there are structures above it


def test_scenes_vary_and_rgb_has_a_scene_per_channel():
    rgb = make_scene(np.random.default_rng(0), (64, 64), 3)
    assert rgb.shape == (64, 64, 3) and not np.array_equal(rgb[:, :, 0], rgb[:, :, 1])
    peaks = [float(make_scene(np.random.default_rng(i), (64, 64)).max()) for i in range(12)]
    assert max(peaks) > 3 * min(peaks)  # bright and dim scenes
    with pytest.raises(ValueError, match="unknown scene kind"):
        make_scene(np.random.default_rng(0), (32, 32), 1, ['nucleus'])


def _opt(**kw):
    opt = dict(name='scenes', phase='val', in_chans=1, procedural={'images': 3, 'size': 48}, pairs_per_image=2,
               psf={'gaussian': {'sigma': [1.0, 2.0]}}, noise={'photons': None})
    opt.update(kw)
    return opt


def test_dataset_of_procedural_scenes_alone(tmp_path):
    ds = SyntheticDefocusDataset(_opt())
    assert len(ds) == 6
    again = SyntheticDefocusDataset(_opt())
    first, other = ds.pair(1), again.pair(1)
    assert np.array_equal(first.gt, other.gt) and np.array_equal(first.lq, other.lq)  # validation: seeded
    assert first.gt.shape == (48, 48, 1) and ds[0]['gt_path'] == 'procedural_00000'
    np.random.seed(0)
    train = SyntheticDefocusDataset(_opt(phase='train', gt_size=32))
    a, b = train.pair(0).gt, train.pair(0).gt
    assert a.shape == (32, 32, 1) and not np.array_equal(a, b)  # a new scene at every visit


def test_procedural_scenes_beside_a_folder_and_bad_options(tmp_path):
    import cv2

    cv2.imwrite(str(tmp_path / 'a.png'), np.zeros((40, 40), np.uint8))
    ds = SyntheticDefocusDataset(_opt(dataroot_gt=str(tmp_path)))
    assert [key for _, key in ds.samples] == ['default', 'procedural', 'procedural', 'procedural']
    for bad, match in (({'images': 0}, 'procedural.images'), ({'size': 8}, 'procedural.size'),
                       ({'kinds': ['nucleus']}, 'procedural.kinds'), ({'count': 3}, 'unknown key')):
        with pytest.raises(ValueError, match=match):
            SyntheticDefocusDataset(_opt(procedural=bad))
