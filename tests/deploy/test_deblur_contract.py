"""The inference contract of mpt-deblur: stacks and axes, channels, safe output, batches, checkpoints, arguments."""

import errno
import os

import cv2
import numpy as np
import pytest
import tifffile
import torch
import yaml
from basicsr.archs import build_network

from mpt_common.checkpoint import CheckpointError, load_checkpoint
from mpt_deploy import deblur, model_loading, stacks
from mpt_plugin.smoke import TINY_MPT

pytestmark = pytest.mark.usefixtures('one_thread')
NET_ARGS = [f'{k}={v}' for k, v in TINY_MPT.items() if k != 'type']


def _checkpoint(path, identity=False, in_chans=1, poison=False):
    net = build_network({**TINY_MPT, 'in_chans': in_chans})
    state = net.state_dict()
    if identity:
        state['conv_out.weight'].zero_()  # MPT's global residual: the identity
    if poison:
        state['conv_in.weight'][0, 0, 0, 0] = float('nan')
    torch.save({'params': state}, path)
    return str(path)


def _args(ckpt, inp, out, *extra, in_chans=1):
    net = [a if not a.startswith('in_chans=') else f'in_chans={in_chans}' for a in NET_ARGS]
    inputs = [str(p) for p in (inp if isinstance(inp, (list, tuple)) else [inp])]
    return ['--arch', 'MPT', '--net-opt', *net, '-w', str(ckpt), '-i', *inputs, '-o', str(out), '--tile', '0',
            *extra]


def _stack(shape, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.random(shape) * 3000 + 100 * rng.random(shape[:-2] + (1, 1))).astype(np.uint16)


# --- stacks ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize('kind', ['z3', 'z4', 'z5', 'tzyx'])
def test_stacks_keep_shape_and_equal_per_plane_results(tmp_path, kind):
    """z = 3/4/5 used to become RGB / RGB + alpha / 64 images of 5 x 64; each plane must be a plane."""
    ckpt = _checkpoint(tmp_path / 'rand.pth')
    if kind == 'tzyx':
        data = _stack((2, 3, 20, 24))
        tifffile.imwrite(tmp_path / 'stack.tif', data, imagej=True,
                         metadata={'axes': 'TZYX', 'spacing': 0.7, 'unit': 'um'}, resolution=(3.0, 3.0))
    else:
        data = _stack((int(kind[1]), 20, 24))
        tifffile.imwrite(tmp_path / 'stack.tif', data, photometric='minisblack')  # no axis names: planes
    assert deblur.main(_args(ckpt, tmp_path / 'stack.tif', tmp_path / 'out', '--normalize', 'input_percentile')) == 0
    out_file = tmp_path / 'out' / 'stack.tif'
    out = tifffile.imread(out_file)
    assert out.shape == data.shape and out.dtype == data.dtype and not np.array_equal(out, data)
    planes = data.reshape(-1, 20, 24)
    (tmp_path / 'planes').mkdir()
    for i, plane in enumerate(planes):
        tifffile.imwrite(tmp_path / 'planes' / f'p{i}.tif', plane)
    assert deblur.main(_args(ckpt, tmp_path / 'planes', tmp_path / 'out_planes', '--normalize',
                             'input_percentile')) == 0
    for i, got in enumerate(out.reshape(-1, 20, 24)):
        assert np.array_equal(got, tifffile.imread(tmp_path / 'out_planes' / f'p{i}.tif')), i
    if kind == 'tzyx':
        with tifffile.TiffFile(out_file) as tif:
            assert tif.series[0].axes == 'TZYX'
            assert tif.imagej_metadata['spacing'] == 0.7 and tif.imagej_metadata['unit'] == 'um'
            assert tif.pages[0].tags['XResolution'].value == (3, 1)


