"""CaDISBlur synthesis (scripts/make_cadisblur.py) and the disk-PSF compositing of mpt_data.defocus."""

import hashlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from helpers.layouts import texture
from helpers.scripts import load_script
from mpt_data.defocus import composite_two_planes, defocus_blur, disk_psf


def _script():
    return load_script('make_cadisblur')


def _make_cadis(root: Path, videos=('Video01', 'Video02', 'Video03'), frames=2, h=72, w=96, flat=False):
    """CaDIS layout VideoNN/Images|Labels/<frame>.png; instrument (class 9) = a diagonal bar, anatomy 0/4/6."""
    for v, video in enumerate(videos):
        for f in range(frames):
            name = f'Video{v + 1}_frame{f:06d}.png'
            labels = np.zeros((h, w), np.uint8)
            labels[:, w // 2:] = 4
            labels[: h // 4] = 6
            bar = np.zeros((h, w), np.uint8)
            cv2.line(bar, (10 + 5 * f, 10), (w - 20, h - 15), 1, 16)
            labels[bar > 0] = 9
            if flat:
                img = np.where(labels[..., None] == 9, 230, 51).astype(np.uint8).repeat(3, axis=2)
            else:
                img = texture(10 * v + f, h, w, 3)
            (root / video / 'Images').mkdir(parents=True, exist_ok=True)
            (root / video / 'Labels').mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(root / video / 'Images' / name), img)
            cv2.imwrite(str(root / video / 'Labels' / name), labels)


def _digest(folder: Path) -> str:
    return hashlib.md5(b''.join(p.read_bytes() for p in sorted(folder.rglob('*.png')))).hexdigest()


def _sharpness(img: np.ndarray, mask: np.ndarray) -> float:
    lap = cv2.Laplacian(img.astype(np.float32).mean(axis=2), cv2.CV_32F)
    return float(lap[mask].var())


def test_disk_psf_is_a_disk():
    psf = disk_psf(4.0)
    assert psf.shape == (9, 9) and abs(psf.sum() - 1) < 1e-6
    assert psf[4, 4] == pytest.approx(psf[4, 2]) and psf[0, 0] == 0  # flat top, empty corners (not Gaussian)
    assert disk_psf(0)[0, 0] == 1
    step = np.zeros((30, 30), np.float32)
    step[:, 15:] = 1
    edge = defocus_blur(step, 4.0)[15]
    assert edge[10] == pytest.approx(0, abs=1e-6) and edge[20] == pytest.approx(1, abs=1e-6) and 0 < edge[15] < 1


def test_synthesis_reproducible_split_by_video(tmp_path):
    _make_cadis(tmp_path / 'CaDIS')
    script = _script()
    counts = script.make_cadisblur(str(tmp_path / 'CaDIS'), str(tmp_path / 'a'), seed=1, radius_range=(2, 5))
    script.make_cadisblur(str(tmp_path / 'CaDIS'), str(tmp_path / 'b'), seed=1, radius_range=(2, 5))
    script.main([str(tmp_path / 'CaDIS'), str(tmp_path / 'c'), '--seed', '2', '--radius', '2', '5'])
    assert _digest(tmp_path / 'a') == _digest(tmp_path / 'b') != _digest(tmp_path / 'c')
    assert counts == {'train': 4, 'test': 2, 'skipped': 0}
    for split in ('train', 'test'):
        names = {p.name for p in (tmp_path / 'a' / split / 'sharp').iterdir()}
        for folder in ('blur_anatomy', 'blur_instruments'):
            assert {p.name for p in (tmp_path / 'a' / split / folder).iterdir()} == names
    train_videos = {p.name.split('_')[0] for p in (tmp_path / 'a' / 'train' / 'sharp').iterdir()}
    test_videos = {p.name.split('_')[0] for p in (tmp_path / 'a' / 'test' / 'sharp').iterdir()}
    assert len(test_videos) == 1 and not train_videos & test_videos
    params = (tmp_path / 'a' / 'params.csv').read_text().splitlines()
    assert len(params) == 7 and all(2 <= float(r) <= 5 for line in params[1:] for r in line.split(',')[3:5])
    forced = script.make_cadisblur(str(tmp_path / 'CaDIS'), str(tmp_path / 'd'), test_videos=['Video02'])
    assert forced['test'] == 2 and (tmp_path / 'd' / 'test' / 'sharp' / 'Video2_frame000000.png').exists()


def test_focal_plane_versions_blur_the_right_layer(tmp_path):
    _make_cadis(tmp_path / 'CaDIS', videos=('Video01',), frames=1, h=96, w=128)
    out = tmp_path / 'out'
    _script().make_cadisblur(str(tmp_path / 'CaDIS'), str(out), radius_range=(4, 4), test_fraction=0)
    name = 'Video1_frame000000.png'
    labels = cv2.imread(str(tmp_path / 'CaDIS' / 'Video01' / 'Labels' / name), cv2.IMREAD_UNCHANGED)
    kernel = np.ones((9, 9), np.uint8)
    inst = cv2.erode((labels == 9).astype(np.uint8), kernel).astype(bool)
    anat = cv2.erode((labels != 9).astype(np.uint8), kernel).astype(bool)
    sharp = cv2.imread(str(out / 'train' / 'sharp' / name))
    ana = cv2.imread(str(out / 'train' / 'blur_anatomy' / name))
    ins = cv2.imread(str(out / 'train' / 'blur_instruments' / name))
    assert np.array_equal(ana[inst], sharp[inst])  # focal plane on instruments: instruments untouched
    assert np.array_equal(ins[anat], sharp[anat])  # focal plane on anatomy: anatomy untouched
    assert _sharpness(ana, anat) < 0.3 * _sharpness(sharp, anat)
    assert _sharpness(ins, inst) < 0.3 * _sharpness(sharp, inst)


def test_no_halo_at_object_borders(tmp_path):
    """Flat layers (anatomy 51, instrument 230): outputs stay within the two layers' range, and the blurred
    anatomy next to a sharp instrument receives no instrument colour beyond the feathered matte."""
    _make_cadis(tmp_path / 'CaDIS', videos=('Video01',), frames=1, flat=True)
    out = tmp_path / 'out'
    _script().make_cadisblur(str(tmp_path / 'CaDIS'), str(out), radius_range=(6, 6), test_fraction=0)
    name = 'Video1_frame000000.png'
    labels = cv2.imread(str(tmp_path / 'CaDIS' / 'Video01' / 'Labels' / name), cv2.IMREAD_UNCHANGED)
    for folder in ('blur_anatomy', 'blur_instruments'):
        img = cv2.imread(str(out / 'train' / folder / name))
        assert img.min() >= 51 and img.max() <= 230
    ana = cv2.imread(str(out / 'train' / 'blur_anatomy' / name))
    near = cv2.dilate((labels == 9).astype(np.uint8), np.ones((13, 13), np.uint8)).astype(bool)
    band = near & ~cv2.dilate((labels == 9).astype(np.uint8), np.ones((7, 7), np.uint8)).astype(bool)
    assert band.any() and np.abs(ana[band].astype(int) - 51).max() <= 1
    # the naive approach (blur the whole frame, then paste sharp instruments) does leave a halo there
    sharp = cv2.imread(str(out / 'train' / 'sharp' / name)).astype(np.float32) / 255
    naive = defocus_blur(sharp, 6)
    assert (naive[band] * 255 - 51).max() > 20
    ins = cv2.imread(str(out / 'train' / 'blur_instruments' / name)).astype(int)
    row = ins[labels.shape[0] // 2, :, 0]
    assert (np.diff(row) != 0).sum() > 4  # a soft ramp, not a hard two-value edge


def test_composite_rejects_unknown_mode():
    with pytest.raises(ValueError, match='sideways'):
        composite_two_planes(np.zeros((8, 8, 3), np.float32), np.zeros((8, 8)), 2, 'sideways')
