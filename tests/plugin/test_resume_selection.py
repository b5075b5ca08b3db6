"""How auto-resume picks a training state (``mpt_plugin.resume``): listing, network files, messages."""

import warnings

import pytest
import torch
from test_resume_atomic import _opt, _write_run

from mpt_plugin import resume


def test_list_states_newest_first_and_only_complete_names(tmp_path):
    assert resume.list_states(str(tmp_path / 'missing')) == []
    for name in ('10.state', '2.state', '30.state.tmp', '.40.state.abc.partial', 'x.state', '5.states', '07.state'):
        (tmp_path / name).write_bytes(b'')
    assert resume.list_states(str(tmp_path)) == [10, 7, 2]


def test_network_files_follow_the_options(tmp_path):
    opt = _opt(tmp_path)
    opt['network_d'] = {'type': 'x'}
    models = opt['path']['models']
    assert resume._network_files(opt, 7) == [('g', f'{models}/net_g_7.pth'), ('d', f'{models}/net_d_7.pth')]
    opt['path']['ignore_resume_networks'] = ['network_d']
    assert resume._network_files(opt, 7) == [('g', f'{models}/net_g_7.pth')]


def test_map_location_is_the_cpu_without_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    assert resume.map_location({'num_gpu': 1}) == resume.map_location({}) == torch.device('cpu')
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    monkeypatch.setattr(torch.cuda, 'current_device', lambda: 3)
    assert resume.map_location({'num_gpu': 1}) == torch.device('cuda', 3)
    assert resume.map_location({'num_gpu': 0}) == torch.device('cpu')


def test_network_file_problems(tmp_path):
    path = str(tmp_path / 'n.pth')
    assert resume.network_file_problem(path) == 'missing'
    (tmp_path / 'n.pth').write_bytes(b'garbage')
    assert resume.network_file_problem(path).startswith(f'does not load (Cannot load checkpoint {path!r}')
    for content, problem in (([1, 2], 'holds list, not a state dict'), ({}, 'holds dict, not a state dict'),
                             ({'params': {'w': 1}}, 'is not a dict of tensors'),
                             ({'params': {'w': torch.zeros(1)}}, None), ({'w': torch.zeros(1)}, None)):
        torch.save(content, path)
        assert resume.network_file_problem(path, 'params') == problem, content
    torch.save({'params': {'w': torch.zeros(1)}}, path)
    assert resume.network_file_problem(path) == 'is not a dict of tensors'  # no key: the whole file is checked


def test_skip_messages_name_the_files(tmp_path):
    _write_run(tmp_path, [4, 6, 8], truncated=[8], missing_net=[6])
    opt = _opt(tmp_path)
    states, models = tmp_path / 'training_states', tmp_path / 'models'
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        state = resume.find_latest_complete_state(opt)
    assert state['iter'] == 4 and opt['path']['resume_state'] == str(states / '4.state')
    messages = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    assert messages[0].startswith(f'Skipping unreadable training state {states / "8.state"}: CheckpointError: ')
    assert messages[1] == (f'Skipping training state {states / "6.state"}: network checkpoint(s) unusable: '
                           f'{models / "net_g_6.pth"} missing. Falling back to the previous state.')
    assert len(messages) == 2


def test_nothing_complete_means_none_and_explicit_missing_state_is_named(tmp_path):
    _write_run(tmp_path, [2], missing_net=[2])
    opt = _opt(tmp_path)
    with pytest.warns(RuntimeWarning):
        assert resume.find_latest_complete_state(opt) is None
    assert opt['path']['resume_state'] is None
    opt['auto_resume'] = False
    opt['path']['resume_state'] = str(tmp_path / 'nope.state')
    with pytest.raises(FileNotFoundError) as err:
        resume.load_resume_state(opt)
    assert str(err.value) == f"path.resume_state {str(tmp_path / 'nope.state')!r} does not exist."


def test_map_location_defaults_to_the_cpu_even_with_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    monkeypatch.setattr(torch.cuda, 'current_device', lambda: 0)
    assert resume.map_location({}) == torch.device('cpu')  # no num_gpu: BasicSR's CPU default


def test_states_are_loaded_onto_the_runs_device(tmp_path, monkeypatch):
    torch.save({'iter': 1, 'x': torch.ones(2)}, tmp_path / '1.state')
    monkeypatch.setattr(resume, 'map_location', lambda opt: torch.device('meta'))
    assert resume.load_state_file(str(tmp_path / '1.state'), {})['x'].device.type == 'meta'


def test_param_key_option_and_every_problem_listed(tmp_path):
    _write_run(tmp_path, [2, 4])
    opt = _opt(tmp_path)
    opt['network_d'] = {'type': 'x'}
    models = tmp_path / 'models'
    for it in (2, 4):
        torch.save({'params': 'not tensors', 'params_ema': {'w': torch.zeros(1)}}, models / f'net_g_{it}.pth')
    torch.save({'params': {'w': torch.zeros(1)}}, models / 'net_d_2.pth')
    opt['path']['param_key_g'] = 'params_ema'
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        assert resume.find_latest_complete_state(opt)['iter'] == 2
    (message,) = [str(w.message) for w in caught]
    assert f'unusable: {models / "net_d_4.pth"} missing. Falling' in message
    del opt['path']['param_key_g']
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        assert resume.find_latest_complete_state(opt) is None
    assert str(caught[0].message).endswith(
        f'{models / "net_g_4.pth"} is not a dict of tensors; {models / "net_d_4.pth"} missing. Falling back to the '
        'previous state.')


def test_no_models_folder_option_and_no_resume_requested(tmp_path):
    (tmp_path / 'training_states').mkdir()
    torch.save({'iter': 3}, tmp_path / 'training_states' / '3.state')
    opt = {'path': {'training_states': str(tmp_path / 'training_states')}}  # no networks, no models folder
    assert resume.find_latest_complete_state(opt)['iter'] == 3
    assert resume.load_resume_state({'auto_resume': False, 'path': {'resume_state': None}}) is None
    assert resume.load_resume_state({'auto_resume': False, 'path': {}}) is None