def test_ome_metadata_axes_override_and_float32(tmp_path):
    ckpt = _checkpoint(tmp_path / 'id.pth', identity=True)
    src = tmp_path / 'in'
    src.mkdir()
    tifffile.imwrite(src / 'ome.tif', _stack((2, 16, 18)), ome=True, metadata={'axes': 'ZYX', 'PhysicalSizeX': 0.25})
    tifffile.imwrite(src / 'rgbtag.tif', _stack((3, 16, 18)))  # tifffile tags a bare (3, H, W) array as RGB
    floats = np.random.default_rng(1).normal(0.3, 0.2, (16, 18)).astype(np.float32)
    tifffile.imwrite(src / 'float.tif', floats)
    assert deblur.main(_args(ckpt, [src / 'ome.tif', src / 'float.tif'], tmp_path / 'out')) == 0
    with tifffile.TiffFile(src / 'ome.tif') as a, tifffile.TiffFile(tmp_path / 'out' / 'ome.tif') as b:
        assert b.is_ome and b.ome_metadata == a.ome_metadata and b.series[0].axes == 'ZYX'
    out = tifffile.imread(tmp_path / 'out' / 'float.tif')
    assert out.dtype == np.float32 and np.array_equal(out, floats)  # identity net, dtype map = identity
    assert deblur.main(_args(ckpt, src / 'rgbtag.tif', tmp_path / 'out2', '--axes', 'zyx')) == 0
    with tifffile.TiffFile(tmp_path / 'out2' / 'rgbtag.tif') as tif:
        assert tif.series[0].axes == 'ZYX' and tif.pages[0].photometric == 1  # planes, not RGB
    assert deblur.main(_args(ckpt, src / 'rgbtag.tif', tmp_path / 'out3', '--axes', 'TZYX')) == 1  # 4 != 3 dims


def test_channels_policy_is_explicit(tmp_path, capsys):
    ckpt = _checkpoint(tmp_path / 'rgb.pth', identity=True, in_chans=3)
    gray = np.random.default_rng(2).integers(0, 256, (16, 16), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / 'g.png'), gray)
    assert deblur.main(_args(ckpt, tmp_path / 'g.png', tmp_path / 'out', in_chans=3)) == 1
    assert '--channels replicate' in capsys.readouterr().err
    assert not (tmp_path / 'out' / 'g.png').exists()
    assert deblur.main(_args(ckpt, tmp_path / 'g.png', tmp_path / 'out', '--channels', 'replicate', in_chans=3)) == 0
    assert np.array_equal(cv2.imread(str(tmp_path / 'out' / 'g.png'), cv2.IMREAD_UNCHANGED), gray)


# --- safe output ----------------------------------------------------------------------------------------------
def test_symlinked_output_folder_is_refused_and_inputs_unchanged(tmp_path, capsys):
    src = tmp_path / 'in'
    src.mkdir()
    tifffile.imwrite(src / 'a.tif', _stack((20, 24)))
    before = {n: (src / n).read_bytes() for n in os.listdir(src)}
    os.symlink(src, tmp_path / 'link')
    ckpt = _checkpoint(tmp_path / 'rand.pth')
    assert deblur.main(_args(ckpt, src, tmp_path / 'link')) == 1
    assert 'resolves to the input file' in capsys.readouterr().err
    assert {n: (src / n).read_bytes() for n in os.listdir(src)} == before


def test_disk_full_leaves_no_partial_file(tmp_path, monkeypatch, capsys):
    src = tmp_path / 'in'
    src.mkdir()
    for name in ('a.tif', 'b.tif'):
        tifffile.imwrite(src / name, _stack((20, 24)))
    out = tmp_path / 'out'
    out.mkdir()
    (out / 'b.tif').write_bytes(b'previous result')  # an earlier output must survive a failed rewrite
    real = tifffile.imwrite

    def full_disk(path, data, **kwargs):
        if 'b.tif' in os.path.basename(path):
            with open(path, 'wb') as handle:
                handle.write(b'II*\x00partial')
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(path, data, **kwargs)

    monkeypatch.setattr(tifffile, 'imwrite', full_disk)
    assert deblur.main(_args(_checkpoint(tmp_path / 'r.pth'), src, out, '--overwrite')) == 1
    err = capsys.readouterr().err
    assert 'b.tif' in err and 'disk full' in err
    assert sorted(os.listdir(out)) == ['a.tif', 'b.tif']  # no temporary file left behind
    assert (out / 'b.tif').read_bytes() == b'previous result'
    assert tifffile.imread(out / 'a.tif').shape == (20, 24)


