"""MPT network: parameter count, any-size input, gradients, registry, argument validation."""

import pytest
import torch

from mpt_arch import MPT

TINY = dict(dim=8, num_blocks=(2, 2, 2, 2), heads=(1, 1, 2, 2), scales=((0.5, 1), (0.5, 1), (0.5, 1), (1, 1)),
            window_size=4)


def test_paper_config_parameter_count():
    n = sum(p.numel() for p in MPT().parameters())
    assert abs(n - 19.80e6) / 19.80e6 < 0.005
    assert n == 19_799_356  # the authors' parameterization (REFERENCE.md)


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


@pytest.mark.parametrize(
    'kwargs, match',
    [
        (dict(scales=((0.3, 1), (0.5, 1), (0.5, 1), (1, 1))), '1/2'),
        (dict(scales=((0.5,), (0.5, 1), (0.5, 1), (1, 1))), r'scales\[0\]'),
        (dict(heads=(1, 3, 2, 2)), 'divisible'),
        (dict(heads=(1, 1, 2)), 'heads'),
        (dict(window_size=5), 'window_size'),
    ],
)
def test_bad_arguments_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MPT(**{**TINY, **kwargs})


def test_wrong_input_channels_raise():
    with pytest.raises(ValueError, match='expects'):
        MPT(in_chans=1, **TINY)(torch.rand(1, 3, 16, 16))


def test_folder_is_self_contained_for_drop_in():
    """Only relative imports of our own code, and only mpt_arch.py touches BasicSR (drop-in into archs/)."""
    import ast
    from pathlib import Path

    folder = Path(__file__).resolve().parents[1] / 'mpt_arch'
    allowed = {'torch', 'einops', 'math', 'typing', 'dataclasses', '__future__'}
    for path in folder.glob('*.py'):
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
                elif root == 'mpt_plugin':
                    assert path.name == '__init__.py', path
                else:
                    assert root in allowed, f'{path.name} imports {name}'
