"""Region layouts (``mpt_arch.region_geometry``) against their documented contract, for both pairings.

Each expectation is computed independently of the layout code: pixel coordinates pushed through the layout's
inverse gathers, key centres by average pooling a coordinate map (what a down-scaled key is), the masked regions
counted from the padded, rolled geometry region by region."""

import pytest
import torch

from mpt_arch.region_geometry import RegionLayout, build_authors_layout, build_region_layout

M = 4
TENSORS = ('q_src', 'k_src', 'q_inv', 'k_inv', 'query_xy', 'key_xy', 'query_valid')
GEOMETRIES = [(r, shifted, size) for r in (1, 2, 4) for shifted in (False, True)
              for size in ((32, 48), (40, 24), (37, 45), (1, 1))]
AUTHORS = [(r, shifted, size) for r in (1, 2, 4) for shifted in (False, True) for size in ((1, 1), (2, 3))]


def _build(pairing, r, shifted, size) -> RegionLayout:
    h, w = size
    if pairing == 'raster':
        return build_authors_layout(h * r * M, w * r * M, r, M, shifted)
    return build_region_layout(h, w, r, M, shifted)


def _map_size(pairing, r, size):
    return (size[0] * r * M, size[1] * r * M) if pairing == 'raster' else size


def _xy(h: int, w: int) -> torch.Tensor:
    """(H * W, 2) float (x, y) of every pixel in raster order."""
    y, x = torch.meshgrid(torch.arange(h), torch.arange(w), indexing='ij')
    return torch.stack([x, y], -1).reshape(-1, 2).float()


def _cases():
    return [('region', *g) for g in GEOMETRIES] + [('raster', *g) for g in AUTHORS]