def test_existing_outputs_are_skipped_unless_overwrite(tmp_path, capsys):
    """Issue 27 item 8: an output that exists is not replaced silently; rerunning finishes an interrupted folder."""
    src, out = tmp_path / 'in', tmp_path / 'out'
    src.mkdir()
    out.mkdir()
    for name in ('a.tif', 'b.tif', 'c.tif'):
        tifffile.imwrite(src / name, _stack((20, 24), seed=len(name)))
    (out / 'b.tif').write_bytes(b'an earlier result')
    ckpt = _checkpoint(tmp_path / 'id.pth', identity=True)
    assert deblur.main(_args(ckpt, src, out)) == 0
    err = capsys.readouterr().err
    assert f"skipped: {src / 'b.tif'}: {out / 'b.tif'} exists (--overwrite replaces it)" in err
    assert f"2 file(s) written to {str(out)!r}, 1 skipped (output already there) in " in err
    assert (out / 'b.tif').read_bytes() == b'an earlier result' and (out / 'a.tif').is_file()
    (out / 'c.tif').unlink()  # an interrupted run: the same command finishes the folder
    assert deblur.main(_args(ckpt, src, out)) == 0
    assert '1 file(s) written' in capsys.readouterr().err and (out / 'c.tif').is_file()
    assert deblur.main(_args(ckpt, src, out, '--overwrite')) == 0
    assert np.array_equal(tifffile.imread(out / 'b.tif'), tifffile.imread(src / 'b.tif'))  # identity network


def test_nan_weights_exit_1(tmp_path, capsys):
    tifffile.imwrite(tmp_path / 'a.tif', _stack((20, 24)))
    ckpt = _checkpoint(tmp_path / 'nan.pth', poison=True)
    assert deblur.main(_args(ckpt, tmp_path / 'a.tif', tmp_path / 'out')) == 1
    err = capsys.readouterr().err
    assert 'nan.pth' in err and 'conv_in.weight' in err and 'NaN' in err
    assert not (tmp_path / 'out' / 'a.tif').exists()


def test_mixed_batch_processes_every_good_file(tmp_path, capsys):
    src = tmp_path / 'in'
    src.mkdir()
    tifffile.imwrite(src / 'good1.tif', _stack((20, 24)))
    cv2.imwrite(str(src / 'good2.png'), np.full((16, 20), 77, np.uint8))
    (src / 'broken.tif').write_bytes(tifffile.memmap.__doc__.encode()[:50])  # not a TIFF
    tifffile.imwrite(src / 'int32.tif', np.zeros((8, 8), np.int32))  # unsupported dtype
    assert deblur.main(_args(_checkpoint(tmp_path / 'id.pth', identity=True), src, tmp_path / 'out')) == 1
    assert sorted(os.listdir(tmp_path / 'out')) == ['good1.tif', 'good2.png']
    err = capsys.readouterr().err
    summary = err[err.index('2 of 4 file(s) failed'):]
    assert 'broken.tif' in summary and 'int32.tif' in summary and 'good1' not in summary


