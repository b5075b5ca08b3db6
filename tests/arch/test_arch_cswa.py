"""CSWA: cross-scale pairing (also on padded sizes), region layout, locality, shift regions, explicit path == SDPA
path, gather backward."""

import math

import pytest
import torch

import mpt_arch.cswa as cswa_module
import mpt_arch.inference.strips as row_strips
from mpt_arch.authors_compat import AuthorsCSWA
from mpt_arch.cswa import CrossScaleWindowAttention, scale_ratio
from mpt_arch.inference.cswa_regions import cswa_regions
from mpt_arch.region_geometry import build_region_layout

M = 4


def _module(scale, shifted, dim=8, heads=2):
    mod = CrossScaleWindowAttention(dim, heads, scale, M, shifted).eval()
    with torch.no_grad():
        mod.rpb_table.normal_(0, 1)
    return mod


def _wrapped(length: int, shift: int) -> torch.Tensor:
    """Whether each position of an axis rolled left by ``shift`` came from the start (wrapped around the seam)."""
    return torch.arange(length) + shift >= length


def _naive_cswa(mod, x):
    """Window-by-window reference with explicit zero padding and rolls (Sec. 3.1, Swin-style shifted windows).

    Both maps are zero-padded to whole regions / windows, rolled left and up by R/2 and M/2 when shifted, and cut
    into regions: query window (i, j) attends to key window (i // r, j // r) of the down-scaled map (ceil-mode
    pooling) with the M^2 x M^2 relative position bias. A query may not attend to a key that is padding, nor to one
    on the other side of the seam: one of them wrapped around along an axis and the other did not. The output is
    rolled back and cropped."""
    r, heads, m = mod.ratio, mod.heads, M
    b, h, w, c = x.shape
    d = c // heads
    q = mod._dwconv(mod.q(x), mod.q_dw)
    y = torch.nn.functional.avg_pool2d(x.permute(0, 3, 1, 2), r, ceil_mode=True).permute(0, 2, 3, 1) if r > 1 else x
    if r > 1:
        y = y + mod.down_proj(y)
    k, v = mod._dwconv(mod.kv(y), mod.kv_dw).split(c, -1)
    hk, wk = y.shape[1:3]
    hkp, wkp = -(-hk // m) * m, -(-wk // m) * m
    hp, wp = hkp * r, wkp * r
    sk = m // 2 if mod.shifted else 0
    sq = sk * r
    pad = torch.nn.functional.pad
    q = pad(q, (0, 0, 0, wp - w, 0, hp - h)).roll((-sq, -sq), (1, 2))
    k = pad(k, (0, 0, 0, wkp - wk, 0, hkp - hk)).roll((-sk, -sk), (1, 2))
    v = pad(v, (0, 0, 0, wkp - wk, 0, hkp - hk)).roll((-sk, -sk), (1, 2))
    key_real = pad(torch.ones(hk, wk, dtype=torch.bool), (0, wkp - wk, 0, hkp - hk)).roll((-sk, -sk), (0, 1))
    wq_y, wq_x, wk_y, wk_x = _wrapped(hp, sq), _wrapped(wp, sq), _wrapped(hkp, sk), _wrapped(wkp, sk)
    temp = mod.logit_scale.clamp(max=torch.log(torch.tensor(100.0))).exp()
    bias = mod.position_bias()  # heads, M^2, M^2
    out = torch.zeros_like(q)
    for i in range(hp // m):
        for j in range(wp // m):
            ys, xs = slice(i * m, (i + 1) * m), slice(j * m, (j + 1) * m)
            kys, kxs = slice(i // r * m, (i // r + 1) * m), slice(j // r * m, (j // r + 1) * m)
            allowed = (key_real[kys, kxs][None, None]
                       & (wq_y[ys][:, None, None, None] == wk_y[kys][None, None, :, None])
                       & (wq_x[xs][None, :, None, None] == wk_x[kxs][None, None, None, :])).reshape(m * m, m * m)
            qt = torch.nn.functional.normalize(q[:, ys, xs].reshape(b, -1, heads, d).transpose(1, 2), dim=-1)
            kt = torch.nn.functional.normalize(k[:, kys, kxs].reshape(b, -1, heads, d).transpose(1, 2), dim=-1)
            vt = v[:, kys, kxs].reshape(b, -1, heads, d).transpose(1, 2)
            logits = qt * temp.view(1, heads, 1, 1) @ kt.transpose(-2, -1) + bias
            att = logits.masked_fill(~allowed, -1.0e9).softmax(-1)
            out[:, ys, xs] = (att @ vt).transpose(1, 2).reshape(b, m, m, c)
    return mod.proj(out.roll((sq, sq), (1, 2))[:, :h, :w])


@pytest.mark.parametrize('scale', [1, 0.5, 0.25])
@pytest.mark.parametrize('shifted', [False, True])
@pytest.mark.parametrize('size', [(32, 48), (37, 45), (21, 30)])
def test_one_to_many_pairing_matches_window_loop(monkeypatch, scale, shifted, size):
    """Inference (whole map, and one region group at a time) and training paths against the window loop, unshifted
    and shifted, on whole regions and on sizes that need padding; training gradients (input, residual and every
    parameter, the bias table included) too."""
    mod = _module(scale, shifted)
    x = torch.randn(2, *size, 8, requires_grad=True)
    res = torch.randn(2, *size, 8, requires_grad=True)
    ref = _naive_cswa(mod, x) + res
    with torch.no_grad():
        torch.testing.assert_close(mod(x, residual=res), ref, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(cswa_regions(mod, x, res), ref, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(cswa_regions(mod, x), ref - res, rtol=1e-4, atol=1e-5)
        monkeypatch.setattr(row_strips, 'STRIP_BYTES', 1)
        torch.testing.assert_close(cswa_regions(mod, x, res), ref, rtol=1e-4, atol=1e-5)
        monkeypatch.undo()
    out = mod(x, residual=res)
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)
    g = torch.randn_like(out)
    inputs = [x, res, *mod.parameters()]
    for got, want in zip(torch.autograd.grad(out, inputs, g), torch.autograd.grad(ref, inputs, g)):
        torch.testing.assert_close(got, want, rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize('scale', [1, 0.5, 0.25])
@pytest.mark.parametrize('shifted', [False, True])
@pytest.mark.parametrize('size', [(32, 48), (37, 45), (130, 70)])
def test_layout_gathers_every_pixel_once(scale, shifted, size):
    """Every real query pixel and every real key (down-scaled pixel) fills exactly one slot; the inverse indices
    undo the gathers; padded keys are masked for every query of their region."""
    r = scale_ratio(scale)
    h, w = size
    hk, wk = -(-h // r), -(-w // r)
    lay = build_region_layout(h, w, r, M, shifted)
    valid_q = lay.query_valid.flatten()
    assert torch.equal(lay.q_src[valid_q].sort().values, torch.arange(h * w))
    assert torch.equal(lay.q_src[lay.q_inv], torch.arange(h * w))
    assert torch.equal(lay.k_src[lay.k_inv], torch.arange(hk * wk))
    assert torch.equal(lay.k_inv.sort().values.unique(), lay.k_inv.sort().values)  # one slot per key
    pad_k = torch.ones(lay.k_src.numel(), dtype=torch.bool)
    pad_k[lay.k_inv] = False
    pad_k = pad_k.view(lay.n_regions, M * M)
    plain = lay.n_regions - lay.n_border
    assert not pad_k[:plain].any()
    if lay.n_border:
        masked = (lay.border_mask[:, 0] < 0).all(1)  # (nBorder, Lk): key masked for every query
        assert (masked | ~pad_k[plain:]).all()
    assert (lay.q_pad is None) == bool(valid_q.all())
    if lay.q_pad is not None:
        assert torch.equal(lay.q_pad, torch.nonzero(~valid_q)[:, 0])


@pytest.mark.parametrize('scale', [1, 0.5, 0.25])
@pytest.mark.parametrize('shifted', [False, True])
@pytest.mark.parametrize('size', [(32, 48), (37, 45)])
def test_gather_backward_equals_index_select_autograd(monkeypatch, scale, shifted, size):
    """token_gather's inverse-gather backward gives the gradients autograd gives through plain index_select."""
    mod = _module(scale, shifted)
    x = torch.randn(2, *size, 8, requires_grad=True)
    res = torch.randn(2, *size, 8, requires_grad=True)
    g = torch.randn(2, *size, 8)

    def grads():
        mod.zero_grad()
        x.grad = res.grad = None
        mod(x, residual=res).backward(g)
        return [x.grad.clone(), res.grad.clone()] + [p.grad.clone() for p in mod.parameters()]

    fast = grads()
    monkeypatch.setattr(cswa_module, 'gather_tokens', lambda src, index, *_: src.index_select(1, index))
    slow = grads()
    for a, b in zip(fast, slow):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize('scale', [1, 0.5, 0.25])
@pytest.mark.parametrize('shifted', [False, True])
@pytest.mark.parametrize('size', [(32, 48), (37, 45)])
@pytest.mark.parametrize('budget', [None, 1])
def test_explicit_path_equals_sdpa_path(monkeypatch, scale, shifted, size, budget):
    """Explicit attention against inference (row strips, region groups: one region each with budget 1)."""
    if budget is not None:
        monkeypatch.setattr(row_strips, 'STRIP_BYTES', budget)
    mod = _module(scale, shifted)
    x = torch.randn(2, *size, 8)
    with torch.no_grad():
        fast = cswa_regions(mod, x)
        mod.keep_attention = True
        slow = mod(x)
    torch.testing.assert_close(slow, fast, rtol=1e-4, atol=1e-5)
    attn = mod.last_attention
    n_regions = mod.last_query_xy.shape[0]
    assert attn.shape == (2, n_regions, 2, (mod.ratio * M) ** 2, M * M)
    torch.testing.assert_close(attn.sum(-1), torch.ones_like(attn.sum(-1)))
    assert mod.last_map_size == size
    valid = mod.last_query_valid  # the real (not padding) queries: every pixel of the map once
    assert valid.shape == mod.last_query_xy.shape[:2] and int(valid.sum()) == size[0] * size[1]
    real = {tuple(xy) for xy in mod.last_query_xy[valid].tolist()}
    assert real == {(x, y) for x in range(size[1]) for y in range(size[0])}


@pytest.mark.parametrize('scale', [0.5, 0.25])
def test_key_geometry_is_one_to_many(scale):
    """Every query window (i, j) sees exactly the keys of down-scaled window (i // r, j // r)."""
    mod = _module(scale, False)
    r = mod.ratio
    mod.keep_attention = True
    with torch.no_grad():
        mod(torch.randn(1, 64, 64, 8))
    qxy, kxy = mod.last_query_xy, mod.last_key_xy  # (nR, Lq, 2), (nR, Lk, 2)
    q_win = torch.div(qxy, M, rounding_mode='floor')  # query window index (x, y)
    k_win = torch.div(torch.div(kxy, r, rounding_mode='floor'), M, rounding_mode='floor')  # key window index
    assert (k_win == k_win[:, :1]).all()  # one key window per region (not tiled copies)
    assert (torch.div(q_win, r, rounding_mode='floor') == k_win[:, :1]).all()
    # each region holds r^2 distinct query windows and M^2 distinct keys
    for reg in range(qxy.shape[0]):
        assert len({tuple(t) for t in q_win[reg].tolist()}) == r * r
        assert len({tuple(t) for t in kxy[reg].tolist()}) == M * M


def _region_output_changes(mod, x, region, point):
    y0, y1, x0, x1 = region
    x2 = x.clone()
    x2[:, point[0], point[1]] += 5.0
    with torch.no_grad():
        a, b = mod(x)[:, y0:y1, x0:x1], mod(x2)[:, y0:y1, x0:x1]
    return not torch.allclose(a, b, atol=1e-6)


@pytest.mark.parametrize('scale', [0.5, 0.25])
@pytest.mark.parametrize('shifted', [False, True])
def test_locality_of_region(scale, shifted):
    mod = _module(scale, shifted)
    r = mod.ratio
    R = r * M
    x = torch.randn(1, 4 * R, 4 * R, 8)
    start = R + (R // 2 if shifted else 0)  # region (1, 1), in the rolled frame when shifted
    region = (start, start + R, start, start + R)
    margin = r + 1  # NPConv on the down-scaled map (r pixels) plus the query NPConv (1 pixel)
    inside = (start + R // 2, start + R // 3)
    assert _region_output_changes(mod, x, region, inside)
    far = [(start - margin - 1, start + 2), (start + R + margin, start + R - 1), (0, 4 * R - 1)]
    for point in far:
        assert not _region_output_changes(mod, x, region, point), point
    if shifted:  # the seam: pixels that wrap around belong to other regions
        assert _region_output_changes(mod, x, region, (start + R - 1, start + R - 1))


@pytest.mark.parametrize('kwargs, message', [
    (dict(scale=0.3), 'CSWA scale must be 1/2^k (1, 1/2, 1/4, 1/8, ...), got 0.3'),
    (dict(dim=9), 'CSWA dim 9 is not divisible by heads 2'),
    (dict(window_size=0), 'window_size must be an even integer >= 2, got 0'),
    (dict(window_size=3), 'window_size must be an even integer >= 2, got 3'),
    (dict(window_size=1), 'window_size must be an even integer >= 2, got 1'),
    (dict(downsample='median'), "MPT downsample must be one of 'avgpool', 'no_shortcut', 'no_linear', 'maxpool', "
     "'conv', 'conv_full', 'bicubic'; got 'median'"),
    (dict(npconv='yes'), "MPT npconv must be true or false, got 'yes'"),
])
def test_constructor_errors_name_the_value(kwargs, message):
    with pytest.raises(ValueError) as err:
        CrossScaleWindowAttention(**{'dim': 8, 'heads': 2, 'scale': 0.5, 'window_size': M, **kwargs})
    assert str(err.value) == message


def test_printed_settings():
    """The module's printout (``print(net)``) names its scale, window and the switches that differ from the paper."""
    assert CrossScaleWindowAttention(8, 2, 0.25, M).extra_repr() == f'dim=8, heads=2, scale=1/4, M={M}, shifted=False'
    off = AuthorsCSWA(4, 1, 1.0, 2, shifted=True, npconv=False)
    assert off.extra_repr() == "dim=4, heads=1, scale=1/1, M=2, shifted=True, npconv=False, pairing='raster'"
    assert 'scale=1/2, M=' in repr(CrossScaleWindowAttention(8, 2, 0.5, M))
    paper = CrossScaleWindowAttention(8, 2, 0.5)  # the defaults are the paper's CSWA (Sec. 4.1: M = 8)
    assert paper.extra_repr() == 'dim=8, heads=2, scale=1/2, M=8, shifted=False'
    assert paper.down is None and paper.down_proj is not None and paper.q_dw is not None and paper.kv_dw is not None
    assert (paper.downsample, paper.npconv) == ('avgpool', True)
    variant = CrossScaleWindowAttention(8, 2, 0.5, downsample='maxpool', npconv=False)
    assert (variant.downsample, variant.npconv, variant.down.variant) == ('maxpool', False, 'maxpool')


@pytest.mark.parametrize('scale', [1, 0.5])
def test_shifted_training_path_under_bfloat16_autocast(scale):
    """The explicit (training) path adds the seam mask to bf16 scores under autocast: close to float32."""
    torch.manual_seed(0)
    mod = _module(scale, True).train()
    x = torch.randn(2, 24, 40, 8)
    ref = mod(x)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        out = mod(x)
    out.float().square().mean().backward()
    assert out.shape == ref.shape and (out.float() - ref).abs().max() < 0.05 * ref.abs().max()
    assert all(torch.isfinite(p.grad).all() for p in mod.parameters() if p.grad is not None)


@pytest.mark.parametrize('heads', [1, 4])
@pytest.mark.parametrize('scale', [1, 0.5])
def test_head_counts_match_window_loop(scale, heads):
    """One head (squeezed, not unbound) and four heads, shifted, inference and training, against the window loop."""
    mod = _module(scale, True, heads=heads)
    x = torch.randn(1, 21, 30, 8)
    ref = _naive_cswa(mod, x)
    with torch.no_grad():
        torch.testing.assert_close(mod(x), ref, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(cswa_regions(mod, x), ref, rtol=1e-4, atol=1e-5)
    mod.train()
    torch.testing.assert_close(mod(x), ref, rtol=1e-4, atol=1e-5)


def test_without_npconv_every_sample_matches_window_loop(monkeypatch):
    """npconv=False (Table 9): the projections skip the depthwise conv; two samples, whole map and row strips."""
    mod = CrossScaleWindowAttention(8, 2, 0.5, M, True, npconv=False).eval()
    x = torch.randn(2, 21, 30, 8)
    ref = _naive_cswa(mod, x)
    with torch.no_grad():
        torch.testing.assert_close(mod(x), ref, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(cswa_regions(mod, x), ref, rtol=1e-4, atol=1e-5)
        monkeypatch.setattr(row_strips, 'STRIP_BYTES', 1)
        torch.testing.assert_close(cswa_regions(mod, x), ref, rtol=1e-4, atol=1e-5)


def test_learned_temperature_is_capped_at_100():
    """The per-head logit scale is clamped to log(100) before exp (the cap of scaled cosine attention)."""
    mod = _module(0.5, True)
    x = torch.randn(1, 16, 16, 8)
    outputs = []
    for scale in (1000.0, 100.0, 90.0):
        with torch.no_grad():
            mod.logit_scale.fill_(math.log(scale))
            outputs.append(cswa_regions(mod, x))
            torch.testing.assert_close(mod(x), outputs[-1], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(outputs[0], outputs[1], rtol=0, atol=0)
    assert not torch.allclose(outputs[1], outputs[2], atol=1e-5)


def test_authors_pairing_gradients_match_finite_differences():
    """The authors' pairing regroups the query map into r^2 sub-images; its custom gather backward (the inverse
    index) against finite differences, in float64."""
    mod = AuthorsCSWA(4, 2, 0.5, 2, True).double().train()
    with torch.no_grad():
        mod.rpb_table.normal_(0, 1)
    x = torch.randn(1, 4, 8, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(mod, (x,), eps=1e-6, atol=1e-6, fast_mode=True)


@pytest.mark.parametrize('scale, message', [
    (0, 'CSWA scale must be 1/2^k with 0 < scale <= 1, got 0'),
    (-0.5, 'CSWA scale must be 1/2^k with 0 < scale <= 1, got -0.5'),
    (1.5, 'CSWA scale must be 1/2^k with 0 < scale <= 1, got 1.5'),
    ('1/2', "CSWA scale must be 1/2^k with 0 < scale <= 1, got '1/2'"),
    (1 / 3, 'CSWA scale must be 1/2^k (1, 1/2, 1/4, 1/8, ...), got 0.3333333333333333'),
    (0.26, 'CSWA scale must be 1/2^k (1, 1/2, 1/4, 1/8, ...), got 0.26'),
])
def test_scale_errors_name_the_value(scale, message):
    with pytest.raises(ValueError) as err:
        scale_ratio(scale)
    assert str(err.value) == message
    assert [scale_ratio(s) for s in (1, 1.0, 0.5, 0.25, 0.125, 2**-6)] == [1, 1, 2, 4, 8, 64]


def test_initial_parameters():
    """logit scale log(10) per head (scaled cosine attention), relative position bias ~ N(0, 0.02) (Swin), the
    authors' raw temperature 1; at scale 1 no down-sampling parameters whatever the variant."""
    mod = CrossScaleWindowAttention(16, 8, 0.5, 8)
    assert torch.equal(mod.logit_scale, torch.full((8,), math.log(10.0)))
    table = mod.rpb_table.detach()
    assert table.shape == (225, 8) and 0.017 < float(table.std()) < 0.023
    assert float(table.abs().max()) < 0.2 and 'rp_index' not in mod.state_dict()
    raster = AuthorsCSWA(16, 8, 0.5, 8)
    assert torch.equal(raster.temperature, torch.ones(8)) and not hasattr(raster, 'logit_scale')
    plain = set(CrossScaleWindowAttention(8, 2, 1, M).state_dict())
    for variant in ('conv', 'conv_full', 'maxpool', 'no_linear'):
        assert set(CrossScaleWindowAttention(8, 2, 1, M, downsample=variant).state_dict()) == plain, variant


def test_analysis_record_only_when_asked():
    """Nothing is recorded by default (no attention kept in memory); keep_attention = True records the last call."""
    mod = _module(0.5, True)
    names = ('last_attention', 'last_query_xy', 'last_key_xy', 'last_query_valid', 'last_map_size')
    assert mod.keep_attention is False and all(getattr(mod, n) is None for n in names)
    with torch.no_grad():
        mod(torch.randn(1, 16, 16, 8))
        assert all(getattr(mod, n) is None for n in names)
        mod.keep_attention = True
        mod(torch.randn(1, 16, 16, 8))
    assert all(getattr(mod, n) is not None for n in names)
