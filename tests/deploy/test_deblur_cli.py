"""mpt-deblur: same format/dtype/shape out, exact round trips, per-channel gray nets, clear checkpoint errors."""

import subprocess
import sys

import cv2
import numpy as np
import pytest
import tifffile
import torch
from basicsr.archs import build_network

from mpt_deploy import deblur, model_loading
from mpt_plugin.smoke import TINY_MPT

pytestmark = pytest.mark.usefixtures('one_thread')


def _mpt(in_chans):
    return {**TINY_MPT, 'in_chans': in_chans}


def _identity_checkpoint(path, in_chans, key='params'):
    """Tiny MPT whose output convolution is zero: with MPT's global residual it is the identity."""
    net = build_network(dict(_mpt(in_chans)))
    state = net.state_dict()
    state['conv_out.weight'].zero_()
    torch.save({key: state} if key else state, path)
    return str(path)


def _run(tmp_path, inp, in_chans, *extra, key='params', tile=0):
    ckpt = _identity_checkpoint(tmp_path / 'net.pth', in_chans, key)
    args = ['--arch', 'MPT', '--net-opt', *[f'{k}={v}' for k, v in _mpt(in_chans).items() if k != 'type'],
            '-w', ckpt, '-i', str(inp), '-o', str(tmp_path / 'out'), '--tile', str(tile), '--overlap', '4',
            '--context', '4', *extra]
    assert deblur.main(args) == 0
    return tmp_path / 'out'


def test_16_bit_tiff_round_trip_is_exact(tmp_path):
    img = np.random.default_rng(0).integers(0, 65536, (40, 37), dtype=np.uint16)
    tifffile.imwrite(tmp_path / 'cell.tif', img)
    out = tifffile.imread(_run(tmp_path, tmp_path / 'cell.tif', 1, tile=32) / 'cell.tif')  # 4 tiles
    assert out.dtype == np.uint16 and out.shape == img.shape
    assert np.array_equal(out, img)


def test_8_bit_png_rgb_and_grayscale_folder(tmp_path):
    rng = np.random.default_rng(1)
    src = tmp_path / 'in'
    src.mkdir()
    rgb = rng.integers(0, 256, (12, 17, 3), dtype=np.uint8)
    gray = rng.integers(0, 256, (12, 17), dtype=np.uint8)
    cv2.imwrite(str(src / 'rgb.png'), rgb)
    cv2.imwrite(str(src / 'gray.png'), gray)
    out = _run(tmp_path, src, 1, key='params_ema')  # one-channel net: RGB is deblurred per channel
    rgb_out = cv2.imread(str(out / 'rgb.png'), cv2.IMREAD_UNCHANGED)
    gray_out = cv2.imread(str(out / 'gray.png'), cv2.IMREAD_UNCHANGED)
    assert rgb_out.dtype == np.uint8 and rgb_out.shape == rgb.shape and np.array_equal(rgb_out, rgb)
    assert gray_out.dtype == np.uint8 and gray_out.shape == gray.shape and np.array_equal(gray_out, gray)


def test_rgb_network_16_bit_png_and_jpeg(tmp_path):
    rng = np.random.default_rng(2)
    src = tmp_path / 'in'
    src.mkdir()
    png16 = rng.integers(0, 65536, (12, 14, 3), dtype=np.uint16)
    cv2.imwrite(str(src / 'a.png'), png16)
    cv2.imwrite(str(src / 'b.jpg'), rng.integers(0, 256, (12, 14, 3), dtype=np.uint8))
    out = _run(tmp_path, src, 3, key='')  # bare state dict
    assert np.array_equal(cv2.imread(str(out / 'a.png'), cv2.IMREAD_UNCHANGED), png16)
    jpg = cv2.imread(str(out / 'b.jpg'), cv2.IMREAD_UNCHANGED)
    assert jpg.dtype == np.uint8 and jpg.shape == (12, 14, 3)


def test_real_network_changes_the_image_and_keeps_format(tmp_path):
    """A random (non-identity) MPT: the output differs from the input, shape/dtype are kept."""
    net = build_network(dict(_mpt(1)))
    torch.save({'params': net.state_dict()}, tmp_path / 'rand.pth')
    img = np.random.default_rng(3).integers(0, 65536, (33, 29), dtype=np.uint16)
    tifffile.imwrite(tmp_path / 'x.tif', img)
    yml = tmp_path / 'net.yml'
    import yaml
    yml.write_text(yaml.safe_dump({'network_g': _mpt(1)}))
    assert deblur.main(['-opt', str(yml), '-w', str(tmp_path / 'rand.pth'), '-i', str(tmp_path / 'x.tif'),
                        '-o', str(tmp_path / 'o'), '--tile', '0']) == 0
    out = tifffile.imread(tmp_path / 'o' / 'x.tif')
    assert out.dtype == np.uint16 and out.shape == img.shape and not np.array_equal(out, img)


def test_mismatching_checkpoint_lists_keys_and_shapes(tmp_path):
    ckpt = _identity_checkpoint(tmp_path / 'net.pth', 1)
    with pytest.raises(model_loading.CheckpointMismatchError) as err:
        model_loading.load_network({**_mpt(1), 'dim': 16}, ckpt)
    assert 'shape mismatches' in str(err.value) and 'conv_in.weight' in str(err.value)
    state = torch.load(ckpt, weights_only=True)['params']
    state['extra.weight'] = torch.zeros(1)
    del state['conv_out.weight']
    torch.save({'params': state}, tmp_path / 'bad.pth')
    mismatch = model_loading.CheckpointMismatchError
    with pytest.raises(mismatch, match=r'(?s)missing keys: conv_out.weight.*unexpected keys'):
        model_loading.load_network(_mpt(1), str(tmp_path / 'bad.pth'))


def test_wrong_channel_count_and_same_output_folder_are_errors(tmp_path, capsys):
    cv2.imwrite(str(tmp_path / 'g.png'), np.zeros((16, 16), np.uint8))
    ckpt = _identity_checkpoint(tmp_path / 'net.pth', 3)
    net = ['--arch', 'MPT', '--net-opt', *[f'{k}={v}' for k, v in _mpt(3).items() if k != 'type'], '-w', ckpt]
    assert deblur.main([*net, '-i', str(tmp_path / 'g.png'), '-o', str(tmp_path / 'out')]) == 1
    assert 'g.png' in capsys.readouterr().err
    assert deblur.main([*net, '-i', str(tmp_path / 'g.png'), '-o', str(tmp_path)]) == 1
    assert 'resolves to the input file' in capsys.readouterr().err


def test_module_shows_help():
    res = subprocess.run([sys.executable, '-m', 'mpt_deploy.deblur', '--help'], capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 0 and '--tile' in res.stdout and '--weights' in res.stdout