# --- checkpoints, options, arguments --------------------------------------------------------------------------
def test_corrupt_truncated_and_foreign_checkpoints_name_the_file(tmp_path):
    good = _checkpoint(tmp_path / 'good.pth')
    data = open(good, 'rb').read()
    (tmp_path / 'truncated.pth').write_bytes(data[:len(data) // 2])
    (tmp_path / 'garbage.pth').write_bytes(b'\x00garbage' * 20)
    (tmp_path / 'empty.pth').write_bytes(b'')
    torch.save({'params': {'w': torch.zeros(1)}, 'opt': argparse_like()}, tmp_path / 'foreign.pth')
    for name in ('truncated.pth', 'garbage.pth', 'empty.pth', 'foreign.pth', 'missing.pth'):
        with pytest.raises(CheckpointError) as err:
            load_checkpoint(str(tmp_path / name))
        assert name in str(err.value) and 'weights_only' not in str(err.value)
    with pytest.raises(CheckpointError, match='arbitrary code'):
        load_checkpoint(str(tmp_path / 'foreign.pth'))
    # BasicSR's own loading (path.pretrain_network_g) goes through the same loader once the plugin is active
    from basicsr.models.base_model import BaseModel

    from mpt_plugin import patches

    patches.apply()
    model = BaseModel.__new__(BaseModel)
    model.opt = {'dist': False}
    with pytest.raises(CheckpointError, match='truncated.pth'):
        model.load_network(torch.nn.Linear(1, 1), str(tmp_path / 'truncated.pth'))


class argparse_like:  # noqa: N801 - a foreign object inside a checkpoint
    pass


def test_bad_arguments_are_refused_up_front(tmp_path, capsys):
    for extra, word in ((['--tile', '-5'], '--tile'), (['--tile', '40', '--overlap', '20', '--context', '10'],
                                                      '--overlap'), (['--axes', 'ZZX'], 'axes')):
        with pytest.raises(SystemExit) as exit_info:
            deblur.main(['--arch', 'MPT', '-w', 'missing.pth', '-i', 'missing', '-o', str(tmp_path), *extra])
        assert exit_info.value.code == 2 and word in capsys.readouterr().err


def test_option_file_normalisation_is_applied_and_legacy_map_refused(tmp_path, capsys):
    ckpt = _checkpoint(tmp_path / 'id.pth', identity=True)
    img = _stack((20, 24))
    tifffile.imwrite(tmp_path / 'a.tif', img)
    dataset = {'type': 'BBBC006Dataset', 'dataroot': 'x', 'normalize': 'percentile'}
    legacy = tmp_path / 'legacy.yml'
    legacy.write_text(yaml.safe_dump({'network_g': TINY_MPT, 'datasets': {'train': dataset}}))
    assert deblur.main(['-opt', str(legacy), '-w', ckpt, '-i', str(tmp_path / 'a.tif'), '-o',
                        str(tmp_path / 'out')]) == 1
    err = capsys.readouterr().err
    assert 'in-focus ground truth' in err and 'normalize: input_percentile' in err
    current = tmp_path / 'current.yml'  # no normalize key: the BBBC006 default (input percentiles)
    current.write_text(yaml.safe_dump({'network_g': TINY_MPT, 'datasets': {'train': {**dataset, 'normalize': None}}}))
    opt = yaml.safe_load(current.read_text())
    del opt['datasets']['train']['normalize']
    current.write_text(yaml.safe_dump(opt))
    assert model_loading.inference_normalization(str(current)).mode == 'input_percentile'
    assert deblur.main(['-opt', str(current), '-w', ckpt, '-i', str(tmp_path / 'a.tif'), '-o',
                        str(tmp_path / 'out'), '--tile', '0']) == 0
    assert np.array_equal(tifffile.imread(tmp_path / 'out' / 'a.tif'), img)  # exact round trip of the map
    with pytest.raises(ValueError, match='differ from option file'):
        model_loading.inference_normalization(str(current), 'dtype')


def test_stack_planes_round_trip():
    data = np.arange(2 * 3 * 4 * 5 * 3).reshape(2, 3, 4, 5, 3)
    flat, layout = stacks.planes(data, 'TZYXS', 'S')
    assert flat.shape == (6, 4, 5, 3) and np.array_equal(flat[4], data[1, 1])
    assert np.array_equal(stacks.from_planes(flat, layout), data)
    flat, layout = stacks.planes(data[..., 0].transpose(0, 2, 3, 1), 'TYXZ', None)
    assert flat.shape == (6, 4, 5, 1) and np.array_equal(flat[4, :, :, 0], data[1, 1, :, :, 0])


def test_non_finite_network_output_fails_that_file_only(tmp_path, monkeypatch, capsys):
    from mpt_common import tiling

    src = tmp_path / 'in'
    src.mkdir()
    tifffile.imwrite(src / 'a.tif', _stack((20, 24)))
    tifffile.imwrite(src / 'b.tif', _stack((20, 24), seed=1))
    real = tiling.tiled_forward
    calls = []

    def sometimes_nan(net, image, **kwargs):
        out = real(net, image, **kwargs)
        calls.append(1)
        return out.fill_(float('inf')) if len(calls) == 1 else out

    monkeypatch.setattr(tiling, 'tiled_forward', sometimes_nan)
    assert deblur.main(_args(_checkpoint(tmp_path / 'id.pth', identity=True), src, tmp_path / 'out')) == 1
    assert os.listdir(tmp_path / 'out') == ['b.tif']
    assert 'a.tif' in capsys.readouterr().err
