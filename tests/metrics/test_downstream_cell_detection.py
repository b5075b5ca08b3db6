"""Classical nuclei segmenter and the BBBC006 cell-detection script on a miniature replica of the data set."""

from pathlib import Path

import cv2
import numpy as np
import pytest
import tifffile

from helpers.scripts import load_script
from mpt_metrics.instance_ap import average_precision
from mpt_metrics.nuclei_segmentation import ClassicalNucleiSegmenter, build_segmenter


def _load_script():
    return load_script('eval_cell_detection')


def _disks(shape, centres, radius):
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    labels = np.zeros(shape, np.uint16)
    for i, (cy, cx) in enumerate(centres):
        labels[((yy - cy) ** 2 + (xx - cx) ** 2 <= radius ** 2) & (labels == 0)] = i + 1
    return labels


def _render(labels, seed, blur=0.0):
    rng = np.random.default_rng(seed)
    image = 1000.0 + 20000.0 * (labels > 0)
    if blur:
        image = cv2.GaussianBlur(image, (0, 0), blur)
    image += rng.normal(0, 300, labels.shape)
    return np.clip(image, 0, 65535).astype(np.uint16)


SITE1 = [(16, 16), (16, 60), (60, 30), (70, 75)]
SITE2 = [(20, 70), (75, 20)]


def test_classical_segmenter_counts_separate_disks():
    gt = _disks((96, 96), SITE1, 8)
    pred = ClassicalNucleiSegmenter()(_render(gt, 0))
    assert len(np.unique(pred)) - 1 == len(SITE1)
    assert average_precision(gt.astype(np.int64), pred, 0.7) == 1.0


def test_watershed_splits_two_touching_disks():
    gt = _disks((64, 80), [(32, 30), (32, 49)], 10)  # centres 19 px apart, radius 10: the disks touch
    from scipy import ndimage as ndi

    assert ndi.label(gt > 0)[1] == 1  # one connected blob before splitting
    pred = ClassicalNucleiSegmenter()(_render(gt, 1))
    assert len(np.unique(pred)) - 1 == 2
    assert average_precision(gt.astype(np.int64), pred, 0.5) == 1.0


def test_stardist_segmenter_reports_missing_package_clearly():
    try:
        import stardist  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match='pip install stardist'):
            build_segmenter('stardist')(np.zeros((8, 8), np.uint16))
    with pytest.raises(ValueError, match='unknown segmenter'):
        build_segmenter('cellpose')


def test_bbbc006_name_parsing_and_label_index(tmp_path):
    script = _load_script()
    key, channel = script.parse_key(Path('mcf-z-stacks-03212011_a01_s1_w1EB3C6A4F-Baa.tif'))
    assert key == ('a01', 1) and channel == 1
    assert script.parse_key(Path('mcf-z-stacks-03212011_P24_s2.png')) == (('p24', 2), None)
    with pytest.raises(ValueError, match='BBBC006 pattern'):
        script.parse_key(Path('frame_0001.png'))


def _make_replica(root):
    """Labels for two sites; blurry, sharp (16-bit TIFF, both channels) and deblurred (8-bit PNG) w1 images."""
    (root / 'labels').mkdir()
    planes = {'z02': root / 'z02', 'z16': root / 'z16', 'out': root / 'deblurred'}
    for folder in planes.values():
        folder.mkdir()
    for site, (well, centres) in enumerate([('a01', SITE1), ('b12', SITE2)], start=1):
        labels = _disks((96, 96), centres, 8)
        cv2.imwrite(str(root / 'labels' / f'mcf-z-stacks-03212011_{well}_s{site}.png'), labels)
        for plane, uid, blur in (('z02', 'A1B2', 6.0), ('z16', 'C3D4', 0.0)):
            for channel in (1, 2):
                image = _render(labels, site, blur) if channel == 1 else np.zeros((96, 96), np.uint16)
                name = f'mcf-z-stacks-03212011_{well}_s{site}_w{channel}{uid}-{plane}.tif'
                tifffile.imwrite(str(planes[plane] / name), image)
        sharp8 = (_render(labels, site + 10) // 257).astype(np.uint8)
        cv2.imwrite(str(planes['out'] / f'mcf-z-stacks-03212011_{well}_s{site}_w1A1B2-z02_MPT.png'), sharp8)
    return planes


def test_script_matches_labels_by_well_and_site(tmp_path, capsys):
    planes = _make_replica(tmp_path)
    script = _load_script()
    out = tmp_path / 'table6'
    code = script.main(['--labels', str(tmp_path / 'labels'), '--blur', str(planes['z02']),
                        '--deblurred', str(planes['out']), '--sharp', str(planes['z16']), '--out', str(out)])
    assert code == 0
    table = out.with_suffix('.md').read_text()
    assert table.splitlines()[0] == '| IoU | 0.5 | 0.7 | 0.9 | Mean AP |'
    rows = {line.split('|')[1].strip(): [float(v) for v in line.split('|')[2:-1]] for line in table.splitlines()[2:]}
    assert list(rows) == ['blur', 'deblurred', 'sharp']
    # Sharp and "deblurred" disks are found exactly only if each image met the label of its own well and site.
    assert rows['sharp'][0] == 1.0 and rows['deblurred'][0] == 1.0
    assert rows['blur'][3] < rows['sharp'][3]
    csv_lines = out.with_suffix('.csv').read_text().splitlines()
    assert csv_lines[0] == 'method,images,AP@0.5,AP@0.7,AP@0.9,mean_AP'
    assert csv_lines[1].startswith('blur,2,')  # the w2 files were skipped


def test_script_rejects_image_without_label_and_size_mismatch(tmp_path):
    planes = _make_replica(tmp_path)
    script = _load_script()
    stray = planes['z16'] / 'mcf-z-stacks-03212011_c03_s1_w1FFFF.tif'
    tifffile.imwrite(str(stray), np.zeros((96, 96), np.uint16))
    with pytest.raises(KeyError, match='no label for well c03 site 1'):
        script.main(['--labels', str(tmp_path / 'labels'), '--sharp', str(planes['z16'])])
    stray.unlink()
    small = planes['out'] / 'mcf-z-stacks-03212011_a01_s1_w1A1B2-z02_MPT.png'
    cv2.imwrite(str(small), np.zeros((64, 80), np.uint8))
    with pytest.raises(ValueError, match='--crop'):
        script.main(['--labels', str(tmp_path / 'labels'), '--deblurred', str(planes['out'])])
    assert script.main(['--labels', str(tmp_path / 'labels'), '--deblurred', str(planes['out']),
                        '--crop', '64x80']) == 0
