"""Pyramid sub-block and block (Sec. 3.1, Fig. 2): the sub-block against its composition written out, the block's
scale and shift schedule, the ablation and compatibility switches reaching every branch."""

import pytest
import torch

import mpt_arch.inference.strips as row_strips
from mpt_arch import inference
from mpt_arch.ablation import FFNVariant
from mpt_arch.authors_compat import AuthorsCSWA, AuthorsFEFN, AuthorsPyramidSubBlock
from mpt_arch.cswa import CrossScaleWindowAttention
from mpt_arch.fefn import FeatureEnhancingFFN
from mpt_arch.inference import sub_block as sub_block_inference
from mpt_arch.inference.sub_block import evaluate_sub_block
from mpt_arch.isca import IntraScaleChannelAttention
from mpt_arch.pyramid_block import PyramidBlock, PyramidSubBlock


def _randomised(module):
    torch.manual_seed(3)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.3 * torch.randn_like(p))  # non-trivial norms, biases and temperatures
    return module


def _fig2(block, x):
    """``y = LN(x)``; ``x1 = x + A1(y)``; ``x2 = x + A2(y)``; ``FEFN(x1, x2)``, each module on its own."""
    y = block.norm(x)
    first, second = (getattr(block, name) for name in block.branches)
    return block.fefn(x + first(y), x + second(y))


