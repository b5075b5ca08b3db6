"""``mpt_common.checkpoint``: every refusal's message, parameter selection and BasicSR's ``load_network``.

Expected messages and selections are written out by hand from the documented contract (module docstring).
"""

import pickle
from functools import partial

import pytest
import torch

from helpers.raised import raised
from mpt_common import checkpoint
from mpt_common.checkpoint import EXPECTED, CheckpointError, check_finite, load_checkpoint, select_params

_raises = partial(raised, CheckpointError)


def _loader_raising(monkeypatch, exc):
    def fake_load(*args, **kwargs):
        raise exc
    monkeypatch.setattr(torch, 'load', fake_load)


def test_missing_directory_and_empty_files(tmp_path):
    missing, folder, empty = tmp_path / 'missing.pth', tmp_path / 'folder.pth', tmp_path / 'empty.pth'
    folder.mkdir()
    empty.write_bytes(b'')
    assert _raises(load_checkpoint, str(missing)) == f'Checkpoint {str(missing)!r} does not exist.'
    assert _raises(load_checkpoint, str(folder)) == f'Checkpoint {str(folder)!r} is not a file; expected {EXPECTED}.'
    assert _raises(load_checkpoint, str(empty)) == (f'Checkpoint {str(empty)!r} is empty (0 bytes); '
                                                    f'expected {EXPECTED}.')


