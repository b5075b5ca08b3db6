"""Training never ends green with a lost, mixed or garbage model; option files are checked as data (issue 27).

Each test runs the real path (``scripts/train.py`` in a subprocess, or the patched BasicSR functions) on a tiny MPT.
"""

import errno
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from helpers import REPO
from mpt_common.checkpoint import load_checkpoint
from mpt_plugin.smoke import smoke_options, write_options, write_pairs

ENV = {**os.environ, 'OMP_NUM_THREADS': '1'}
TRAIN = str(REPO / 'scripts' / 'train.py')


def _setup(tmp_path: Path, name: str = 'safety', **kwargs) -> dict:
    if not (tmp_path / 'data').exists():
        write_pairs(str(tmp_path / 'data'), count=2, size=32)
    return smoke_options(str(tmp_path / 'data'), name=name, **{'val': False, **kwargs})


def _train(tmp_path: Path, opt, *extra: str, timeout: int = 300) -> subprocess.CompletedProcess:
    yml = tmp_path / 'run.yml'
    if isinstance(opt, dict):
        write_options(str(yml), opt)
    else:
        yml.write_text(opt) if isinstance(opt, str) else yml.write_bytes(opt)
    return subprocess.run([sys.executable, TRAIN, '-opt', str(yml), *extra], cwd=tmp_path, env=ENV,
                          capture_output=True, text=True, timeout=timeout)


def _models(tmp_path: Path, name: str = 'safety') -> list:
    folder = tmp_path / 'experiments' / name / 'models'
    return sorted(p.name for p in folder.glob('*.pth')) if folder.is_dir() else []


# 1. a save that cannot complete stops the run ------------------------------------------------------------------
class _Model:
    """What BaseModel.save_network / save_training_state use."""

    def __init__(self, root: Path) -> None:
        self.net = torch.nn.Linear(64, 64)
        self.optimizers, self.schedulers = [torch.optim.Adam(self.net.parameters())], []
        self.opt = {'path': {'models': str(root), 'training_states': str(root)}}

    def get_bare_model(self, net):
        return net


