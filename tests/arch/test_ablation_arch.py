"""Ablation variants of MPT (Tables 3, 4, 9): each builds, keeps the shape, and really changes the computation."""

import pytest
import torch
import torch.nn.functional as F

from mpt_arch import MPT
from mpt_arch.ablation import DownsampleVariant, FFNVariant
from mpt_arch.cswa import CrossScaleWindowAttention
from mpt_arch.fefn import FeatureEnhancingFFN
from mpt_arch.isca import IntraScaleChannelAttention

TINY = dict(in_chans=1, dim=8, num_blocks=(2, 2, 2, 2), heads=(1, 1, 2, 2),
            scales=((0.5, 1), (0.25, 1), (0.5, 1), (1, 1)), window_size=4)
VARIANTS = [
    dict(attention='cswa+cswa'), dict(attention='wa+wa'), dict(attention='isca+isca'), dict(attention='wa+isca'),
    dict(ffn='cat_gelu'), dict(ffn='add_gelu'), dict(ffn='reversed'),
    dict(downsample='no_shortcut'), dict(downsample='no_linear'), dict(downsample='maxpool'),
    dict(downsample='conv'), dict(downsample='conv_full'), dict(downsample='bicubic'),
    dict(npconv=False), dict(shift_windows=False),
]


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


@pytest.fixture(scope='module')
def default_and_input():
    torch.manual_seed(0)
    model = MPT(**TINY).eval()
    x = torch.rand(1, 1, 19, 23)  # odd size: padding, border masks and ceil-mode pooling all exercised
    with torch.no_grad():
        y = model(x)
    return model, x, y


def _with_default_params(variant: torch.nn.Module, default: torch.nn.Module) -> int:
    """Copy every parameter whose name and shape match from ``default``; returns how many were not copied."""
    src = default.state_dict()
    state = variant.state_dict()
    left = 0
    for name, value in state.items():
        if name in src and src[name].shape == value.shape:
            state[name] = src[name]
        else:
            left += 1
    variant.load_state_dict(state)
    return left


def _modules(model, cls):
    return [m for m in model.modules() if isinstance(m, cls)]


@pytest.mark.parametrize('kw', VARIANTS, ids=lambda kw: '-'.join(f'{k}={v}' for k, v in kw.items()))
def test_variant_builds_keeps_shape_and_changes_output(kw, default_and_input):
    default, x, y_default = default_and_input
    torch.manual_seed(0)
    model = MPT(**TINY, **kw).eval()
    _with_default_params(model, default)
    with torch.no_grad():
        y = model(x)
    assert y.shape == x.shape
    assert torch.isfinite(y).all()
    assert not torch.allclose(y, y_default, atol=1e-6), f'{kw} computes the same as the default'


def test_variant_trains(default_and_input):
    model = MPT(**TINY, downsample='bicubic', ffn='cat_gelu', npconv=False)
    model(torch.rand(1, 1, 19, 23)).square().mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def _sub_blocks(model):
    return [b for blocks in (*model.encoders, model.latent, *model.decoders) for b in blocks.blocks]


@pytest.mark.parametrize('attention, names, classes', [
    ('cswa+isca', ('cswa', 'isca'), (CrossScaleWindowAttention, IntraScaleChannelAttention)),
    ('cswa+cswa', ('cswa', 'cswa2'), (CrossScaleWindowAttention, CrossScaleWindowAttention)),
    ('wa+wa', ('cswa', 'cswa2'), (CrossScaleWindowAttention, CrossScaleWindowAttention)),
    ('isca+isca', ('isca', 'isca2'), (IntraScaleChannelAttention, IntraScaleChannelAttention)),
    ('wa+isca', ('cswa', 'isca'), (CrossScaleWindowAttention, IntraScaleChannelAttention)),
])
def test_attention_pairs_structure(attention, names, classes):
    model = MPT(**TINY, attention=attention)
    for sub, scale in zip(_sub_blocks(model), [s for lvl in (0, 1, 2, 3, 2, 1, 0) for s in TINY['scales'][lvl]]):
        assert sub.branches == names
        for name, cls in zip(names, classes):
            module = getattr(sub, name)
            assert isinstance(module, cls)
            if cls is CrossScaleWindowAttention:
                assert module.ratio == (1 if attention.startswith('wa') else round(1 / scale))
    if attention.startswith('wa'):
        assert all(m.down_proj is None for m in _modules(model, CrossScaleWindowAttention))


