"""torch.compile (train.compile) and the one switch of the hand-written backward functions (plain_autograd)."""

import threading

import pytest
import torch
from basicsr.archs import build_network
from test_model_efcr import make_batch, make_opt

import mpt_arch  # noqa: F401  (registers MPT)
from mpt_arch.custom_backward import custom_backward, plain_autograd
from mpt_models import EFCRModel
from mpt_plugin.smoke import TINY_MPT

pytestmark = pytest.mark.usefixtures('one_thread')
TOOLCHAIN = ('compiler', 'gcc', 'g++', 'c++', 'cpp', 'toolchain', 'python.h')


def test_plain_autograd_is_a_scoped_switch_per_thread():
    x = torch.ones(2, requires_grad=True)
    assert custom_backward(x)
    seen = []
    with plain_autograd():
        assert not custom_backward(x)
        worker = threading.Thread(target=lambda: seen.append(custom_backward(x)))
        worker.start()
        worker.join()
    assert seen == [True]  # another thread is not switched
    assert custom_backward(x)
    with torch.no_grad():
        assert not custom_backward(x)


def test_plain_and_hand_written_backward_give_the_same_gradients():
    torch.manual_seed(0)
    net = build_network(dict(TINY_MPT))
    x = torch.rand(1, 1, 20, 24)
    grads = []
    for context in (torch.enable_grad, plain_autograd):
        net.zero_grad()
        with context():
            net(x).square().mean().backward()
        grads.append({k: p.grad.clone() for k, p in net.named_parameters()})
    for name in grads[0]:
        assert torch.allclose(grads[0][name], grads[1][name], atol=1e-6, rtol=1e-4), name


def _compiled_or_skip(fn):
    try:
        return fn()
    except Exception as err:  # the inductor backend needs a C++ compiler; anything else is a failure
        if any(word in str(err).lower() for word in TOOLCHAIN):
            pytest.skip(f'torch.compile cannot build CPU kernels here: {str(err)[:200]}')
        raise


def test_compiled_network_equals_eager_in_output_and_gradients():
    torch.manual_seed(0)
    eager = build_network(dict(TINY_MPT))
    compiled = build_network(dict(TINY_MPT))
    compiled.load_state_dict(eager.state_dict())
    compiled.compile()
    x = torch.rand(2, 1, 24, 24)
    out_e = eager(x)
    out_c = _compiled_or_skip(lambda: compiled(x))
    assert torch.allclose(out_e, out_c, atol=1e-5), float((out_e - out_c).abs().max())
    out_e.square().mean().backward()
    out_c.square().mean().backward()
    for (name, p_e), (_, p_c) in zip(eager.named_parameters(), compiled.named_parameters()):
        assert torch.allclose(p_e.grad, p_c.grad, atol=1e-5, rtol=1e-3), name
    assert list(compiled.state_dict()) == list(eager.state_dict())  # checkpoints keep their names


def test_train_compile_runs_the_same_first_step_as_eager():
    losses = []
    for spec in (False, True):
        torch.manual_seed(0)
        model = EFCRModel(make_opt(network=TINY_MPT, compile=spec))
        model.feed_data(make_batch(size=16, seed=1))
        _compiled_or_skip(lambda model=model: model.optimize_parameters(1))
        losses.append(float(model.log_dict['l_pix']))
    assert losses[1] == pytest.approx(losses[0], rel=1e-4)


def test_bad_compile_options_are_refused():
    with pytest.raises(ValueError, match=r"train.compile must be true, false or a mapping of \['mode'"):
        EFCRModel(make_opt(network=TINY_MPT, compile={'modes': 'max-autotune'}))


def test_mpt_deblur_compile_writes_the_eager_result(tmp_path, capsys):
    import numpy as np
    import tifffile

    from mpt_deploy import deblur

    img = (np.random.default_rng(0).random((28, 36)) * 4000 + 500).astype(np.uint16)
    tifffile.imwrite(tmp_path / 'a.tif', img)
    assert deblur.main(['-i', str(tmp_path / 'a.tif'), '-o', str(tmp_path / 'eager')]) == 0
    rc = deblur.main(['-i', str(tmp_path / 'a.tif'), '-o', str(tmp_path / 'compiled'), '--compile'])
    err = capsys.readouterr().err
    if rc and any(word in err.lower() for word in TOOLCHAIN):
        pytest.skip(f'torch.compile cannot build CPU kernels here: {err[-200:]}')
    assert rc == 0, err[-2000:]
    eager = tifffile.imread(tmp_path / 'eager' / 'a.tif').astype(np.int64)
    compiled = tifffile.imread(tmp_path / 'compiled' / 'a.tif').astype(np.int64)
    assert np.abs(eager - compiled).max() <= 1  # float rounding of fused kernels: at most one count


def test_compile_uses_static_shapes_unless_the_options_say_otherwise():
    """Inductor fails on MPT's training graph with automatic dynamic shapes (paper configuration, torch 2.14):
    train.compile, mpt-deblur --compile and the benchmark compile through one helper with dynamic=False."""
    from mpt_common.compiler import compile_module

    class Recorder:
        def compile(self, **kwargs):
            self.kwargs = kwargs

    assert compile_module(Recorder()).kwargs == {'dynamic': False}
    assert compile_module(Recorder(), dynamic=True, mode='max-autotune').kwargs == {'dynamic': True,
                                                                                     'mode': 'max-autotune'}