def test_a_full_disk_stops_the_save_naming_path_cause_and_size(tmp_path, monkeypatch):
    from mpt_plugin import patches

    model = _Model(tmp_path)
    patches.save_network(model, model.net, 'net_g', 2)
    good = (tmp_path / 'net_g_2.pth').read_bytes()
    free = type('Usage', (), {'free': 1000})
    monkeypatch.setattr(patches.shutil, 'disk_usage', lambda path: free)
    with pytest.raises(patches.CheckpointSaveError) as err:
        patches.save_network(model, model.net, 'net_g', 2)
    message = str(err.value)
    assert 'no space left on device' in message and 'net_g_2.pth' in message and 'needs about' in message
    assert '--auto_resume' in message and (tmp_path / 'net_g_2.pth').read_bytes() == good
    monkeypatch.undo()

    def enospc(obj, handle, *args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    tries = []
    monkeypatch.setattr(torch, 'save', enospc)
    monkeypatch.setattr(patches.time, 'sleep', tries.append)
    with pytest.raises(patches.CheckpointSaveError, match='no space left on device'):
        patches.save_training_state(model, 1, 4)
    assert tries == []  # a full disk is not retried
    assert sorted(os.listdir(tmp_path)) == ['net_g_2.pth']


def test_training_on_a_full_disk_exits_non_zero_and_auto_resume_continues(tmp_path):
    opt = _setup(tmp_path, total_iter=4, save_freq=2)
    hook = tmp_path / 'sitecustomize.py'  # the disk "fills" after the first checkpoint
    hook.write_text('import shutil, os\n_real = shutil.disk_usage\n'
                    'def disk_usage(path):\n'
                    '    usage = _real(path)\n'
                    '    if os.path.exists(os.path.join(path, "net_g_2.pth")) or path.endswith("training_states") '
                    'and os.path.exists(os.path.join(path, "2.state")):\n'
                    '        return type(usage)(usage.total, usage.total - 1000, 1000)\n'
                    '    return usage\n'
                    'shutil.disk_usage = disk_usage\n')
    yml = write_options(str(tmp_path / 'run.yml'), opt)
    res = subprocess.run([sys.executable, TRAIN, '-opt', yml], cwd=tmp_path, capture_output=True, text=True,
                         env={**ENV, 'PYTHONPATH': str(tmp_path)}, timeout=300)
    assert res.returncode != 0
    assert 'no space left on device' in res.stderr and 'net_g_4.pth' in res.stderr
    assert _models(tmp_path) == ['net_g_2.pth']  # the last complete checkpoint, no net_g_latest
    res = subprocess.run([sys.executable, TRAIN, '-opt', yml, '--auto_resume'], cwd=tmp_path, capture_output=True,
                         text=True, env=ENV, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert _models(tmp_path) == ['net_g_2.pth', 'net_g_4.pth', 'net_g_latest.pth']


# 2. a non-finite loss stops the run; no non-finite network is ever saved ----------------------------------------
def test_a_diverging_run_stops_at_the_first_nan_and_keeps_the_last_finite_checkpoint(tmp_path):
    opt = _setup(tmp_path, total_iter=6, save_freq=1)
    opt['train']['optim_g']['lr'] = 1.0e12
    res = _train(tmp_path, opt)
    assert res.returncode != 0
    assert 'mpt-train: error: Iteration ' in res.stderr and 'non-finite loss l_pix = nan' in res.stderr
    assert 'Traceback' not in res.stderr
    assert 'Iteration ' in res.stderr and 'net_g_latest.pth' not in _models(tmp_path)
    saved = _models(tmp_path)
    for name in saved:  # every network on disk is finite
        params = load_checkpoint(str(tmp_path / 'experiments' / 'safety' / 'models' / name))['params']
        assert all(bool(torch.isfinite(v).all()) for v in params.values())
    states = sorted(int(p.stem) for p in (tmp_path / 'experiments/safety/training_states').glob('*.state'))
    assert states and f'net_g_{states[-1]}.pth' in saved  # what --auto_resume picks is finite


def test_nonfinite_patience_skips_batches_before_stopping():
    from mpt_models.efcr_model import EFCRModel, NonFiniteLossError

    model = EFCRModel.__new__(EFCRModel)
    model.net_g = torch.nn.Linear(2, 2)
    model.optimizer_g = torch.optim.SGD(model.net_g.parameters(), lr=1.0)
    model.nonfinite_patience, model.nonfinite_batches = 1, 0
    assert model.finite_or_skip(1, {'l_pix': torch.tensor(0.5)}) is True
    assert model.finite_or_skip(2, {'l_pix': torch.tensor(math.nan)}) is False  # skipped: 1 of patience 1
    with pytest.raises(NonFiniteLossError, match=r'Iteration 3: non-finite loss l_efcr = inf'):
        model.finite_or_skip(3, {'l_pix': torch.tensor(0.1), 'l_efcr': torch.tensor(math.inf)})


def test_a_network_with_nan_weights_is_never_saved(tmp_path):
    from mpt_common.checkpoint import CheckpointError
    from mpt_plugin import patches

    model = _Model(tmp_path)
    with torch.no_grad():
        model.net.weight[0, 0] = math.nan
    with pytest.raises(CheckpointError, match=r"Not saving '.*net_g_latest.pth': .*weight"):
        patches.save_network(model, model.net, 'net_g', -1)
    assert os.listdir(tmp_path) == []


# 3. two runs with the same experiment name -----------------------------------------------------------------------
def test_a_second_run_with_the_same_name_is_refused_while_the_first_runs(tmp_path):
    opt = _setup(tmp_path, total_iter=6, save_freq=3)
    yml = write_options(str(tmp_path / 'run.yml'), opt)
    cmd = [sys.executable, TRAIN, '-opt', yml]
    procs = [subprocess.Popen(cmd, cwd=tmp_path, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    results = [(p.wait(timeout=300), p.communicate()[1]) for p in procs]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 2], results
    refused = next(err for code, err in results if code == 2)
    assert "experiment 'safety' is in use" in refused and 'another name' in refused and 'pid ' in refused
    assert not list((tmp_path / 'experiments').glob('safety_archived_*'))  # nobody's folder was renamed
    assert _models(tmp_path) == ['net_g_3.pth', 'net_g_6.pth', 'net_g_latest.pth']
    res = _train(tmp_path, opt, '--auto_resume')  # a finished run resumes; its lock died with it
    assert res.returncode == 0, res.stderr[-2000:]


# 4. name is one folder name ---------------------------------------------------------------------------------------
@pytest.mark.parametrize('name', ['/tmp/some/folder', '../../outside', 'a/b', '..'])
def test_name_must_be_a_single_folder_name(tmp_path, name):
    victim = tmp_path / 'victim'
    victim.mkdir()
    opt = _setup(tmp_path)
    opt['name'] = str(victim) if name.startswith('/') else name
    res = _train(tmp_path, opt)
    assert res.returncode == 2 and 'Traceback' not in res.stderr
    assert f"name: {opt['name']!r} must be one folder name" in res.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ['data', 'run.yml', 'victim']  # nothing touched


# 5. alias bombs and oversized files ------------------------------------------------------------------------------
def test_alias_bomb_and_oversized_files_are_refused_quickly(tmp_path):
    rows = ['a: &a [x, x, x, x, x, x, x, x, x]'] + [
        f'{chr(98 + i)}: &{chr(98 + i)} [{", ".join([f"*{chr(97 + i)}"] * 9)}]' for i in range(8)]
    start = time.time()
    res = _train(tmp_path, '\n'.join(rows) + '\n')
    assert res.returncode == 2 and 'run.yml, line 6' in res.stderr and 'alias' in res.stderr
    assert time.time() - start < 60
    res = _train(tmp_path, '# padding\n' * 200_000)
    assert res.returncode == 2 and 'at most 1,048,576 bytes' in res.stderr


# 6. keys and value kinds, top to bottom ------------------------------------------------------------------------------
def _problems(tmp_path, edit) -> str:
    opt = _setup(tmp_path, val=True)
    edit(opt)
    res = _train(tmp_path, opt)
    assert res.returncode == 2 and 'Traceback' not in res.stderr, res.stderr[-2000:]
    assert not (tmp_path / 'experiments').exists()
    return res.stderr


def test_unknown_keys_and_wrong_kinds_are_named_with_file_and_key_path(tmp_path):
    def edit(opt):
        opt['vall'] = opt.pop('val')
        opt['train']['total_iter'] = 'ten'
        opt['train']['optim_g']['lr_'] = 0.1
        opt['train']['scheduler']['periods'] = ['a']
        opt['logger']['print_freq'] = 'often'
        opt['network_g']['window_size'] = 'four'

    err = _problems(tmp_path, edit)
    assert "Option file '" in err and "run.yml' problems" in err
    assert "top level: unknown key 'vall'; did you mean 'val'?" in err
    assert "train.total_iter: expected an integer, got the text 'ten'" in err
    assert "train.optim_g: unknown key 'lr_'; did you mean 'lr'?" in err
    assert "train.scheduler.periods.0: expected an integer, got the text 'a'" in err
    assert "logger.print_freq: expected an integer, got the text 'often'" in err
    assert "network_g.window_size: expected" in err


def test_numbers_written_as_text_are_read_as_numbers_with_a_note(tmp_path):
    opt = _setup(tmp_path, total_iter=2, save_freq=2)
    text = yaml.safe_dump(opt, sort_keys=False).replace('lr: 0.001', 'lr: 1e-3')
    text = text.replace('batch_size_per_gpu: 2', "batch_size_per_gpu: '2'")
    res = _train(tmp_path, text)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "note: train.optim_g.lr: the text '1e-3' is read as the number 0.001" in res.stderr
    assert "note: datasets.train.batch_size_per_gpu: the text '2' is read as the number 2" in res.stderr


@pytest.mark.parametrize('content, message', [
    ('name: x\n'.encode('utf-16'), 'is not UTF-8 text (it starts with a UTF-16 byte-order mark)'),
    (b'\xff\xfename', 'is not UTF-8 text'), (b'', 'is empty, not a mapping of options'),
    (b'- a\n- b\n', 'is a YAML list, not a mapping of options'), (b'name: [unclosed\n', 'is not valid YAML')])
def test_unreadable_option_files_are_named(tmp_path, content, message):
    res = _train(tmp_path, content)
    assert res.returncode == 2 and message in res.stderr and 'run.yml' in res.stderr
    assert 'Traceback' not in res.stderr


def test_mpt_deblur_uses_the_same_checks(tmp_path, capsys):
    from mpt_deploy import deblur

    image = tmp_path / 'in.png'
    import cv2

    cv2.imwrite(str(image), np.zeros((16, 16), np.uint8))
    args = ['-w', str(tmp_path / 'net.pth'), '-i', str(image), '-o', str(tmp_path / 'out')]
    assert deblur.main(['--arch', 'MPT', '--net-opt', 'in_chans=1', 'dimm=8', *args]) == 2
    assert "unknown key 'dimm'; did you mean 'dim'?" in capsys.readouterr().err
    yml = tmp_path / 'o.yml'
    yml.write_text('network_g: {type: MPT, in_chans: 1, window_size: four}\n')
    assert deblur.main(['-opt', str(yml), *args]) == 2
    assert 'network_g.window_size: expected' in capsys.readouterr().err


# 7. a truncated image fails the start-up check -----------------------------------------------------------------------
def test_check_files_decodes_every_file_and_names_a_truncated_one(tmp_path):
    from mpt_data import PairedDefocusDataset
    from mpt_data.image_io import ImageReadError

    write_pairs(str(tmp_path), count=3, size=32)
    cut = tmp_path / 'lq' / '001.png'
    cut.write_bytes(cut.read_bytes()[: len(cut.read_bytes()) // 2])
    opt = {'name': 'cut', 'type': 'PairedDefocusDataset', 'phase': 'train', 'gt_size': 16, 'in_chans': 1,
           'dataroot_lq': str(tmp_path / 'lq'), 'dataroot_gt': str(tmp_path / 'gt'), 'io_backend': {'type': 'disk'}}
    with pytest.raises(ImageReadError, match=r"(?s)1 problem\(s\).*lq/001.png.*truncated"):
        PairedDefocusDataset(opt)


# 8: tests/deploy/test_deblur_contract.py::test_existing_outputs_are_skipped_unless_overwrite
# 9. --force_yml is data ---------------------------------------------------------------------------------------------
def test_force_yml_values_and_keys_are_never_evaluated(tmp_path):
    opt = _setup(tmp_path, total_iter=2, save_freq=2)
    marker = tmp_path / 'PWNED'
    res = _train(tmp_path, opt, '--force_yml', f"train:total_iter=[__import__('os').system('touch {marker}')]")
    assert res.returncode == 2 and not marker.exists()
    assert 'train.total_iter: expected an integer' in res.stderr
    res = _train(tmp_path, opt, '--force_yml', f'name"]=__import__("os").system("touch {marker}");opt["x=1')
    assert res.returncode == 2 and not marker.exists() and 'unknown key' in res.stderr
    res = _train(tmp_path, opt, '--force_yml', 'train:total_iter=4')
    assert res.returncode == 2 and 'they add up to 2 iterations but train.total_iter is 4' in res.stderr
    res = _train(tmp_path, opt, '--force_yml', 'train:total_iter=4', 'train:scheduler:periods=[4]',
                 'logger:save_checkpoint_freq=4')
    assert res.returncode == 0, res.stderr[-2000:]
    assert _models(tmp_path) == ['net_g_4.pth', 'net_g_latest.pth']


# 10. smaller ones -----------------------------------------------------------------------------------------------------
def test_a_tiff_without_pixels_says_so(tmp_path):
    import tifffile

    from mpt_deploy.stacks import StackError, read_image_file

    tifffile.imwrite(tmp_path / 'empty.tif', np.zeros((0, 64), np.uint16))
    with pytest.raises(StackError, match='has no pixels'):
        read_image_file(str(tmp_path / 'empty.tif'))


def test_resume_after_extending_the_schedule_follows_the_option_file(tmp_path):
    opt = _setup(tmp_path, total_iter=2, save_freq=2)
    assert _train(tmp_path, opt).returncode == 0
    opt['train']['total_iter'] = 4
    opt['train']['scheduler']['periods'] = [4]
    res = _train(tmp_path, opt, '--auto_resume')
    assert res.returncode == 0, res.stderr[-2000:]  # BasicSR 1.4.2 crashed at the old period's end
    log = sorted((tmp_path / 'experiments' / 'safety').glob('train_safety_*.log'))[-1].read_text()
    assert 'train.scheduler changed since the resumed state was saved (periods: [2] -> [4]' in log
    assert _models(tmp_path) == ['net_g_2.pth', 'net_g_4.pth', 'net_g_latest.pth']
