"""CSWA: cross-scale pairing (also on padded sizes), region layout, locality, shift regions, explicit path == SDPA
path, gather backward."""

import pytest
import torch

import mpt_arch.cswa as cswa_module
import mpt_arch.row_strips as row_strips
from mpt_arch.cswa import CrossScaleWindowAttention, scale_ratio
from mpt_arch.region_geometry import build_region_layout

M = 4


def _module(scale, shifted, dim=8, heads=2):
    mod = CrossScaleWindowAttention(dim, heads, scale, M, shifted).eval()
    with torch.no_grad():
        mod.rpb_table.normal_(0, 1)
    return mod


def _naive_cswa(mod, x):
    """Window-by-window reference for the unshifted case: query window (i, j) attends to the key window
    (i // r, j // r) of the down-scaled map (ceil-mode pooling). At a border, windows are clipped to the map: the
    queries and keys that exist, with their entries of the M^2 x M^2 relative position bias."""
    r, heads = mod.ratio, mod.heads
    b, h, w, c = x.shape
    d = c // heads
    q = mod._dwconv(mod.q(x), mod.q_dw)
    y = torch.nn.functional.avg_pool2d(x.permute(0, 3, 1, 2), r, ceil_mode=True).permute(0, 2, 3, 1) if r > 1 else x
    if r > 1:
        y = y + mod.down_proj(y)
    k, v = mod._dwconv(mod.kv(y), mod.kv_dw).split(c, -1)
    temp = mod.logit_scale.clamp(max=torch.log(torch.tensor(100.0))).exp()
    bias = mod._bias().view(heads, M, M, M, M)
    out = torch.zeros_like(q)
    for i in range(-(-h // M)):
        for j in range(-(-w // M)):
            qi, qj = i // r, j // r
            qw = q[:, i * M:(i + 1) * M, j * M:(j + 1) * M]
            kw = k[:, qi * M:(qi + 1) * M, qj * M:(qj + 1) * M]
            vw = v[:, qi * M:(qi + 1) * M, qj * M:(qj + 1) * M]
            (qh, qw_), (kh, kw_) = qw.shape[1:3], kw.shape[1:3]
            bw = bias[:, :qh, :qw_, :kh, :kw_].reshape(heads, qh * qw_, kh * kw_)
            qt = torch.nn.functional.normalize(qw.reshape(b, -1, heads, d).transpose(1, 2), dim=-1)
            kt = torch.nn.functional.normalize(kw.reshape(b, -1, heads, d).transpose(1, 2), dim=-1)
            vt = vw.reshape(b, -1, heads, d).transpose(1, 2)
            att = (qt * temp.view(1, heads, 1, 1) @ kt.transpose(-2, -1) + bw).softmax(-1)
            out[:, i * M:(i + 1) * M, j * M:(j + 1) * M] = (att @ vt).transpose(1, 2).reshape(b, qh, qw_, c)
    return mod.proj(out)


@pytest.mark.parametrize('scale', [1, 0.5, 0.25])
@pytest.mark.parametrize('size', [(32, 48), (37, 45), (21, 30)])
def test_one_to_many_pairing_matches_window_loop(scale, size):
    """Inference and training paths against the window loop, on whole regions and on sizes that need padding;
    training gradients (input and every parameter, the bias table included) too."""
    mod = _module(scale, False)
    x = torch.randn(2, *size, 8, requires_grad=True)
    ref = _naive_cswa(mod, x)
    with torch.no_grad():
        torch.testing.assert_close(mod(x), ref, rtol=1e-4, atol=1e-5)
    out = mod(x)
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)
    g = torch.randn_like(out)
    inputs = [x, *mod.parameters()]
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
        fast = mod(x)
        mod.keep_attention = True
        slow = mod(x)
    torch.testing.assert_close(slow, fast, rtol=1e-4, atol=1e-5)
    attn = mod.last_attention
    n_regions = mod.last_query_xy.shape[0]
    assert attn.shape == (2, n_regions, 2, (mod.ratio * M) ** 2, M * M)
    torch.testing.assert_close(attn.sum(-1), torch.ones_like(attn.sum(-1)))
    assert mod.last_map_size == size


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


def test_bad_scale_raises():
    with pytest.raises(ValueError, match='1/2'):
        CrossScaleWindowAttention(8, 2, 0.3, M)
    with pytest.raises(ValueError, match='divisible'):
        CrossScaleWindowAttention(9, 2, 0.5, M)
