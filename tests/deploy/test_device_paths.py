"""Device paths, run on the GPU by ``python -m tools.gpu_check`` (marker ``gpu``).

The device is CUDA when PyTorch sees one; ``MPT_TEST_DEVICE=cpu`` runs the same code on the CPU (``gpu_check
--device cpu --quick`` does, so the check is known to work before a GPU is lent); otherwise they skip.
"""

import os

import numpy as np
import pytest
import tifffile
import torch
from basicsr.archs import build_network

from mpt_plugin.smoke import TINY_MPT

DEVICE = os.environ.get('MPT_TEST_DEVICE') or ('cuda' if torch.cuda.is_available() else None)
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(DEVICE is None, reason='no CUDA device (MPT_TEST_DEVICE=cpu runs '
                                                                         'these on the CPU)')]


def _net():
    torch.manual_seed(0)
    return build_network(dict(TINY_MPT)).eval()


def test_forward_on_the_device_equals_the_cpu():
    net = _net()
    x = torch.rand(1, 1, 37, 45)
    with torch.no_grad():
        cpu = net(x)
        dev = net.to(DEVICE)(x.to(DEVICE)).cpu()
    assert torch.allclose(cpu, dev, atol=1e-4), float((cpu - dev).abs().max())


def test_bf16_autocast_stays_close_to_fp32_on_an_odd_size():
    net = _net().to(DEVICE)
    x = torch.rand(1, 1, 37, 45, device=DEVICE)
    with torch.no_grad():
        ref = net(x).float()
        with torch.autocast(DEVICE, dtype=torch.bfloat16):
            low = net(x).float()
    assert torch.isfinite(low).all()
    assert float((low - ref).abs().mean()) < 0.02 * float(ref.abs().mean())


def test_training_steps_on_the_device_lower_the_loss():
    net = _net().train().to(DEVICE)
    optim = torch.optim.AdamW(net.parameters(), lr=2e-3)
    torch.manual_seed(1)
    gt = torch.rand(4, 1, 24, 24, device=DEVICE)
    lq = torch.nn.functional.avg_pool2d(gt, 3, 1, 1)
    losses = []
    for _ in range(15):
        optim.zero_grad()
        loss = (net(lq) - gt).abs().mean()
        loss.backward()
        optim.step()
        losses.append(float(loss))
    assert all(np.isfinite(losses)) and losses[-1] < losses[0]


def test_mpt_deblur_on_the_device_matches_the_cpu(tmp_path):
    from mpt_deploy import deblur

    img = (np.random.default_rng(0).random((40, 52)) * 3000 + 400).astype(np.uint16)
    tifffile.imwrite(tmp_path / 'a.tif', img)
    assert deblur.main(['-i', str(tmp_path / 'a.tif'), '-o', str(tmp_path / 'cpu')]) == 0
    assert deblur.main(['-i', str(tmp_path / 'a.tif'), '-o', str(tmp_path / 'dev'), '--device', DEVICE]) == 0
    cpu = tifffile.imread(tmp_path / 'cpu' / 'a.tif').astype(np.int64)
    dev = tifffile.imread(tmp_path / 'dev' / 'a.tif').astype(np.int64)
    assert np.abs(cpu - dev).max() <= 1


def test_validation_on_the_device_in_batched_tiles_matches_the_cpu():
    """EFCRModel.test (validation, mpt-test) with val.tile on the device: tiles batched, equal to the CPU's."""
    import mpt_arch  # noqa: F401  (registers MPT)
    from mpt_models import EFCRModel

    opts = []
    for device in ('cpu', DEVICE):
        opts.append({'name': 'device_val', 'model_type': 'EFCRModel', 'num_gpu': 0 if device == 'cpu' else 1,
                     'is_train': False, 'dist': False, 'rank': 0, 'world_size': 1, 'network_g': dict(TINY_MPT),
                     'path': {'pretrain_network_g': None}, 'val': {'tile': 100}})
    torch.manual_seed(0)
    cpu = EFCRModel(opts[0])
    dev = EFCRModel(opts[1])
    dev.net_g.load_state_dict(cpu.net_g.state_dict())
    lq = torch.rand(1, 1, 150, 170)
    for model in (cpu, dev):
        model.lq = lq.to(model.device)
        model.test()
    assert dev.output.device.type == torch.device(DEVICE).type
    assert torch.allclose(cpu.output, dev.output.cpu(), atol=1e-4)
