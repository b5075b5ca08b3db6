"""The authors' released weights run exactly: ``MPT(compat='authors')`` + the checkpoint converter (issue 12).

The oracle is the authors' network at ``<repo>/../shared/reference/authors_mpt/MPT.py`` (tests that need it are
skipped when it is absent, as in a user's clone); the frozen fixture ``tests/fixtures/authors_mpt_tiny.pt``
(``tests/helpers/authors_fixture.py``) keeps the exact check running without it.
"""

import json

import numpy as np
import pytest
import tifffile
import torch
import torch.nn.functional as F

from helpers import REPO
from helpers.scripts import load_script
from mpt_arch import MPT
from mpt_deploy import deblur
from mpt_deploy.authors_checkpoint import (
    AuthorsCheckpointError,
    authors_names,
    convert_authors_state_dict,
    is_authors_state_dict,
)

ORACLE_DIR = REPO.parent / 'shared' / 'reference' / 'authors_mpt'
FIXTURE = REPO / 'tests' / 'fixtures' / 'authors_mpt_tiny.pt'
needs_oracle = pytest.mark.skipif(not (ORACLE_DIR / 'MPT.py').is_file(), reason='authors\' MPT.py not present')
# tiny authors' configuration with every kind of sub-block: r = 8, 4, 2 (plain and shifted) and r = 1 shifted
DOWNPOOL = [[[1, 1 / 8], [1, 1 / 4]], [[1, 1 / 4], [1, 1 / 2]], [[1, 1 / 2], [1, 1 / 2]], [[1, 1 / 2], [1, 1]]]
SCALES = [[s[1] for s in level] for level in DOWNPOOL]

pytestmark = pytest.mark.usefixtures('one_thread')


def _fixture_tools():
    from helpers import authors_fixture

    return authors_fixture


def _relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


def _build(network_opt: dict) -> MPT:
    return MPT(**{k: v for k, v in network_opt.items() if k != 'type'})


@pytest.fixture(scope='module')
def converted(tmp_path_factory):
    """For RGB and gray: the randomised authors' net, saved as their trainer does (``module.Network.`` prefix,
    index buffers included), converted by the script and strict-loaded into ``MPT(compat='authors')``."""
    tools = _fixture_tools()
    oracle = tools.load_oracle(ORACLE_DIR / 'MPT.py')
    folder = tmp_path_factory.mktemp('authors')
    nets = {}
    for chans in (3, 1):
        ref = oracle(inp_channels=chans, out_channels=chans, dim=8, num_blocks=[2, 2, 2, 2], downpool=DOWNPOOL).eval()
        tools.randomise(ref, chans)
        temps = [p for n, p in ref.named_parameters() if n.endswith('attn.temperature.1')]
        assert any(bool((t < 0).any()) for t in temps) and any(bool((t > 0).any()) for t in temps)
        src, dst = folder / f'authors_{chans}.pth', folder / f'converted_{chans}.pth'
        state = {'module.Network.' + k: v for k, v in ref.state_dict().items()}
        assert sum(k.endswith('relative_position_index') for k in state) == 14
        torch.save(state, src)
        assert load_script('convert_authors_checkpoint').main([str(src), str(dst), '--scales', json.dumps(SCALES)]) == 0
        params = torch.load(dst, weights_only=True)['params']
        net = MPT(compat='authors', in_chans=chans, dim=8, num_blocks=[2, 2, 2, 2], scales=SCALES).eval()
        net.load_state_dict(params, strict=True)
        nets[chans] = (ref, net)
    return nets


@needs_oracle
@pytest.mark.parametrize('chans,size', [(3, (128, 128)), (3, (256, 128)), (1, (128, 128))])
def test_converted_weights_reproduce_the_authors_output(converted, chans, size):
    ref, net = converted[chans]
    x = torch.rand(1, chans, *size)
    with torch.no_grad():
        want = ref(x)['result']
        fast = net(x)  # inference strip path
    slow = net(x).detach()  # autograd (training) path
    assert _relative_error(fast, want) < 1e-4
    assert _relative_error(slow, want) < 1e-4


