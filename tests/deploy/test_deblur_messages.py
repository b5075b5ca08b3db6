"""What mpt-deblur tells the user: early path errors, honest progress, plain help with defaults, empty files."""

import subprocess
import sys

import numpy as np
import pytest
import tifffile

from mpt_deploy import deblur
from mpt_deploy.inference import network_inputs
from mpt_deploy.stacks import ImageFile, StackError, read_image_file


def test_a_mistyped_path_is_reported_before_torch_loads(tmp_path):
    code = ('import sys\nfrom mpt_deploy.deblur import main\n'
            f"rc = main(['-i', {str(tmp_path / 'nope.tif')!r}, '-o', {str(tmp_path / 'out')!r}])\n"
            "assert 'torch' not in sys.modules, 'torch was imported before the path was checked'\nsys.exit(rc)\n")
    res = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 1, res.stderr[-2000:]
    assert "mpt-deblur: error: Input '" in res.stderr and 'nope.tif' in res.stderr and 'does not exist' in res.stderr


def test_progress_counts_network_inputs_not_channels():
    rgb = ImageFile('rgb.png', np.zeros((8, 8, 3), np.uint8), 'YXS', False)
    assert network_inputs(rgb, 3) == 1  # an RGB network takes the three channels at once
    assert network_inputs(rgb, 1) == 3  # a grayscale network takes them one by one
    stack = ImageFile('z.tif', np.zeros((5, 8, 8), np.uint16), 'ZYX', True)
    assert network_inputs(stack, 1) == 5
    rgba = ImageFile('a.png', np.zeros((8, 8, 4), np.uint8), 'YXS', False)
    assert network_inputs(rgba, 3) == 1  # alpha is passed through


def test_help_is_plain_text_with_defaults(capsys):
    with pytest.raises(SystemExit):
        deblur.parse_args(['--help'])
    text = capsys.readouterr().out
    assert '``' not in text and text.startswith('usage: mpt-deblur')
    flat = ' '.join(text.split())  # argparse wraps lines
    assert 'tile size in pixels; 0 = whole image at once; auto:' in flat and '(default: auto)' in flat


def test_an_empty_file_is_named_as_empty(tmp_path):
    for name in ('empty.tif', 'empty.png'):
        (tmp_path / name).write_bytes(b'')
        with pytest.raises(StackError, match=r"empty\.(tif|png)' is empty \(0 bytes\)"):
            read_image_file(str(tmp_path / name))
    tifffile.imwrite(tmp_path / 'ok.tif', np.ones((4, 5), np.uint16))
    assert read_image_file(str(tmp_path / 'ok.tif')).data.shape == (4, 5)


def _undershooting_net(tmp_path):
    """A tiny MPT whose output convolution is large and random: it undershoots 0 on a dark 16-bit image."""
    import torch
    import yaml
    from basicsr.archs import build_network

    from mpt_plugin.smoke import TINY_MPT

    torch.manual_seed(0)
    state = build_network(dict(TINY_MPT)).state_dict()
    state['conv_out.weight'].normal_(0.0, 0.2)
    torch.save({'params': state}, tmp_path / 'net.pth')
    opt = tmp_path / 'net.yml'
    opt.write_text(yaml.safe_dump({'network_g': dict(TINY_MPT)}), encoding='utf-8')  # normalize: dtype
    return ['-opt', str(opt), '-w', str(tmp_path / 'net.pth')]


def test_clipping_is_counted_per_file_and_clip_none_keeps_float32(tmp_path, capsys):
    net = _undershooting_net(tmp_path)
    rng = np.random.default_rng(0)
    dark = (200 + rng.integers(0, 300, (40, 48))).astype(np.uint16)
    tifffile.imwrite(tmp_path / 'dark.tif', dark)
    assert deblur.main([*net, '-i', str(tmp_path / 'dark.tif'), '-o', str(tmp_path / 'clipped')]) == 0
    clipped = tifffile.imread(tmp_path / 'clipped' / 'dark.tif')
    err = capsys.readouterr().err
    assert deblur.main([*net, '-i', str(tmp_path / 'dark.tif'), '-o', str(tmp_path / 'float'), '--clip',
                        'none']) == 0
    raw = tifffile.imread(tmp_path / 'float' / 'dark.tif')
    assert raw.dtype == np.float32 and clipped.dtype == np.uint16
    below, above = int(np.count_nonzero(np.round(raw) < 0)), int(np.count_nonzero(np.round(raw) > 65535))
    assert below > 0  # the network does undershoot here
    assert np.array_equal(np.clip(np.round(raw), 0, 65535).astype(np.uint16), clipped)
    assert f'dark.tif: {below} value(s) clipped to 0, {above} to 65535' in err, err[-600:]
    assert 'clipped to' not in capsys.readouterr().err  # --clip none clips nothing
    cv_png = tmp_path / 'dark.png'
    import cv2

    cv2.imwrite(str(cv_png), dark)
    assert deblur.main([*net, '-i', str(cv_png), '-o', str(tmp_path / 'png'), '--clip', 'none']) == 1
    assert '--clip none writes float32, which only TIFF holds' in capsys.readouterr().err
    assert not (tmp_path / 'png' / 'dark.png').exists()


def test_amp_bf16_deblurs_within_a_few_counts_of_float32(tmp_path):
    img = (np.random.default_rng(1).random((36, 44)) * 3000 + 500).astype(np.uint16)
    tifffile.imwrite(tmp_path / 'a.tif', img)
    assert deblur.main(['-i', str(tmp_path / 'a.tif'), '-o', str(tmp_path / 'fp32'), '--device', 'auto']) == 0
    assert deblur.main(['-i', str(tmp_path / 'a.tif'), '-o', str(tmp_path / 'bf16'), '--amp', 'bf16']) == 0
    fp32 = tifffile.imread(tmp_path / 'fp32' / 'a.tif').astype(np.int64)
    bf16 = tifffile.imread(tmp_path / 'bf16' / 'a.tif')
    assert bf16.dtype == np.uint16 and not np.array_equal(bf16, fp32)  # it did run in bf16
    assert np.abs(bf16 - fp32).mean() < 0.01 * img.mean()  # bf16 keeps 8 significant bits
