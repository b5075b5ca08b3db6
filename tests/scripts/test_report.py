"""Result tables (Tables 1 and 2 layout), before/after grids, and a tiny end-to-end BasicSR test run."""

import json
import math

import cv2
import numpy as np
import pytest
import torch

from helpers.scripts import load_script


def _script():
    return load_script('report')


def test_table1_layout_from_given_numbers():
    report = _script()
    results = {
        'MPT': {'BBBC006_w1': {'PSNR': 34.891, 'SSIM': 0.9123, 'LPIPS': 0.1274},
                'CaDISBlur': {'PSNR': 44.98, 'SSIM': 0.962, 'LPIPS': None}},
        'blur': {'CaDISBlur': {'PSNR': 40.0, 'SSIM': 0.9, 'LPIPS': float('nan')}},
    }
    lines = report.results_table(results).splitlines()
    assert lines[0] == ('| Method | BBBC006_w1 PSNR↑ | BBBC006_w1 SSIM↑ | BBBC006_w1 LPIPS↓ '
                        '| CaDISBlur PSNR↑ | CaDISBlur SSIM↑ | CaDISBlur LPIPS↓ |')
    assert lines[1] == '|' + '---|' * 7
    assert lines[2] == '| MPT | 34.89 | 0.912 | 0.127 | 44.98 | 0.962 | n/a |'
    assert lines[3] == '| blur | n/a | n/a | n/a | 40.00 | 0.900 | n/a |'
    # Explicit column order, and Table 2's single-data-set layout.
    assert report.results_table(results, ['CaDISBlur', 'BBBC006_w1']).splitlines()[2].startswith('| MPT | 44.98')
    table2 = report.results_table({'MPT': {'DPDD': {'PSNR': 26.21, 'SSIM': 0.81, 'LPIPS': 0.2}}}).splitlines()
    assert table2[0] == 'DPDD' and table2[2] == '| Method | PSNR↑ | SSIM↑ | LPIPS↓ |'
    assert table2[4] == '| MPT | 26.21 | 0.810 | 0.200 |'


def test_image_grid_shape_and_content():
    report = _script()
    grey = np.arange(120, dtype=np.uint8).reshape(10, 12)
    rgb = np.full((10, 12, 3), 0.5, np.float32)
    deep = np.full((10, 12), 65535, np.uint16)
    small = [np.zeros((8, 5), np.uint8)] * 3
    grid = report.image_grid([[grey, rgb, deep], small], gap=4)
    assert grid.shape == (10 + 4 + 8, 12 * 3 + 2 * 4, 3) and grid.dtype == np.uint8
    assert np.array_equal(grid[:10, :12, 1], grey)
    assert (grid[:10, 16:28] == 128).all() and (grid[:10, 32:44] == 255).all()
    assert (grid[14:, :5] == 0).all() and (grid[14:, 23:] == 255).all()  # short row padded with background
    with pytest.raises(ValueError, match='different heights'):
        report.image_grid([[grey, small[0]]])


def _tiny_setup(tmp_path):
    """Paired 16x16 PNGs (blurry = sharp + 2 grey levels), a tiny MPT whose output equals its input."""
    rng = np.random.default_rng(0)
    for sub in ('gt', 'lq'):
        (tmp_path / sub).mkdir()
    for i in range(2):
        sharp = rng.integers(10, 240, (16, 16, 3), dtype=np.uint8)
        cv2.imwrite(str(tmp_path / 'gt' / f'{i}.png'), sharp)
        cv2.imwrite(str(tmp_path / 'lq' / f'{i}.png'), sharp + 2)
    from mpt_arch import MPT

    net = MPT(in_chans=3, dim=8, num_blocks=(1, 1), heads=(1, 1), scales=((1,), (1,)), window_size=4)
    with torch.no_grad():
        net.conv_out.weight.zero_()  # global residual only: output = input
    torch.save({'params': net.state_dict()}, tmp_path / 'net_g.pth')
    (tmp_path / 'test.yml').write_text(f"""
name: tiny_report
model_type: SRModel
num_gpu: 0
scale: 1
datasets:
  test_1:
    name: Tiny
    type: PairedImageDataset
    dataroot_gt: {tmp_path / 'gt'}
    dataroot_lq: {tmp_path / 'lq'}
    io_backend: {{type: disk}}
network_g: {{type: MPT, in_chans: 3, dim: 8, num_blocks: [1, 1], heads: [1, 1], scales: [[1], [1]], window_size: 4}}
path: {{}}
val:
  save_img: false
  metrics:
    psnr: {{type: calculate_psnr, crop_border: 0, test_y_channel: false}}
    ssim: {{type: calculate_ssim, crop_border: 0, test_y_channel: false}}
""")


def test_report_runs_basicsr_test_options_end_to_end(tmp_path):
    _tiny_setup(tmp_path)
    report = _script()
    out = tmp_path / 'report'
    assert report.main(['-opt', str(tmp_path / 'test.yml'), '--ckpt', f'identity={tmp_path / "net_g.pth"}',
                        '--grid-images', '2', '--out-dir', str(out)]) == 0
    results = json.loads((out / 'results.json').read_text())
    scores = results['identity']['Tiny']
    # Output == blurry input == sharp + 2 everywhere: MSE 4, PSNR = 10 log10(255^2 / 4).
    assert scores['PSNR'] == pytest.approx(10 * math.log10(255**2 / 4), abs=1e-6)
    assert 0.9 < scores['SSIM'] <= 1.0
    assert scores['LPIPS'] is None or math.isfinite(scores['LPIPS'])
    table = (out / 'results.md').read_text().splitlines()
    assert table[4].startswith(f"| identity | {10 * math.log10(255**2 / 4):.2f} |")
    grid = cv2.imread(str(out / 'grid_identity_Tiny.png'))
    assert grid.shape == (16 * 2 + 4, 16 * 3 + 2 * 4, 3)
    sharp0 = cv2.imread(str(tmp_path / 'gt' / '0.png'))
    assert np.array_equal(grid[:16, 40:56], sharp0) and np.array_equal(grid[:16, :16], sharp0 + 2)
    # Rebuilding the table from the saved numbers gives the same table.
    assert report.main(['--from-json', str(out / 'results.json'), '--out-dir', str(tmp_path / 'again')]) == 0
    assert (tmp_path / 'again' / 'results.md').read_text() == (out / 'results.md').read_text()
