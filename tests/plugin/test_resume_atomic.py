"""Atomic checkpoint writes and auto-resume's choice of the latest complete training state."""

import os

import pytest
import torch

from mpt_common import atomic
from mpt_plugin import patches, resume


class _Crash(RuntimeError):
    pass


def _crashing_save(obj, f, *args, **kwargs):
    f.write(b'half a checkpoint')  # some bytes reach the disk, then the writer dies
    raise _Crash('simulated crash during torch.save')


def test_crash_mid_save_leaves_no_final_file_and_no_partial(tmp_path, monkeypatch):
    target = tmp_path / '7.state'
    monkeypatch.setattr(torch, 'save', _crashing_save)
    with pytest.raises(_Crash):
        atomic.atomic_torch_save({'iter': 7}, str(target))
    assert not target.exists()
    assert os.listdir(tmp_path) == []


def test_crash_while_overwriting_keeps_the_old_file_intact(tmp_path, monkeypatch):
    target = tmp_path / 'net_g_latest.pth'
    atomic.atomic_torch_save({'params': {'w': torch.ones(3)}}, str(target))
    monkeypatch.setattr(torch, 'save', _crashing_save)
    with pytest.raises(_Crash):
        atomic.atomic_torch_save({'params': {'w': torch.zeros(3)}}, str(target))
    assert torch.equal(torch.load(target, weights_only=True)['params']['w'], torch.ones(3))


class _FakeModel:
    """The attributes BaseModel.save_training_state uses."""

    def __init__(self, states_dir):
        param = torch.nn.Parameter(torch.zeros(2))
        self.optimizers = [torch.optim.Adam([param], lr=1e-3)]
        self.schedulers = []
        self.opt = {'path': {'training_states': str(states_dir)}}


def test_basicsr_save_training_state_is_atomic(tmp_path, monkeypatch):
    model = _FakeModel(tmp_path)
    patches.save_training_state(model, epoch=1, current_iter=4)
    assert torch.load(tmp_path / '4.state', weights_only=True)['iter'] == 4
    monkeypatch.setattr(torch, 'save', _crashing_save)
    monkeypatch.setattr(patches.time, 'sleep', lambda s: None)
    with pytest.raises(_Crash):  # not BasicSR's "log and carry on": a save that fails stops the run
        patches.save_training_state(model, epoch=1, current_iter=6)
    assert sorted(os.listdir(tmp_path)) == ['4.state']


def _opt(root):
    return {'auto_resume': True, 'num_gpu': 0, 'network_g': {'type': 'X'},
            'path': {'training_states': str(root / 'training_states'), 'models': str(root / 'models'),
                     'resume_state': None}}


def _write_run(root, iters, truncated=(), missing_net=()):
    (root / 'training_states').mkdir()
    (root / 'models').mkdir()
    for it in iters:
        state = root / 'training_states' / f'{it}.state'
        if it in truncated:
            state.write_bytes(b'PK\x03\x04 truncated')  # what a crash of BasicSR's plain torch.save leaves
        else:
            torch.save({'epoch': 0, 'iter': it, 'optimizers': [], 'schedulers': []}, state)
        if it not in missing_net:
            torch.save({'params': {}}, root / 'models' / f'net_g_{it}.pth')


def test_auto_resume_picks_latest_complete_state(tmp_path):
    _write_run(tmp_path, [2, 4, 6, 8], truncated=[8], missing_net=[6])
    (tmp_path / 'training_states' / '.10.state.abc.partial').write_bytes(b'junk')  # crashed atomic save
    (tmp_path / 'models' / '.net_g_10.pth.abc.partial').write_bytes(b'junk')
    opt = _opt(tmp_path)
    with pytest.warns(RuntimeWarning, match='Skipping'):
        state = resume.load_resume_state(opt)
    assert state['iter'] == 4
    assert opt['path']['resume_state'].endswith('4.state')
    assert opt['path']['pretrain_network_g'].endswith('net_g_4.pth')  # BasicSR's check_resume ran
    assert not (tmp_path / 'training_states' / '.10.state.abc.partial').exists()
    assert not (tmp_path / 'models' / '.net_g_10.pth.abc.partial').exists()


def test_damaged_network_file_makes_auto_resume_fall_back_to_the_previous_pair(tmp_path):
    _write_run(tmp_path, [4, 6, 8])
    for it in (4, 6, 8):
        torch.save({'params': {'w': torch.full((2,), float(it))}}, tmp_path / 'models' / f'net_g_{it}.pth')
    good = (tmp_path / 'models' / 'net_g_8.pth').read_bytes()
    (tmp_path / 'models' / 'net_g_8.pth').write_bytes(good[:len(good) // 2])  # damaged, 8.state is fine
    torch.save([1, 2, 3], tmp_path / 'models' / 'net_g_6.pth')  # loads, but is no state dict
    opt = _opt(tmp_path)
    with pytest.warns(RuntimeWarning, match=r'net_g_8.pth does not load.*Falling back'):
        state = resume.load_resume_state(opt)
    assert state['iter'] == 4
    assert opt['path']['pretrain_network_g'].endswith('net_g_4.pth')


def test_resume_maps_to_cpu_without_touching_cuda(tmp_path, monkeypatch):
    _write_run(tmp_path, [3])
    monkeypatch.setattr(torch.cuda, 'current_device', lambda: pytest.fail('torch.cuda.current_device called'))
    opt = _opt(tmp_path)
    opt['auto_resume'] = False
    opt['path']['resume_state'] = str(tmp_path / 'training_states' / '3.state')
    assert resume.load_resume_state(opt)['iter'] == 3


def test_no_state_means_fresh_start_and_bad_explicit_path_is_an_error(tmp_path):
    opt = _opt(tmp_path)
    assert resume.load_resume_state(opt) is None
    opt['auto_resume'] = False
    opt['path']['resume_state'] = str(tmp_path / 'nope.state')
    with pytest.raises(FileNotFoundError, match='nope.state'):
        resume.load_resume_state(opt)


def test_local_rank_dash_form_is_accepted():
    argv = ['train.py', '-opt', 'x.yml', '--local-rank=1', '--local-rank', '2', '--local_rank=3']
    assert patches.normalize_argv(argv) == ['train.py', '-opt', 'x.yml', '--local_rank=1', '--local_rank', '2',
                                            '--local_rank=3']