@needs_oracle
def test_any_size_is_padded_to_the_authors_multiple_and_cropped(converted):
    ref, net = converted[3]
    assert net.pad_multiple == 128
    x = torch.rand(1, 3, 130, 200)
    with torch.no_grad():
        out = net(x)
        padded = F.pad(x, (0, 256 - 200, 0, 256 - 130), mode='reflect')
        want = ref(padded)['result'][..., :130, :200] - padded[..., :130, :200] + x
    assert out.shape == x.shape
    assert _relative_error(out, want) < 1e-4


def test_compat_returns_the_input_size_gray_and_rgb():
    for chans in (1, 3):
        net = MPT(compat='authors', in_chans=chans, dim=4, num_blocks=[1, 1, 1, 1], scales=[[0.5]] * 4).eval()
        x = torch.rand(1, chans, 130, 200)
        with torch.no_grad():
            assert net(x).shape == (1, chans, 130, 200)
        assert net(x).shape == (1, chans, 130, 200)


def test_frozen_fixture_matches_without_the_oracle():
    data = torch.load(FIXTURE, weights_only=True)['authors']
    assert is_authors_state_dict(data['state'])
    state, network_opt = convert_authors_state_dict(data['state'], data['scales'])
    net = _build(network_opt).eval()
    net.load_state_dict(state, strict=True)
    with torch.no_grad():
        out = net(data['input'])
    assert _relative_error(out, data['output']) < 1e-4
    assert _relative_error(net(data['input']).detach(), data['output']) < 1e-4