def test_ffn_variants_structure():
    assert not _modules(MPT(**TINY), FFNVariant)
    for ffn in ('cat_gelu', 'add_gelu', 'reversed'):
        model = MPT(**TINY, ffn=ffn)
        ffns = _modules(model, FeatureEnhancingFFN)
        assert ffns and all(isinstance(f, FFNVariant) and f.variant == ffn for f in ffns)
    f = FFNVariant(8, 2.0, 'cat_gelu')
    assert f.proj.in_features == 32


def test_ffn_variant_formulas():
    torch.manual_seed(1)
    x1, x2 = torch.randn(2, 5, 7, 8), torch.randn(2, 5, 7, 8)
    for variant in ('cat_gelu', 'add_gelu', 'reversed'):
        f = FFNVariant(8, 2.0, variant)
        a = f.spatial_in(f.norm_spatial(x1))
        b = f.channel_dw(f.channel_in(f.norm_channel(x2)).permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        hidden = {'cat_gelu': F.gelu(torch.cat([a, b], -1)), 'add_gelu': F.gelu(a + b),
                  'reversed': F.gelu(a) * b}[variant]
        torch.testing.assert_close(f(x1, x2), f.proj(hidden) + x1)


def test_downsample_structure():
    def cswas(**kw):
        return [m for m in _modules(MPT(**TINY, **kw), CrossScaleWindowAttention) if m.ratio > 1]

    assert all(m.down is None and m.down_proj is not None for m in cswas())
    assert all(m.down_proj is None and m.down.variant == 'no_linear' for m in cswas(downsample='no_linear'))
    for variant in ('no_shortcut', 'maxpool', 'bicubic'):
        assert all(m.down_proj is not None and m.down.conv is None for m in cswas(downsample=variant))
    dw = cswas(downsample='conv')
    assert all(m.down.conv.groups == m.dim and m.down.conv.stride == (m.ratio, m.ratio) for m in dw)
    assert all(m.down.conv.groups == 1 for m in cswas(downsample='conv_full'))
    assert all(m.q_dw is None and m.kv_dw is None for m in cswas(npconv=False))
    assert all(not m.shifted for m in _modules(MPT(**TINY, shift_windows=False), CrossScaleWindowAttention))
    assert any(m.shifted for m in _modules(MPT(**TINY), CrossScaleWindowAttention))


@pytest.mark.parametrize('variant', ['no_shortcut', 'no_linear', 'maxpool', 'conv', 'conv_full', 'bicubic'])
@pytest.mark.parametrize('size', [(16, 16), (13, 21)])
def test_downsample_map_size_and_operation(variant, size):
    """Every variant gives the ceil(H/r) x ceil(W/r) map of the ceil-mode average pooling, with its own op."""
    torch.manual_seed(2)
    r, c = 4, 6
    x = torch.randn(2, *size, c)
    proj = torch.nn.Linear(c, c, bias=False)
    down = DownsampleVariant(variant, c, r)
    y = down(x, proj)
    avg = F.avg_pool2d(x.permute(0, 3, 1, 2), r, r, ceil_mode=True).permute(0, 2, 3, 1)
    assert y.shape == avg.shape == (2, -(-size[0] // r), -(-size[1] // r), c)
    expected = {'no_shortcut': proj(avg), 'no_linear': avg}
    if variant == 'maxpool':
        mx = F.max_pool2d(x.permute(0, 3, 1, 2), r, r, ceil_mode=True).permute(0, 2, 3, 1)
        expected['maxpool'] = mx + proj(mx)
    if variant in expected:
        torch.testing.assert_close(y, expected[variant])
    else:
        assert not torch.allclose(y, avg + proj(avg), atol=1e-4)


def test_sixteenth_scale_at_window_8():
    """Table 10 V2 uses 1/16 at level 1: 128-px regions; sizes around a region boundary keep their shape."""
    model = MPT(in_chans=1, dim=8, num_blocks=(2, 1), heads=(1, 1), scales=((1 / 16, 1 / 16), (1,)), window_size=8)
    cswa = model.encoders[0].blocks[1].cswa
    assert cswa.ratio == 16 and cswa.shifted
    with torch.no_grad():
        for shape in ((1, 1, 130, 70), (1, 1, 128, 128)):
            y = model(torch.rand(shape))
            assert y.shape == shape and torch.isfinite(y).all()


@pytest.mark.parametrize('kw, message', [
    (dict(attention='cswa+wa'), "'cswa+isca', 'cswa+cswa', 'wa+wa', 'isca+isca', 'wa+isca'"),
    (dict(ffn='gelu'), "'fefn', 'cat_gelu', 'add_gelu', 'reversed'"),
    (dict(downsample='avg'), "'avgpool', 'no_shortcut', 'no_linear', 'maxpool', 'conv', 'conv_full', 'bicubic'"),
    (dict(npconv='no'), 'npconv must be true or false'),
    (dict(shift_windows=0), 'shift_windows must be true or false'),
])
def test_bad_keywords_list_allowed_values(kw, message):
    with pytest.raises(ValueError) as err:
        MPT(**TINY, **kw)
    assert message in str(err.value)
    assert repr(next(iter(kw.values()))) in str(err.value)


def test_default_path_unchanged():
    """The paper configuration keeps its parameterization; the default builds no ablation module."""
    model = MPT()
    assert sum(p.numel() for p in model.parameters()) == 19_799_356
    assert not _modules(model, FFNVariant) and not _modules(model, DownsampleVariant)
    explicit = MPT(attention='cswa+isca', ffn='fefn', downsample='avgpool', npconv=True, shift_windows=True)
    assert [(n, p.shape) for n, p in explicit.named_parameters()] == [(n, p.shape) for n, p in model.named_parameters()]


class _ScaledInput(torch.nn.Module):
    """A made-up attention branch: ``x + w * y`` (what a user adds for a new ablation)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.full((dim,), 0.5))  # channels-last maps

    def forward(self, y, residual):
        return residual + self.weight * y


def test_a_new_branch_kind_is_one_builder_and_one_pair(monkeypatch):
    """docs/developer/extending.md: an attention variant needs its module, a BRANCH_BUILDERS entry and a pair."""
    from mpt_arch import ablation, pyramid_block

    monkeypatch.setitem(pyramid_block.BRANCH_BUILDERS, 'scaled', lambda dim, heads, *a, **k: _ScaledInput(dim))
    monkeypatch.setitem(ablation.ATTENTION_PAIRS, 'scaled+isca', ('scaled', 'isca'))
    block = pyramid_block.PyramidSubBlock(8, 2, 0.5, 4, False, 2.0, attention='scaled+isca')
    assert block.branches == ('scaled', 'isca') and isinstance(block.scaled, _ScaledInput)
    x = torch.rand(1, 12, 12, 8)  # (B, H, W, C)
    y = block.norm(x)
    expected = block.fefn(x + 0.5 * y, block.isca(y, residual=x))
    torch.testing.assert_close(block(x), expected)
    model = MPT(**TINY, attention='scaled+isca').eval()
    assert any(name.endswith('.scaled.weight') for name, _ in model.named_parameters())
    with torch.no_grad():
        assert model(torch.rand(1, 1, 19, 23)).shape == (1, 1, 19, 23)