@pytest.mark.parametrize('attention', ['cswa+isca', 'cswa+cswa', 'isca+isca', 'wa+isca'])
@pytest.mark.parametrize('shifted', [False, True])
def test_sub_block_is_fig2(monkeypatch, attention, shifted):
    """Training and inference (the fused strip path for the paper's branches, one-row strips too) against Fig. 2."""
    block = _randomised(PyramidSubBlock(8, 2, 0.5, 4, shifted, 2.6, attention=attention))
    x = torch.randn(2, 12, 20, 8, requires_grad=True)
    ref = _fig2(block, x)
    out = block(x)
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)
    g = torch.randn_like(out)
    inputs = [x, *block.parameters()]
    for got, want in zip(torch.autograd.grad(out, inputs, g), torch.autograd.grad(ref, inputs, g)):
        torch.testing.assert_close(got, want, rtol=1e-3, atol=1e-4)
    with torch.no_grad():
        ref = ref.detach()
        torch.testing.assert_close(block(x), ref, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(evaluate_sub_block(block, x), ref, rtol=1e-4, atol=1e-5)
        monkeypatch.setattr(row_strips, 'STRIP_BYTES', 1)
        torch.testing.assert_close(evaluate_sub_block(block, x), ref, rtol=1e-4, atol=1e-5)
        x_before = x.detach().clone()
        evaluate_sub_block(block, x)
        assert torch.equal(x, x_before)  # inference writes into its own buffers, never into the input


def test_sub_block_branches_and_switches():
    paper = PyramidSubBlock(8, 2, 0.25, 4, True, 2.6)
    assert paper.branches == ('cswa', 'isca') and isinstance(paper.isca, IntraScaleChannelAttention)
    assert (paper.cswa.ratio, paper.cswa.window_size, paper.cswa.shifted, paper.cswa.heads) == (4, 4, True, 2)
    assert type(paper.cswa) is CrossScaleWindowAttention and paper.cswa.pairing == 'region' and type(paper.fefn) is \
        FeatureEnhancingFFN and paper.fefn.spatial_in.out_features == int(8 * 2.6)
    assert paper.cswa.npconv and paper.cswa.downsample == 'avgpool' and paper.cswa.down is None
    assert PyramidSubBlock(8, 2, 0.5, 4, False, 2.0).fefn.spatial_in.out_features == 16  # alpha reaches FEFN
    authors = AuthorsPyramidSubBlock(8, 2, 0.25, 4, True, 2.6)
    assert type(authors.cswa) is AuthorsCSWA and authors.cswa.pairing == 'raster' and type(authors.fefn) is AuthorsFEFN
    wa = PyramidSubBlock(8, 2, 0.25, 4, False, 2.6, attention='wa+wa', downsample='maxpool', npconv=False)
    assert wa.branches == ('cswa', 'cswa2') and (wa.cswa.ratio, wa.cswa2.ratio) == (1, 1)
    assert not wa.cswa.npconv and not wa.cswa2.npconv
    pair = PyramidSubBlock(8, 2, 0.25, 4, False, 2.6, attention='cswa+cswa', downsample='maxpool', npconv=False)
    assert (pair.cswa.ratio, pair.cswa2.ratio) == (4, 4) and pair.cswa.downsample == pair.cswa2.downsample == \
        'maxpool' and pair.cswa.q_dw is None
    variant = PyramidSubBlock(8, 2, 0.5, 4, False, 2.6, ffn='add_gelu')
    assert type(variant.fefn) is FFNVariant and variant.fefn.variant == 'add_gelu'
    with pytest.raises(ValueError, match="ffn must be one of 'fefn'"):
        PyramidSubBlock(8, 2, 0.5, 4, False, 2.6, ffn='mlp')


@pytest.mark.parametrize('shift_windows', [True, False])
def test_block_schedule(shift_windows):
    """Coarse-to-fine scales in order; sub-blocks 2, 4, 6 (odd indices) shifted unless shift_windows is off."""
    block = PyramidBlock(8, 2, (0.25, 0.25, 0.5, 0.5, 1, 1), 4, 2.6, shift_windows=shift_windows, npconv=False)
    assert [b.cswa.ratio for b in block.blocks] == [4, 4, 2, 2, 1, 1]
    assert [b.cswa.shifted for b in block.blocks] == [shift_windows and j % 2 == 1 for j in range(6)]
    assert all(not b.cswa.npconv and b.fefn.spatial_in.out_features == 20 for b in block.blocks)
    x = torch.randn(1, 8, 8, 8)
    with torch.no_grad():
        ref = x
        for sub in block.blocks:
            ref = _fig2(sub, ref)
        torch.testing.assert_close(block(x), ref, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match='shift_windows must be true or false'):
        PyramidBlock(8, 2, (1,), 4, 2.6, shift_windows='yes')


def test_analysis_hooks_take_the_unfused_path():
    """With keep_attention set, inference runs CSWA explicitly (so it can record the attention), same output."""
    block = _randomised(PyramidSubBlock(8, 2, 0.5, 4, True, 2.6))
    x = torch.randn(1, 8, 16, 8)
    with torch.no_grad():
        fused = evaluate_sub_block(block, x)
        block.cswa.keep_attention = True
        explicit = evaluate_sub_block(block, x)
    torch.testing.assert_close(explicit, fused, rtol=1e-4, atol=1e-5)
    assert block.cswa.last_attention is not None and isinstance(block.cswa, CrossScaleWindowAttention)


def test_inference_memory_paths(monkeypatch):
    """Inference of the paper's sub-block is fused into FEFN's row loop: the result lands in CSWA's output buffer and
    ISCA's output is never formed as a map; other branch pairs let FEFN write its result into the first branch's
    output (no new full-size buffer)."""
    seen = {'cswa': [], 'isca': 0}
    cswa_regions = sub_block_inference.cswa_regions

    def recording_cswa(*args):
        out = cswa_regions(*args)
        seen['cswa'].append(out.data_ptr())
        return out

    monkeypatch.setattr(sub_block_inference, 'cswa_regions', recording_cswa)
    monkeypatch.setitem(sub_block_inference.BRANCHES, CrossScaleWindowAttention, recording_cswa)
    monkeypatch.setitem(sub_block_inference.BRANCHES, IntraScaleChannelAttention,
                        lambda *a: seen.__setitem__('isca', seen['isca'] + 1) or torch.zeros(0))
    paper = PyramidSubBlock(8, 2, 0.5, 4, True, 2.6)
    x = torch.randn(1, 8, 16, 8)
    with torch.no_grad():
        out = evaluate_sub_block(paper, x)
    assert out.data_ptr() == seen['cswa'][-1] and seen['isca'] == 0
    torch.testing.assert_close(out, paper(x).detach(), rtol=1e-4, atol=1e-5)

    pair = PyramidSubBlock(8, 2, 0.5, 4, True, 2.6, attention='cswa+cswa')
    with torch.no_grad():
        out = evaluate_sub_block(pair, x)
    assert out.data_ptr() == seen['cswa'][-2]  # the first branch's buffer (the second branch ran last)
    torch.testing.assert_close(out, pair(x).detach(), rtol=1e-4, atol=1e-5)


def test_mpt_chooses_the_path_once_per_forward(monkeypatch):
    """One evaluator per forward (row strips for CPU float32 inference, the modules' own forward in training), used
    by every sub-block."""
    from mpt_arch import MPT

    chosen, calls = [], []
    original = inference.evaluator

    def choose(t):
        evaluate = original(t)
        chosen.append(evaluate)
        return None if evaluate is None else (lambda block, x: calls.append(block) or evaluate(block, x))

    monkeypatch.setattr(inference, 'evaluator', choose)
    net = MPT(in_chans=1, dim=8, num_blocks=(1, 2), heads=(1, 2), scales=((0.5,), (1, 1)), window_size=4)
    x = torch.rand(1, 1, 16, 16)
    with torch.no_grad():
        net(x)
    assert chosen == [evaluate_sub_block] and len(calls) == 1 + 2 + 1  # encoder, latent, decoder sub-blocks
    net(x)
    assert chosen[-1] is None and len(calls) == 4
