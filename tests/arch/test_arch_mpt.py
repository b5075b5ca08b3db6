"""MPT network: parameter count, any-size input, gradients, registry, argument validation."""

import pytest
import torch

from helpers import REPO
from mpt_arch import MPT

TINY = dict(dim=8, num_blocks=(2, 2, 2, 2), heads=(1, 1, 2, 2), scales=((0.5, 1), (0.5, 1), (0.5, 1), (1, 1)),
            window_size=4)


def test_paper_config_parameter_count():
    n = sum(p.numel() for p in MPT().parameters())
    assert abs(n - 19.80e6) / 19.80e6 < 0.005
    assert n == 19_799_356  # the authors' models/MPT.py (PieceZhang/MPT-CataBlur@6b06096)


def test_paper_config_forward_256():
    model = MPT().eval()
    x = torch.rand(1, 3, 256, 256)
    with torch.inference_mode():
        y = model(x)
    assert y.shape == x.shape
    assert torch.isfinite(y).all()


@pytest.mark.parametrize('shape', [(1, 1, 520, 696), (1, 3, 257, 263), (2, 3, 5, 3)])
def test_any_size_returns_input_shape(shape):
    model = MPT(in_chans=shape[1], **TINY).eval()
    x = torch.rand(shape)
    with torch.inference_mode():
        y = model(x)
    assert y.shape == x.shape
    assert torch.isfinite(y).all()


def test_out_chans_differs():
    model = MPT(in_chans=1, out_chans=3, **TINY)
    assert model(torch.rand(1, 1, 24, 40)).shape == (1, 3, 24, 40)


def test_gradients_reach_every_parameter():
    model = MPT(in_chans=3, **TINY)
    x = torch.rand(2, 3, 40, 36)
    model(x).square().mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing
    zero = [n for n, p in model.named_parameters() if p.grad.abs().sum() == 0]
    assert not zero


def test_bfloat16_autocast_trains_and_infers():
    """Under autocast the layers take PyTorch's generic autograd and whole-map paths: a training step gives float32
    gradients close to the float32 ones, and inference stays close to float32 inference."""
    torch.manual_seed(0)
    model = MPT(in_chans=3, **TINY)
    x = torch.rand(2, 3, 30, 34)
    model(x).square().mean().backward()
    ref_grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    with torch.autocast('cpu', dtype=torch.bfloat16):
        loss = model(x).float().square().mean()
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad.dtype == torch.float32 and torch.isfinite(p.grad).all(), name
    got, want = torch.cat([p.grad.flatten() for p in model.parameters()]), torch.cat([g.flatten() for g in ref_grads])
    assert (got - want).norm() <= 0.1 * want.norm()
    model.eval()
    with torch.no_grad():
        ref = model(x)
        with torch.autocast('cpu', dtype=torch.bfloat16):
            out = model(x)
    assert out.shape == ref.shape
    assert (out.float() - ref).abs().max() < 0.05


def test_registered_and_buildable_from_opt():
    from basicsr.archs import build_network
    from basicsr.utils.registry import ARCH_REGISTRY

    assert ARCH_REGISTRY.get('MPT') is MPT
    net = build_network({'type': 'MPT', 'in_chans': 1, **{k: list(v) if isinstance(v, tuple) else v
                                                          for k, v in TINY.items()}})
    assert isinstance(net, MPT)
    assert net(torch.rand(1, 1, 16, 16)).shape == (1, 1, 16, 16)


def test_wrong_input_channels_raise():
    with pytest.raises(ValueError, match='expects'):
        MPT(in_chans=1, **TINY)(torch.rand(1, 3, 16, 16))


def test_folder_is_self_contained_for_drop_in():
    """Only relative imports of our own code, and only mpt_arch.py touches BasicSR (drop-in into archs/)."""
    import ast

    folder = REPO / 'mpt_arch'
    allowed = {'torch', 'einops', 'math', 'typing', 'dataclasses', 'contextlib', 'contextvars', '__future__'}
    if folder.parent.name == 'mutants':  # a mutation run's copy (tools/mutation_test.py): mutmut's trampolines
        allowed.add('mutmut')
    paths = sorted(folder.rglob('*.py'))
    assert any(p.parent.name == 'inference' for p in paths)  # the subpackage is checked too
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            for name in names:
                root = name.split('.')[0]
                if root == 'basicsr':
                    assert path.name == 'mpt_arch.py', path
                elif root == 'mpt_common':  # the optional BasicSR 1.4.2 import shim
                    assert path.name == '__init__.py', path
                else:
                    assert root in allowed, f'{path.name} imports {name}'


