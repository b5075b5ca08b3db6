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
    assert 'tile size in pixels; 0 = whole image at once (default: 512)' in flat and '(default: auto)' in flat


def test_an_empty_file_is_named_as_empty(tmp_path):
    for name in ('empty.tif', 'empty.png'):
        (tmp_path / name).write_bytes(b'')
        with pytest.raises(StackError, match=r"empty\.(tif|png)' is empty \(0 bytes\)"):
            read_image_file(str(tmp_path / name))
    tifffile.imwrite(tmp_path / 'ok.tif', np.ones((4, 5), np.uint16))
    assert read_image_file(str(tmp_path / 'ok.tif')).data.shape == (4, 5)