@pytest.mark.parametrize('pairing, r, shifted, size', _cases())
def test_fields_have_the_documented_shapes_and_inverses(pairing, r, shifted, size):
    h, w = _map_size(pairing, r, size)
    hk, wk = -(-h // r), -(-w // r)
    lay = _build(pairing, r, shifted, size)
    n, lq, lk = lay.n_regions, r * r * M * M, M * M
    shapes = {'q_src': (n * lq,), 'k_src': (n * lk,), 'q_inv': (h * w,), 'k_inv': (hk * wk,),
              'query_xy': (n, lq, 2), 'key_xy': (n, lk, 2), 'query_valid': (n, lq)}
    assert {name: tuple(getattr(lay, name).shape) for name in TENSORS} == shapes
    assert lay.query_valid.dtype == torch.bool and lay.query_xy.is_floating_point()
    if lay.n_border:
        assert lay.border_mask.shape == (lay.n_border, 1, lq, lk) and lay.border_mask.dtype == torch.float32
    else:
        assert lay.border_mask is None
    assert torch.equal(lay.q_src[lay.q_inv], torch.arange(h * w))
    assert torch.equal(lay.k_src[lay.k_inv], torch.arange(hk * wk))
    if pairing == 'raster':
        for src, inv in ((lay.reg_src, lay.reg_inv), (lay.o_src, lay.o_inv)):
            assert src.shape == (h * w,) if src is lay.reg_src else (n * lq,)
            assert torch.equal(src[inv], torch.arange(h * w))
    else:
        assert lay.reg_src is lay.reg_inv is lay.o_src is lay.o_inv is None
        if lay.q_pad is not None:  # padding is read from pixel 0 (and dropped or masked)
            assert (lay.q_src[lay.q_pad] == 0).all()
        pad_k = torch.ones(n * lk, dtype=torch.bool)
        pad_k[lay.k_inv] = False
        assert (lay.k_src[pad_k] == 0).all()


@pytest.mark.parametrize('pairing, r, shifted, size', _cases())
def test_coordinates_are_those_of_the_gathered_pixels(pairing, r, shifted, size):
    """query_xy: the pixel a query slot reads (found through the inverse gathers); key_xy: the centre of the
    r x r block a key averages, i.e. the average-pooled coordinate map (sizes divisible by r)."""
    h, w = _map_size(pairing, r, size)
    lay = _build(pairing, r, shifted, size)
    slots = lay.q_inv if lay.reg_inv is None else lay.q_inv[lay.reg_inv]  # query slot reading each pixel
    torch.testing.assert_close(lay.query_xy.reshape(-1, 2)[slots], _xy(h, w), rtol=0, atol=0)
    if h % r == 0 and w % r == 0:
        pooled = torch.nn.functional.avg_pool2d(_xy(h, w).T.reshape(1, 2, h, w), r)[0]
        torch.testing.assert_close(lay.key_xy.reshape(-1, 2)[lay.k_inv], pooled.reshape(2, -1).T, rtol=0, atol=0)


def _expected_border_regions(r, shifted, size) -> int:
    """Regions of the padded, rolled map holding padded keys or both sides of the seam (padded queries need no
    mask: their outputs are dropped)."""
    h, w = size
    region = r * M
    hk, wk = -(-h // r), -(-w // r)
    nh, nw = -(-hk // M), -(-wk // M)
    sq = region // 2 if shifted else 0
    count = 0
    for i in range(nh):
        for j in range(nw):
            ys = [(i * region + a + sq) % (nh * region) for a in range(region)]  # original rows in this region
            xs = [(j * region + a + sq) % (nw * region) for a in range(region)]
            seam = shifted and (i == nh - 1 or j == nw - 1)
            k_pad = max(y // r for y in ys) >= hk or max(x // r for x in xs) >= wk
            count += seam or k_pad
    return count


@pytest.mark.parametrize('r, shifted, size', GEOMETRIES)
def test_masked_regions_are_exactly_those_at_the_seam_or_holding_padding(r, shifted, size):
    lay = _build('region', r, shifted, size)
    assert lay.n_border == _expected_border_regions(r, shifted, size)


@pytest.mark.parametrize('r, shifted, size', AUTHORS)
def test_authors_masked_windows_are_the_last_key_window_row_and_column(r, shifted, size):
    lay = _build('raster', r, shifted, size)
    assert lay.n_border == ((size[0] + size[1] - 1) if shifted else 0)  # key windows: size[0] x size[1]


def test_authors_pairing_needs_whole_windows_of_the_down_scaled_map():
    for h, w in ((20, 24), (24, 20)):
        with pytest.raises(ValueError) as err:
            build_authors_layout(h, w, 2, M, False)
        assert str(err.value) == f"the authors' CSWA pairing needs map sizes divisible by r*M = 8, got {h}x{w}"


@pytest.mark.parametrize('pairing', ['region', 'raster'])
def test_to_moves_every_tensor_and_builds_its_own_chunks(pairing):
    lay = _build(pairing, 2, True, (2, 3))
    chunks = lay.chunks(2)
    moved = lay.to(torch.device('meta'))
    for name, value in vars(moved).items():
        if isinstance(value, torch.Tensor):
            assert value.device.type == 'meta', name
    same = lay.to(torch.device('cpu'))
    assert same.chunks(2) is not chunks and lay.chunks(2) is chunks  # each layout caches its own chunks


@pytest.mark.parametrize('per_chunk', [1, 2, 5])
def test_chunks_partition_the_regions_in_order(per_chunk):
    """Chunks of at most ``per_chunk`` regions, plain ones before masked ones, covering every slot once; ``keep``
    is None exactly when a chunk holds no padded query."""
    for size in ((40, 24), (37, 45)):
        lay = _build('region', 2, True, size)
        chunks = lay.chunks(per_chunk)
        assert all(1 <= c.n_regions <= per_chunk for c in chunks)
        assert sum(c.n_regions for c in chunks) == lay.n_regions
        assert torch.equal(torch.cat([c.q_src for c in chunks]), lay.q_src)
        assert torch.equal(torch.cat([c.k_src for c in chunks]), lay.k_src)
        plain = lay.n_regions - lay.n_border
        starts = torch.tensor([c.n_regions for c in chunks]).cumsum(0) - torch.tensor([c.n_regions for c in chunks])
        for start, c in zip(starts.tolist(), chunks):
            assert (c.border_mask is None) == (start < plain)  # a chunk never mixes plain and masked regions
            valid = lay.query_valid[start:start + c.n_regions].flatten()
            assert (c.keep is None) == bool(valid.all())
            if c.keep is not None:
                assert torch.equal(c.keep, torch.nonzero(valid)[:, 0])


def test_chunks_built_in_inference_mode_serve_training():
    lay = _build('region', 2, True, (2, 3))
    with torch.inference_mode():
        chunks = lay.chunks(3)
    tensors = [t for c in chunks for t in c if isinstance(t, torch.Tensor)]
    assert tensors and not any(t.is_inference() for t in tensors)
    x = torch.randn(1, 2 * 3 * 4 * 4 * 4, 1, requires_grad=True)  # gather with these indices under autograd
    x.index_select(1, chunks[0].q_src).sum().backward()
    assert x.grad is not None


def test_region_layout_is_cached_per_geometry_device_and_pairing(monkeypatch):
    import mpt_arch.region_geometry as geometry

    monkeypatch.setattr(geometry, '_LAYOUT_CACHE', {})
    cpu, meta = torch.device('cpu'), torch.device('meta')
    first = geometry.region_layout(16, 16, 2, M, True, cpu)
    assert geometry.region_layout(16, 16, 2, M, True, cpu, 'region') is first  # the default pairing is 'region'
    assert geometry.region_layout(16, 16, 2, M, True, meta).q_src.device == meta
    assert geometry.region_layout(16, 16, 2, M, True, cpu) is first  # a layout per device
    authors = geometry.region_layout(16, 16, 2, M, True, cpu, 'raster')
    assert authors is not first and authors.reg_src is not None
    # at most 64 geometries are kept: the cache is emptied when a new one would exceed that
    monkeypatch.setattr(geometry, '_LAYOUT_CACHE', {})
    first = geometry.region_layout(1, 1, 1, M, False, cpu)
    for width in range(2, 65):
        geometry.region_layout(1, width, 1, M, False, cpu)
    assert geometry.region_layout(1, 1, 1, M, False, cpu) is first and len(geometry._LAYOUT_CACHE) == 64
    geometry.region_layout(1, 65, 1, M, False, cpu)
    assert len(geometry._LAYOUT_CACHE) == 1 and geometry.region_layout(1, 1, 1, M, False, cpu) is not first