def test_truncated_zip_and_legacy_files(tmp_path):
    torch.save({'params': {'w': torch.ones(3)}}, tmp_path / 'zip.pth')
    data = (tmp_path / 'zip.pth').read_bytes()
    (tmp_path / 'cut.pth').write_bytes(data[:len(data) // 2])
    torch.save({'params': {'w': torch.ones(3)}}, tmp_path / 'legacy.pth', _use_new_zipfile_serialization=False)
    (tmp_path / 'eof.pth').write_bytes((tmp_path / 'legacy.pth').read_bytes()[:10])
    head = f"Cannot load checkpoint {str(tmp_path / 'cut.pth')!r}: expected {EXPECTED}, but "
    msg = _raises(load_checkpoint, str(tmp_path / 'cut.pth'))
    assert msg.startswith(head + 'the file is truncated or corrupt (PytorchStreamReader failed')
    assert msg.endswith(').')
    assert _raises(load_checkpoint, str(tmp_path / 'eof.pth')) == (
        f"Cannot load checkpoint {str(tmp_path / 'eof.pth')!r}: expected {EXPECTED}, but the file ends early "
        '(truncated).')


class Foreign:
    """A Python object inside a checkpoint (like BasicSR's pickled argparse options)."""


def test_foreign_objects_are_refused_without_torchs_advice(tmp_path):
    torch.save({'params': {'w': torch.zeros(1)}, 'opt': Foreign()}, tmp_path / 'foreign.pth')
    path = str(tmp_path / 'foreign.pth')
    assert _raises(load_checkpoint, path) == (
        f'Cannot load checkpoint {path!r}: expected {EXPECTED}, but it holds Python objects other than tensors and '
        'plain containers; they are refused because unpickling them could run arbitrary code. Re-save the tensors '
        "with torch.save({'params': net.state_dict()}, path).")


@pytest.mark.parametrize('exc, cause', [
    (RuntimeError('refused: WEIGHTS_ONLY mode'), 'it holds Python objects'),  # torch's wording, any case
    (pickle.UnpicklingError('invalid load key'), 'it holds Python objects'),
    (EOFError('Ran out of input'), 'the file ends early (truncated)'),
    (RuntimeError('\n  bad Magic Number\nsecond line'), 'the file is truncated or corrupt (bad Magic Number)'),
    (RuntimeError('not a zip archive'), 'the file is truncated or corrupt (not a zip archive)'),
    (RuntimeError('no central directory'), 'the file is truncated or corrupt (no central directory)'),
    (ValueError('\n\nfirst line\nsecond line'), 'ValueError: first line'),
    (KeyError(), 'KeyError: KeyError'),
])
def test_load_errors_name_the_cause(tmp_path, monkeypatch, exc, cause):
    path = tmp_path / 'w.pth'
    path.write_bytes(b'x')
    _loader_raising(monkeypatch, exc)
    msg = _raises(load_checkpoint, str(path))
    assert msg.startswith(f'Cannot load checkpoint {str(path)!r}: expected {EXPECTED}, but {cause}')
    assert msg.endswith('.') and 'weights_only' not in msg.lower() and 'second line' not in msg


def test_unreadable_file(tmp_path, monkeypatch):
    path = tmp_path / 'w.pth'
    path.write_bytes(b'x')
    _loader_raising(monkeypatch, PermissionError(13, 'Permission denied'))
    assert _raises(load_checkpoint, str(path)) == f'Cannot read checkpoint {str(path)!r}: Permission denied.'
    _loader_raising(monkeypatch, OSError('no strerror'))
    assert _raises(load_checkpoint, str(path)) == f'Cannot read checkpoint {str(path)!r}: no strerror.'


def test_load_is_weights_only_and_honours_map_location(tmp_path, monkeypatch):
    torch.save({'params': {'w': torch.arange(3.0)}}, tmp_path / 'w.pth')
    assert torch.equal(load_checkpoint(str(tmp_path / 'w.pth'))['params']['w'], torch.arange(3.0))
    assert load_checkpoint(str(tmp_path / 'w.pth'), map_location='meta')['params']['w'].device.type == 'meta'
    seen = {}
    monkeypatch.setattr(torch, 'load', lambda *a, **k: seen.update(k) or {})
    load_checkpoint(str(tmp_path / 'w.pth'))
    assert seen == {'map_location': 'cpu', 'weights_only': True}


def test_check_finite():
    ok = {'a': torch.ones(2), 'i': torch.tensor([1, 2]), 'note': 'text'}
    check_finite(ok, 'w.pth')  # finite floats, integers and non-tensors pass
    assert _raises(check_finite, {'a': torch.ones(2), 'b': torch.tensor([1.0, float('inf')])}, 'w.pth') == (
        "Checkpoint 'w.pth' has NaN or infinite values in 1 tensor(s): b; training probably diverged. Use an "
        'earlier checkpoint.')
    bad = {f'k{i}': torch.tensor([float('nan')]) for i in range(5)}
    assert "in 5 tensor(s): k0, k1, k2 (+2 more);" in _raises(check_finite, bad, 'w.pth')
    assert "in 5 tensor(s): k0, k1, k2, k3 (+1 more);" in _raises(check_finite, bad, 'w.pth', show=4)
    assert "in 3 tensor(s): k0, k1, k2;" in _raises(check_finite, {k: bad[k] for k in ('k0', 'k1', 'k2')}, 'w.pth')


def _t(value: float) -> torch.Tensor:
    return torch.full((1,), value)


def test_select_params_auto_prefers_ema_then_params_then_bare():
    both = {'params': {'w': _t(1)}, 'params_ema': {'w': _t(2)}}
    assert select_params(both, 'p')['w'].item() == 2
    assert select_params({'params': {'w': _t(1)}, 'params_ema': None}, 'p')['w'].item() == 1
    assert select_params({'w': _t(3)}, 'p')['w'].item() == 3
    assert select_params(both, 'p', 'params')['w'].item() == 1
    assert select_params({'w': _t(3)}, 'p', None)['w'].item() == 3


def test_select_params_ema_falls_back_to_params_like_basicsr():
    assert select_params({'params': {'w': _t(1)}}, 'p', 'params_ema')['w'].item() == 1
    assert _raises(select_params, {'other': {'w': _t(1)}}, 'p', 'params_ema') == (
        "Checkpoint 'p' has no 'params_ema' entry (keys: ['other']).")
    assert _raises(select_params, {'params': 'not a dict'}, 'p', 'params_ema').startswith(
        "Checkpoint 'p' has no 'params_ema' entry")
    keys = {f'k{i:02d}': {} for i in range(12)}
    assert _raises(select_params, keys, 'p', 'params') == (
        f"Checkpoint 'p' has no 'params' entry (keys: {sorted(keys)[:10]}).")


def test_select_params_refuses_what_is_not_a_state_dict():
    assert _raises(select_params, [1, 2], 'p') == f"Checkpoint 'p' holds a list; expected {EXPECTED}."
    neither = ("Checkpoint 'p' is neither a BasicSR checkpoint (params/params_ema) nor a state dict of tensors "
               '(keys: {}).')
    assert _raises(select_params, {'params': {}}, 'p') == neither.format(['params'])
    assert _raises(select_params, {'w': _t(1), 'step': 3}, 'p') == neither.format(['step', 'w'])
    assert _raises(select_params, {'params': {'w': _t(1)}, 'x': 1}, 'p', 'x') == neither.format(['params', 'x'])
    many = {f'k{i:02d}': 1 for i in range(12)}
    assert _raises(select_params, many, 'p') == neither.format(sorted(many)[:10])


def test_select_params_strips_only_the_ddp_prefix():
    state = select_params({'params': {'module.a.w': _t(1), 'b.module.w': _t(2), 'modulex': _t(3)}}, 'p')
    assert sorted(state) == ['a.w', 'b.module.w', 'modulex']


class _Model:
    """The part of BasicSR's BaseModel that ``load_network`` uses."""

    opt = {'dist': False}
    load_network = checkpoint.load_network

    def get_bare_model(self, net):
        return net.module if isinstance(net, torch.nn.DataParallel) else net

    def _print_different_keys_loading(self, net, state, strict):
        self.compared = (sorted(state), strict)
        self.compared_net = net


def test_load_network_loads_named_key_strictly(tmp_path, basicsr_log):
    src = torch.nn.Linear(2, 2)
    torch.save({'params': {'module.' + k: v for k, v in src.state_dict().items()},
                'params_ema': {k: v + 1 for k, v in src.state_dict().items()}}, tmp_path / 'net.pth')
    model, dst = _Model(), torch.nn.Linear(2, 2)
    model.load_network(torch.nn.DataParallel(dst), str(tmp_path / 'net.pth'), True, 'params')
    assert torch.equal(dst.weight, src.weight) and model.compared == (['bias', 'weight'], True)
    assert model.compared_net is dst  # the bare network, not the DataParallel wrapper
    assert f"Loading Linear model from {tmp_path / 'net.pth'}, with param key: [params]." in basicsr_log.text
    path = str(tmp_path / 'net.pth')
    assert _raises(model.load_network, dst, path, param_key='other').startswith(
        f"Checkpoint {path!r} has no 'other' entry")
    model.load_network(dst, str(tmp_path / 'net.pth'), param_key='params_ema')
    assert torch.equal(dst.weight, src.weight + 1)
    with pytest.raises(RuntimeError, match='Missing key'):  # strict by default
        model.load_network(torch.nn.Sequential(torch.nn.Linear(2, 2)), str(tmp_path / 'net.pth'))
    lenient = torch.nn.Sequential(torch.nn.Linear(2, 2))
    model.load_network(lenient, str(tmp_path / 'net.pth'), strict=False)
    assert model.compared == (['bias', 'weight'], False)


def test_load_network_refuses_nan_weights(tmp_path):
    torch.save({'params': {'weight': torch.full((2, 2), float('nan')), 'bias': torch.zeros(2)}}, tmp_path / 'n.pth')
    dst = torch.nn.Linear(2, 2)
    before = dst.weight.detach().clone()
    path = str(tmp_path / 'n.pth')
    assert _raises(_Model().load_network, dst, path).startswith(
        f'Checkpoint {path!r} has NaN or infinite values in 1 tensor(s): weight;')
    assert torch.equal(dst.weight, before)