def _unet(model, x):
    """Fig. 2 written out: pad (reflect, replicate where the pad exceeds the size), Conv3x3 in, encoder blocks with
    Conv3x3(C->C/2)+PixelUnshuffle downs, latent, PixelShuffle ups added to the skips, decoders, Conv3x3 out,
    crop, global residual."""
    import torch.nn.functional as F

    h, w = x.shape[-2:]
    m = model.pad_multiple
    ph, pw = -h % m, -w % m
    padded = F.pad(x, (0, pw, 0, ph), mode='reflect' if ph < h and pw < w else 'replicate') if ph or pw else x
    nhwc = lambda t: t.permute(0, 2, 3, 1)  # noqa: E731
    nchw = lambda t: t.permute(0, 3, 1, 2)  # noqa: E731
    feat, skips = nhwc(model.conv_in(padded)), []
    for lvl in range(model.levels - 1):
        feat = model.encoders[lvl](feat)
        skips.append(feat)
        down = model.downs[lvl].body
        feat = nhwc(F.pixel_unshuffle(down[0](nchw(feat)), 2))
    feat = model.latent(feat)
    for lvl in reversed(range(model.levels - 1)):
        feat = model.decoders[lvl](nhwc(F.pixel_shuffle(model.ups[lvl].body[0](nchw(feat)), 2)) + skips[lvl])
    out = model.conv_out(nchw(feat))[..., :h, :w]
    return out + x if model.out_chans == model.in_chans else out


@pytest.mark.parametrize('shape, out_chans', [((2, 1, 13, 22), None), ((1, 3, 5, 3), None), ((1, 1, 16, 24), 2),
                                              ((1, 1, 4, 13), None), ((1, 1, 13, 4), None)])
def test_forward_is_the_unet_of_fig2(shape, out_chans):
    """Training and inference against the U-Net written out, with reflect or replicate padding and without."""
    torch.manual_seed(0)
    model = MPT(in_chans=shape[1], out_chans=out_chans, **TINY)
    assert [b.dim for b in (model.encoders[0].blocks[0].cswa, model.latent.blocks[0].cswa)] == [8, 64]
    x = torch.rand(shape)
    ref = _unet(model, x)
    torch.testing.assert_close(model(x), ref, rtol=1e-4, atol=1e-5)
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(x), ref.detach(), rtol=1e-4, atol=1e-5)


def test_inference_adds_the_skips_in_place():
    """Without autograd the decoder input is the up-sampled map itself, the skip added into it (no new map)."""
    model = MPT(in_chans=1, **TINY).eval()
    ups, decoder_inputs = [], []
    for up, dec in zip(model.ups, model.decoders):
        up.register_forward_hook(lambda module, args, output: ups.append(output.data_ptr()))
        dec.register_forward_pre_hook(lambda module, args: decoder_inputs.append(args[0].data_ptr()))
    with torch.no_grad():
        model(torch.rand(1, 1, 16, 16))
    assert len(ups) == 3 and decoder_inputs == ups


