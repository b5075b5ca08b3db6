"""The shipped starter models: package files, a fixed input's output (catches a silent architecture change) and
``mpt-deblur``'s default-model selection."""

import filecmp
import json
import os

import cv2
import numpy as np
import pytest
import tifffile
import torch

from helpers import REPO
from mpt_deploy import deblur, inference
from mpt_deploy.starter_models import KINDS, StarterNetworks, deblur_kind, select_kind, sha256, starter_model

ROOT = str(REPO)


@pytest.fixture(scope='module')
def starters():
    return StarterNetworks()


@pytest.mark.parametrize('kind', KINDS)
def test_shipped_files_match_their_record_and_recipe(kind):
    model = starter_model(kind)
    assert os.path.getsize(model.weights) <= 10_000_000
    with open(model.record) as fin:
        record = json.load(fin)
    assert sha256(model.weights) == record['weights_sha256']
    assert filecmp.cmp(model.options, os.path.join(ROOT, 'options', f'train_MPT_starter_{kind}.yml'), shallow=False)
    with open(model.card) as fin:
        card = fin.read()
    assert record['weights_sha256'] in card and 'licence' in card


@pytest.mark.parametrize('kind', KINDS)
def test_fixed_input_gives_the_recorded_output(kind, starters):
    net, network_opt, _, model = starters.get(kind)
    with open(model.record) as fin:
        record = json.load(fin)
    channels = network_opt['in_chans']
    x = np.random.default_rng(0).random((1, channels, 16, 16), dtype=np.float32)
    with torch.no_grad():
        out = net(torch.from_numpy(x)).numpy()
    assert sum(p.numel() for p in net.parameters()) == record['parameters']
    np.testing.assert_allclose(out, np.array(record['reference_output'], np.float32), atol=2e-5)


def test_select_kind_by_colour_count_and_the_gray_model_deblurs_rgb_by_default():
    assert select_kind(1) == 'gray'
    assert select_kind(3) == 'rgb' and select_kind(4) == 'rgb'  # the network that fits (mpt-finetune's)
    assert deblur_kind(1) == 'gray' and deblur_kind(3) == 'gray' and deblur_kind(4) == 'gray'
    for pick in (select_kind, deblur_kind):
        with pytest.raises(ValueError, match='2 channels'):
            pick(2, 'two.tif')


def test_mpt_deblur_without_a_network_picks_the_starter_model_per_image(tmp_path, starters, capsys):
    rng = np.random.default_rng(3)
    src = tmp_path / 'in'
    src.mkdir()
    gray = cv2.GaussianBlur((rng.random((40, 48)) * 255).astype(np.uint8), (0, 0), 2)
    rgb = cv2.GaussianBlur((rng.random((36, 44, 3)) * 255).astype(np.uint8), (0, 0), 2)
    stack = (rng.random((2, 32, 40)) * 4000 + 200).astype(np.uint16)
    cv2.imwrite(str(src / 'gray.png'), gray)
    cv2.imwrite(str(src / 'rgb.png'), rgb)
    tifffile.imwrite(str(src / 'stack.tif'), stack, metadata={'axes': 'ZYX'})
    code = deblur.main(['-i', str(src), '-o', str(tmp_path / 'out'), '--tile', '0'])
    assert code == 0
    err = capsys.readouterr().err
    assert 'gray.png: starter model gray' in err and 'rgb.png: starter model gray' in err
    assert 'stack.tif: starter model gray' in err
    net, network_opt, norm, _ = starters.get('gray')
    for name in ('gray.png', 'rgb.png'):
        raw = cv2.imread(str(src / name), cv2.IMREAD_UNCHANGED)
        raw = raw[:, :, None] if raw.ndim == 2 else raw[:, :, ::-1]
        # RGB: each colour channel through the gray model on its own, with its own normalisation
        expected = np.concatenate([inference.deblur_plane(net, raw[:, :, c:c + 1], name, norm, 1, tile=0)
                                   for c in range(raw.shape[2])], axis=2)
        got = cv2.imread(str(tmp_path / 'out' / name), cv2.IMREAD_UNCHANGED)
        got = got[:, :, None] if got.ndim == 2 else got[:, :, ::-1]
        assert np.array_equal(got, expected)
    code = deblur.main(['-i', str(src / 'rgb.png'), '-o', str(tmp_path / 'rgb_model'), '--tile', '0',
                        '--starter', 'rgb'])
    assert code == 0 and 'rgb.png: starter model rgb' in capsys.readouterr().err
    net, network_opt, norm, _ = starters.get('rgb')
    raw = cv2.imread(str(src / 'rgb.png'), cv2.IMREAD_UNCHANGED)[:, :, ::-1]
    got = cv2.imread(str(tmp_path / 'rgb_model' / 'rgb.png'), cv2.IMREAD_UNCHANGED)[:, :, ::-1]
    assert np.array_equal(got, inference.deblur_plane(net, raw, 'rgb.png', norm, 3, tile=0))
    out_stack = tifffile.imread(str(tmp_path / 'out' / 'stack.tif'))
    assert out_stack.shape == stack.shape and out_stack.dtype == np.uint16


def test_forcing_a_starter_kind_and_refused_combinations(tmp_path, capsys):
    img = tmp_path / 'a.png'
    cv2.imwrite(str(img), (np.random.default_rng(0).random((32, 32)) * 255).astype(np.uint8))
    assert deblur.main(['-i', str(img), '-o', str(tmp_path / 'o'), '--starter', 'gray']) == 0
    for argv, match in ((['-opt', 'x.yml'], '-w must give'), (['--normalize', 'dtype'], 'own normalisation'),
                        (['-w', 'x.pth', '--starter', 'rgb'], 'cannot be combined')):
        with pytest.raises(SystemExit) as exc:
            deblur.main(['-i', str(img), '-o', str(tmp_path / 'p'), *argv])
        assert exc.value.code == 2
        assert match in capsys.readouterr().err