def test_default_mpt_is_unchanged():
    """Names and count at the paper configuration, and the output of a tiny default net frozen before issue 12."""
    net = MPT()
    names = set(net.state_dict())
    assert sum(p.numel() for p in net.parameters()) == 19_799_356
    assert not any(n.endswith('cswa.temperature') for n in names)
    assert sum(n.endswith('cswa.logit_scale') for n in names) == 42
    authors_names = set(MPT(compat='authors').state_dict())
    assert {n.replace('logit_scale', 'temperature') for n in names} == authors_names
    golden = torch.load(FIXTURE, weights_only=True)['default']
    tiny = MPT(**golden['config']).eval()
    tiny.load_state_dict(golden['state'], strict=True)
    with torch.no_grad():
        torch.testing.assert_close(tiny(golden['input']), golden['output'], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(tiny(golden['input']).detach(), golden['output_train'], rtol=1e-5, atol=1e-6)


@needs_oracle
def test_paper_configuration_converts_with_its_parameter_count():
    tools = _fixture_tools()
    ref = tools.load_oracle(ORACLE_DIR / 'MPT.py')()
    state, network_opt = convert_authors_state_dict({'module.Network.' + k: v for k, v in ref.state_dict().items()})
    assert network_opt == {'type': 'MPT', 'compat': 'authors', 'in_chans': 3}
    assert sum(t.numel() for t in state.values()) == 19_799_356
    MPT(compat='authors').load_state_dict(state, strict=True)


# --- the converter's errors, on an authors'-format file made from our own network (no oracle needed) ----------
def _authors_format(net: MPT) -> dict:
    """``net``'s (compat) state dict under the authors' names and shapes (the converter's inverse)."""
    out = {}
    for target, tensor in net.state_dict().items():
        names = authors_names(target)
        parts = (tensor,)
        if len(names) == 2:  # q (C) ; kv (2C)
            c = tensor.shape[0] // 3
            parts = (tensor[:c], tensor[c:])
        for name, part in zip(names, parts):
            if name.endswith(('attn.q.0.weight', 'attn.kv.0.weight', 'downproj.weight', 'project_in1.weight')):
                part = part[..., None, None]
            elif name.endswith('temperature.1'):
                part = part[:, None, None]
            out['module.Network.' + name] = part.clone()
    return out


@pytest.fixture(scope='module')
def authors_file(tmp_path_factory):
    torch.manual_seed(5)
    net = MPT(compat='authors', in_chans=1, dim=4)  # the paper's blocks and scales, narrow
    with torch.no_grad():
        for name, p in net.named_parameters():
            if name.endswith('cswa.temperature'):
                p.uniform_(-3, 3)
    path = tmp_path_factory.mktemp('authors_file') / 'authors_released.pth'
    torch.save(_authors_format(net), path)
    return path, net


def test_converter_round_trip_and_prefixes(authors_file):
    path, net = authors_file
    sd = torch.load(path, weights_only=True)
    for prefix in ('module.Network.', 'Network.', 'module.', ''):
        state, opt = convert_authors_state_dict({prefix + k[len('module.Network.'):]: v for k, v in sd.items()})
        assert opt['in_chans'] == 1 and opt['compat'] == 'authors' and opt['dim'] == 4
        assert state.keys() == net.state_dict().keys()
        assert all(torch.equal(state[k], v) for k, v in net.state_dict().items())


def _convert_file(tmp_path, sd, capsys):
    src = tmp_path / 'bad.pth'
    torch.save(sd, src)
    rc = load_script('convert_authors_checkpoint').main([str(src), str(tmp_path / 'out.pth')])
    return rc, capsys.readouterr().err


def test_converter_errors_name_the_keys(authors_file, tmp_path, capsys):
    sd = torch.load(authors_file[0], weights_only=True)
    gone = 'module.Network.decoder_level2.3.attn.kv.1.weight'
    rc, err = _convert_file(tmp_path, {k: v for k, v in sd.items() if k != gone}, capsys)
    assert rc == 2 and 'missing' in err and 'decoder_level2.3.attn.kv.1.weight' in err
    rc, err = _convert_file(tmp_path, {**sd, 'module.Network.latent.0.attn.extra': torch.zeros(1)}, capsys)
    assert rc == 2 and 'unexpected' in err and 'latent.0.attn.extra' in err
    wrong = dict(sd)
    wrong['module.Network.encoder_level2.1.ffn.project_in2.weight'] = torch.zeros(3, 8)
    rc, err = _convert_file(tmp_path, wrong, capsys)
    assert rc == 2 and 'encoder_level2.1.ffn.project_in2.weight' in err and 'fefn.spatial_in.weight' in err
    rc, err = _convert_file(tmp_path, {'params': MPT(dim=4, in_chans=1).state_dict()}, capsys)
    assert rc == 2 and "not an authors' MPT checkpoint" in err and 'conv_in.weight' in err
    with pytest.raises(AuthorsCheckpointError, match='scales'):
        convert_authors_state_dict(sd, [[0.5] * 6] * 4)  # scale pattern that does not fit the file


def test_mpt_deblur_takes_an_authors_file_without_options(authors_file, tmp_path, capsys):
    path, net = authors_file
    img = np.random.default_rng(0).integers(0, 65536, (70, 90), dtype=np.uint16)
    tifffile.imwrite(tmp_path / 'cell.tif', img)
    assert deblur.main(['-w', str(path), '-i', str(tmp_path / 'cell.tif'), '-o', str(tmp_path / 'out'),
                        '--tile', '0']) == 0
    assert "authors' MPT checkpoint, converted on load" in capsys.readouterr().out
    out = tifffile.imread(tmp_path / 'out' / 'cell.tif')
    with torch.no_grad():
        want = net.eval()(torch.from_numpy(img.astype(np.float32) / 65535)[None, None])[0, 0]
    want = np.round(np.clip(want.numpy(), 0, 1) * 65535).astype(np.uint16)
    assert out.shape == img.shape and out.dtype == np.uint16
    assert np.abs(out.astype(np.int64) - want).max() <= 1 and not np.array_equal(out, img)
    big = np.random.default_rng(1).integers(0, 256, (150, 200, 3), dtype=np.uint8)  # RGB: per channel, 4 tiles
    tifffile.imwrite(tmp_path / 'rgb.tif', big)
    assert deblur.main(['-w', str(path), '-i', str(tmp_path / 'rgb.tif'), '-o', str(tmp_path / 'tiled'),
                        '--tile', '128', '--overlap', '8', '--context', '8']) == 0
    tiled = tifffile.imread(tmp_path / 'tiled' / 'rgb.tif')
    assert tiled.shape == big.shape and tiled.dtype == np.uint8 and not np.array_equal(tiled, big)


@needs_oracle
@pytest.mark.parametrize('ratio,shifted', [(2, True), (4, False), (4, True), (1, True)])
def test_cswa_layer_matches_the_authors_with_large_signed_temperatures(ratio, shifted):
    """One CSWA layer against the authors' ``Attention`` (its CSWA output), batch 2, a non-square map, temperatures
    of +-150: a clamped (<= 100) or positive (exp of a log) parametrisation cannot hold them."""
    import importlib.util
    spec = importlib.util.spec_from_file_location('authors_mpt_oracle_layer', ORACLE_DIR / 'MPT.py')
    oracle = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(oracle)
    from mpt_arch.authors_compat import AuthorsCSWA
    from mpt_arch.inference.cswa_regions import cswa_regions

    dim, heads, size = 8, 2, 64
    ref = oracle.Attention(dim, heads, False, [1, 1 / ratio], size, shifted).eval()
    _fixture_tools().randomise(ref, ratio)
    with torch.no_grad():
        ref.temperature[1].copy_(torch.tensor([150.0, -150.0]).view(2, 1, 1))
    ours = AuthorsCSWA(dim, heads, 1 / ratio, 8, shifted).eval()
    state = {'q.weight': ref.q[1].weight, 'q_dw.weight': ref.q_dwconv[1].weight, 'kv.weight': ref.kv[1].weight,
             'kv_dw.weight': ref.kv_dwconv[1].weight, 'proj.weight': ref.project_out[1].weight,
             'rpb_table': ref.relative_position_bias_table, 'temperature': ref.temperature[1].view(-1)}
    if ratio > 1:
        state['down_proj.weight'] = ref.downsamp.downproj.weight.view(dim, dim)
    ours.load_state_dict(state, strict=True)
    x = torch.randn(2, dim, size, size // 2)
    with torch.no_grad():
        want = ref(x)[1].permute(0, 2, 3, 1)
        fast = cswa_regions(ours, x.permute(0, 2, 3, 1).contiguous())
    slow = ours(x.permute(0, 2, 3, 1).contiguous()).detach()
    assert _relative_error(fast, want) < 1e-4 and _relative_error(slow, want) < 1e-4


@pytest.mark.parametrize('experiment', ['BBBC006_w1', 'BBBC006_w2', '3DHistech', 'CaDISBlur', 'DPDD'])
def test_authors_option_files(experiment):
    """``test_MPT_authors_<set>.yml``: the data of ``test_MPT_<set>.yml``, ``compat: authors``, a strict load."""
    import yaml

    from mpt_deploy.authors_checkpoint import expected_state_dict

    opt = yaml.safe_load((REPO / 'options' / f'test_MPT_authors_{experiment}.yml').read_text())
    plain = yaml.safe_load((REPO / 'options' / f'test_MPT_{experiment}.yml').read_text())
    assert opt['datasets'] == plain['datasets'] and opt['val'] == plain['val']
    assert opt['network_g'] == {**plain['network_g'], 'compat': 'authors'}
    assert opt['path']['strict_load_g'] is True and opt['path']['param_key_g'] == 'params'
    assert opt['path']['pretrain_network_g'].endswith('.pth')
    shapes = expected_state_dict(opt['network_g'])
    in_out_convs = 2 * 40 * 9 * (3 - opt['network_g']['in_chans'])  # conv_in + conv_out are narrower for gray
    assert sum(s.numel() for s in shapes.values()) == 19_799_356 - in_out_convs


def test_benchmark_prints_ratios_to_the_authors_row(tmp_path):
    bench = load_script('benchmark')
    rows = [{'model': 'mpt', 'kind': 'forward', 'size': '1x3x256x256', 'params': 10, 'gflops': 50.0, 'seconds': 1.0,
             'cpu_seconds': 2.0, 'peak_mb': 300.0},
            {'model': 'authors', 'kind': 'forward', 'size': '1x3x256x256', 'params': 10, 'gflops': 100.0,
             'seconds': 4.0, 'cpu_seconds': 8.0, 'peak_mb': 100.0}]
    lines = bench.authors_ratios(rows)
    assert len(lines) == 3 and lines[2] == '| mpt | forward | 1x3x256x256 | 1.00x | 0.50x | 0.25x | 0.25x | 3.00x |'
    clone = tmp_path / 'MPT-CataBlur'
    (clone / 'models').mkdir(parents=True)
    (clone / 'models' / 'MPT.py').write_text('')
    assert bench.authors_mpt_file(str(clone)) == str(clone / 'models' / 'MPT.py')
    assert bench.authors_mpt_file(str(clone / 'models')) == str(clone / 'models' / 'MPT.py')
    with pytest.raises(FileNotFoundError):
        bench.authors_mpt_file(str(tmp_path))