@pytest.mark.parametrize('kwargs, message', [
    (dict(attention='cswa'), "MPT attention must be one of 'cswa+isca', 'cswa+cswa', 'wa+wa', 'isca+isca', "
     "'wa+isca'; got 'cswa'"),
    (dict(ffn='mlp'), "MPT ffn must be one of 'fefn', 'cat_gelu', 'add_gelu', 'reversed'; got 'mlp'"),
    (dict(downsample='none'), "MPT downsample must be one of 'avgpool', 'no_shortcut', 'no_linear', 'maxpool', "
     "'conv', 'conv_full', 'bicubic'; got 'none'"),
    (dict(npconv=1), 'MPT npconv must be true or false, got 1'),
    (dict(shift_windows='no'), "MPT shift_windows must be true or false, got 'no'"),
    (dict(compat='theirs'), "MPT compat must be None (the paper's network) or 'authors', got 'theirs'"),
    (dict(compat='authors', npconv=False), "MPT compat='authors' exists for the paper's variant only "
     "(attention='cswa+isca', ffn='fefn', downsample='avgpool', npconv=True)"),
    (dict(in_chans=0), 'MPT in_chans must be a positive int, got 0'),
    (dict(out_chans=2.0), 'MPT out_chans must be a positive int, got 2.0'),
    (dict(dim=-8), 'MPT dim must be a positive int, got -8'),
    (dict(num_blocks=(), heads=(), scales=()), 'MPT num_blocks must be a non-empty list of positive ints, got []'),
    (dict(num_blocks=(2, 0, 2, 2)), 'MPT num_blocks must be a non-empty list of positive ints, got [2, 0, 2, 2]'),
    (dict(heads=(1, 1, 2)), 'MPT heads [1, 1, 2] must have one entry per level (4 levels)'),
    (dict(scales=((0.5, 1),) * 3), 'MPT scales must have one list per level (4 levels), got 3'),
    (dict(scales=((0.3, 1), (0.5, 1), (0.5, 1), (1, 1))), 'CSWA scale must be 1/2^k (1, 1/2, 1/4, 1/8, ...), got 0.3'),
    (dict(scales=((0.5,), (0.5, 1), (0.5, 1), (1, 1))), 'MPT scales[0] = [0.5] must have num_blocks[0] = 2 entries'),
    (dict(heads=(1, 3, 2, 2)), 'MPT level 2: dim 16 is not divisible by heads 3'),
    (dict(heads=(1, 1, 2, 3)), 'MPT level 4: dim 64 is not divisible by heads 3'),
    (dict(dim=7, num_blocks=(1, 1), heads=(1, 1), scales=((1,), (1,))),
     'MPT dim must be even for the Conv3x3(C->C/2) down-sampling, got 7'),
    (dict(window_size=5), 'MPT window_size must be an even int >= 2, got 5'),
    (dict(window_size=0), 'MPT window_size must be an even int >= 2, got 0'),
    (dict(dim=7, heads=(1, 1, 1, 1)), 'MPT dim must be even for the Conv3x3(C->C/2) down-sampling, got 7'),
])
def test_argument_errors_name_the_value(kwargs, message):
    with pytest.raises(ValueError) as err:
        MPT(**{**TINY, **kwargs})
    assert str(err.value) == message


def test_one_level_and_paper_defaults():
    """A single level has no down/up-sampling (odd dim allowed); the defaults are the paper's configuration."""
    one = MPT(in_chans=1, dim=5, num_blocks=(1,), heads=(1,), scales=((1,),), window_size=2)
    assert (len(one.encoders), len(one.downs), one.pad_multiple) == (0, 0, 1)
    assert one(torch.rand(1, 1, 7, 9)).shape == (1, 1, 7, 9)
    paper = MPT()
    assert (paper.in_chans, paper.out_chans, paper.levels, paper.compat, paper.pad_multiple) == (3, 3, 4, None, 8)
    assert [len(b.blocks) for b in (*paper.encoders, paper.latent)] == [6, 6, 6, 6]
    assert [b.blocks[0].cswa.heads for b in (*paper.encoders, paper.latent)] == [1, 2, 4, 8]
    assert [b.blocks[0].cswa.dim for b in (*paper.encoders, paper.latent)] == [40, 80, 160, 320]
    assert [[s.cswa.ratio for s in b.blocks] for b in (*paper.encoders, paper.latent)] == [
        [8, 8, 4, 4, 1, 1], [4, 4, 2, 2, 1, 1], [2, 2, 2, 2, 1, 1], [2, 2, 2, 2, 1, 1]]
    assert paper.encoders[0].blocks[0].cswa.window_size == 8 and paper.encoders[0].blocks[0].fefn.spatial_in.\
        out_features == int(40 * 2.6)
