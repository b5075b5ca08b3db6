"""Half precision and memory options: bf16 weights, fp16 ISCA products, the CSWA mask dtype, activation
checkpointing (network_g.use_checkpoint), and the per-device path choice (mpt_arch.inference.use_strips)."""

import pytest
import torch
from basicsr.archs import build_network

import mpt_arch  # noqa: F401  (registers MPT)
from mpt_arch.inference import use_strips
from mpt_arch.isca import IntraScaleChannelAttention
from mpt_plugin.smoke import TINY_MPT

pytestmark = pytest.mark.usefixtures('one_thread')


def _tiny_on_odd_size():
    """A seeded tiny MPT, a 37x45 input (CSWA pads and masks border regions) and its fp32 output."""
    torch.manual_seed(0)
    net = build_network(dict(TINY_MPT)).eval()
    x = torch.rand(1, 1, 37, 45)
    with torch.no_grad():
        return net, x, net(x)


def test_bf16_weights_on_an_odd_size_stay_within_2_percent_of_fp32():
    net, x, ref = _tiny_on_odd_size()
    with torch.no_grad():
        low = net.to(torch.bfloat16)(x.to(torch.bfloat16)).float()
    assert torch.isfinite(low).all()
    assert float((low - ref).abs().mean()) < 0.02 * float(ref.abs().mean())


def test_bf16_autocast_inference_takes_the_whole_map_path_with_a_matching_mask():
    """Odd size: CSWA pads and masks its border regions; the mask must reach SDPA in the attention dtype."""
    net, x, ref = _tiny_on_odd_size()
    with torch.no_grad():
        with torch.autocast('cpu', dtype=torch.bfloat16):
            low = net(x).float()
    assert float((low - ref).abs().mean()) < 0.02 * float(ref.abs().mean())


def test_isca_products_do_not_overflow_in_fp16():
    torch.manual_seed(0)
    isca = IntraScaleChannelAttention(8, 2)
    x = 30 * torch.rand(1, 64, 64, 8)  # q^T k sums 4096 pixels of values ~30: beyond fp16's 65504
    with torch.no_grad():
        ref = isca(x)
    with torch.enable_grad(), torch.autocast('cpu', dtype=torch.float16):
        low = isca(x)
    assert low.dtype == torch.float16 and torch.isfinite(low).all()
    assert float((low.float() - ref).abs().max()) < 0.02 * float(ref.abs().max())


def test_activation_checkpointing_gives_the_same_gradients():
    torch.manual_seed(0)
    plain = build_network(dict(TINY_MPT))
    ckpt = build_network({**TINY_MPT, 'use_checkpoint': True})
    ckpt.load_state_dict(plain.state_dict())
    x = torch.rand(2, 1, 24, 28)
    for net in (plain, ckpt):
        net(x).square().mean().backward()
    for (name, a), (_, b) in zip(plain.named_parameters(), ckpt.named_parameters()):
        assert torch.allclose(a.grad, b.grad, atol=1e-6, rtol=1e-5), name
    with pytest.raises(ValueError, match='use_checkpoint must be true or false'):
        build_network({**TINY_MPT, 'use_checkpoint': 'yes'})


def test_the_path_choice_per_device_dtype_and_grad_mode():
    x = torch.zeros(1, 4, 4, 2)
    with torch.no_grad():
        assert use_strips(x)  # CPU float32 inference: row strips
        assert not use_strips(x.to(torch.bfloat16))  # half-precision weights: whole map
        assert not use_strips(x.to('meta'))  # any other device (CUDA): whole map
        with torch.autocast('cpu', dtype=torch.bfloat16):
            assert not use_strips(x)
    assert not use_strips(x)  # training


def test_analysis_and_counting_switches_are_scoped():
    from mpt_arch.cswa import record_attention
    from mpt_arch.inference.strips import countable_kernels, fused_kernels

    net = build_network(dict(TINY_MPT)).eval()
    with torch.no_grad(), record_attention(net) as layers, countable_kernels():
        assert layers and all(m.keep_attention for _, m in layers) and not fused_kernels()
        net(torch.rand(1, 1, 16, 16))
        assert all(m.last_attention is not None for _, m in layers)
    assert not any(m.keep_attention or m.last_attention is not None for _, m in layers)
    assert fused_kernels()
