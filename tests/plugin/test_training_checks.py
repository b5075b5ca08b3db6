"""Start-up checks and shared resources of real training runs (issue 14).

LMDB training + two validation sets on one LMDB, option checks ("did you mean", missing keys), check_files,
LPIPS weights handled before training/testing starts, checkpoint modes following the umask.
"""

import logging
import os
import subprocess
import sys

import pytest
import torch

from helpers import REPO
from helpers.layouts import make_bbbc006, make_paired_folder
from helpers.scripts import load_script
from mpt_common import atomic
from mpt_common.option_checks import OptionError, check_options
from mpt_data import BBBC006Dataset, PairedDefocusDataset, lmdb_envs
from mpt_data.image_io import ImageLoader, ImageReadError
from mpt_metrics import lpips_metric
from mpt_plugin.smoke import smoke_options, write_options, write_pairs

ENV = {**os.environ, 'OMP_NUM_THREADS': '1', 'CUDA_VISIBLE_DEVICES': ''}


def _train(yml, cwd):
    return subprocess.run([sys.executable, str(REPO / 'scripts' / 'train.py'), '-opt', str(yml)], cwd=cwd, env=ENV,
                          capture_output=True, text=True, timeout=300)


# --------------------------------------------------------------------------------------------- LMDB
def test_training_and_two_validation_sets_on_one_lmdb_finish(tmp_path):
    make_paired_folder(tmp_path / 'data' / 'lq', tmp_path / 'data' / 'gt', ['000.png', '001.png', '002.png'], c=1)
    script = load_script('make_lmdb')
    for sub in ('lq', 'gt'):
        script.main(['folder', str(tmp_path / 'data' / sub)])
    opt = smoke_options(str(tmp_path / 'data'), name='lmdb_smoke', total_iter=2, save_freq=2)
    lmdb_roots = {'dataroot_lq': str(tmp_path / 'data' / 'lq.lmdb'), 'dataroot_gt': str(tmp_path / 'data' / 'gt.lmdb'),
                  'io_backend': {'type': 'lmdb'}}
    opt['datasets']['train'].update(lmdb_roots)
    val = opt['datasets'].pop('val')
    opt['datasets']['val_1'] = {**val, **lmdb_roots, 'name': 'lmdb_val1'}
    opt['datasets']['val_2'] = {**val, **lmdb_roots, 'name': 'lmdb_val2'}
    res = _train(write_options(str(tmp_path / 'lmdb.yml'), opt), tmp_path)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    log = next((tmp_path / 'experiments' / 'lmdb_smoke').glob('train_lmdb_smoke_*.log')).read_text()
    assert 'Validation lmdb_val1' in log and 'Validation lmdb_val2' in log
    assert (tmp_path / 'experiments' / 'lmdb_smoke' / 'models' / 'net_g_latest.pth').is_file()


def test_bbbc006_train_and_validation_datasets_share_the_lmdb_environment(tmp_path):
    make_bbbc006(tmp_path / 'BBBC006', wells=('a01', 'b02'), sites=('1',), channels=('1',))
    lmdb_path = tmp_path / 'BBBC006.lmdb'
    load_script('make_lmdb').main(['bbbc006', str(tmp_path / 'BBBC006'), '--output', str(lmdb_path)])
    base = dict(dataroot=str(lmdb_path), io_backend={'type': 'lmdb'}, split='all', normalize='dtype')
    sets = [BBBC006Dataset(dict(base, name='t', phase='train', gt_size=16)),
            BBBC006Dataset(dict(base, name='v1', phase='val')), BBBC006Dataset(dict(base, name='v2', phase='val'))]
    for ds in sets[1:]:
        assert ds[0]['lq'].shape[0] == 1  # would raise "already open in this process" without sharing
    envs = {id(ds.loader._file_client().client._client['default']) for ds in sets}
    assert len(envs) == 1 and os.path.realpath(lmdb_path) in lmdb_envs.open_paths()
    plain = ImageLoader({'type': 'lmdb'}, {'x': str(lmdb_path)})  # BasicSR's FileClient gets the same one
    assert id(plain._file_client().client._client['x']) in envs


# --------------------------------------------------------------------------------------------- options
def _train_opt(tmp_path, **train_changes):
    write_pairs(str(tmp_path / 'data'), count=2, size=32)
    opt = smoke_options(str(tmp_path / 'data'), name='opt_check', total_iter=1, save_freq=1)
    for dataset in opt['datasets'].values():
        dataset['phase'] = 'train' if dataset['name'] == 'smoke_train' else 'val'
    opt['train'].update(train_changes)
    return opt


def test_misspelled_efcr_key_stops_basicsr_train_py_with_a_suggestion(tmp_path):
    opt = _train_opt(tmp_path)
    opt['train']['efcr_mod'] = opt['train'].pop('efcr_mode')
    res = _train(write_options(str(tmp_path / 'typo.yml'), opt), tmp_path)
    assert res.returncode != 0
    assert "train: unknown key 'efcr_mod'; did you mean 'efcr_mode'?" in res.stderr
    assert not (tmp_path / 'experiments' / 'opt_check' / 'models' / 'net_g_1.pth').exists()


def test_option_checks_name_every_offending_key(tmp_path):
    opt = _train_opt(tmp_path, efcr_reblur={'sigm': 3}, pixel_op={'type': 'L1Loss'})
    del opt['datasets']['train']['gt_size']
    opt['datasets']['train']['use_hfilp'] = True
    opt['network_g']['windows_size'] = 8
    opt['train']['efcr_opt']['loss_wieght'] = 1.0
    with pytest.raises(OptionError) as err:
        check_options(opt, is_train=True)
    msg = str(err.value)
    for expected in ("datasets.train: required key 'gt_size' is missing",
                     "datasets.train: unknown key 'use_hfilp'; did you mean 'use_hflip'?",
                     "network_g: unknown key 'windows_size'; did you mean 'window_size'?",
                     "train.efcr_opt: unknown key 'loss_wieght'; did you mean 'loss_weight'?",
                     "train.efcr_reblur: unknown key 'sigm'; did you mean 'sigma'?",
                     "train: unknown key 'pixel_op'; did you mean 'pixel_opt'?"):
        assert expected in msg, msg
    ok = _train_opt(tmp_path)
    check_options(ok, is_train=True)  # the smoke options themselves pass


def test_unknown_efcr_mode_value_is_an_error(tmp_path):
    with pytest.raises(OptionError, match="unknown mode 'extra_labelled'.*did you mean 'extra_labeled'"):
        check_options(_train_opt(tmp_path, efcr_mode='extra_labelled'), is_train=True)


# --------------------------------------------------------------------------------------------- check_files
def _paired(tmp_path, names=('a.png', 'b.png', 'c.png')):
    make_paired_folder(tmp_path / 'lq', tmp_path / 'gt', list(names), c=1)
    return dict(name='pairs', dataroot_lq=str(tmp_path / 'lq'), dataroot_gt=str(tmp_path / 'gt'), in_chans=1,
                gt_size=16)


class _Records(logging.Handler):
    def __init__(self):
        super().__init__()
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def test_non_image_files_are_ignored_with_a_note(tmp_path):
    opt = _paired(tmp_path)
    (tmp_path / 'lq' / 'README.txt').write_text('notes about the scans')
    records = _Records()
    logger = logging.getLogger('basicsr')  # BasicSR's root logger does not propagate (caplog cannot see it)
    logger.addHandler(records)
    try:
        ds = PairedDefocusDataset(dict(opt, phase='train'))
    finally:
        logger.removeHandler(records)
    assert len(ds) == 3
    assert any('README.txt' in m and 'Ignoring 1 non-image file' in m for m in records.messages), records.messages


def test_check_files_lists_every_bad_file_before_training(tmp_path):
    opt = _paired(tmp_path, names=('a.png', 'b.png', 'c.png', 'd.png'))
    (tmp_path / 'lq' / 'b.png').write_bytes(b'\x89PNG\r\n\x1a\n garbage, not an image')  # corrupt
    make_paired_folder(tmp_path / 'tmp_lq', tmp_path / 'tmp_gt', ['c.png'], h=30, c=1)
    os.replace(tmp_path / 'tmp_lq' / 'c.png', tmp_path / 'lq' / 'c.png')  # size mismatch with gt/c.png
    make_paired_folder(tmp_path / 'rgb_lq', tmp_path / 'rgb_gt', ['d.png'], c=3)
    os.replace(tmp_path / 'rgb_gt' / 'd.png', tmp_path / 'gt' / 'd.png')  # 3 channels, in_chans 1
    with pytest.raises(ImageReadError) as err:
        PairedDefocusDataset(dict(opt, phase='train'))
    msg = str(err.value)
    assert 'check_files: 3 problem(s)' in msg and 'check_files: false' in msg
    assert 'lq/b.png' in msg and 'Cannot read the header' in msg
    assert 'pair size mismatch' in msg and 'lq/c.png' in msg and '44x30' in msg
    assert 'gt/d.png' in msg and '3 channel(s) but in_chans is 1' in msg
    assert 'a.png' not in msg
    assert len(PairedDefocusDataset(dict(opt, phase='val'))) == 4  # off by default outside training
    with pytest.raises(ImageReadError, match='check_files'):
        PairedDefocusDataset(dict(opt, phase='val', check_files=True))


def test_unpaired_files_are_all_named(tmp_path):
    opt = _paired(tmp_path)
    make_paired_folder(tmp_path / 'x_lq', tmp_path / 'x_gt', ['extra1.png', 'extra2.png'], c=1)
    for name in ('extra1.png', 'extra2.png'):
        os.replace(tmp_path / 'x_lq' / name, tmp_path / 'lq' / name)
    os.remove(tmp_path / 'lq' / 'a.png')
    with pytest.raises(ImageReadError) as err:
        PairedDefocusDataset(dict(opt, phase='train', check_files=False))
    msg = str(err.value)
    assert '3 unpaired file(s)' in msg and 'extra1.png' in msg and 'extra2.png' in msg
    assert "gt/a.png' has no input 'a.png'" in msg


def test_check_files_on_lmdb_finds_a_corrupt_value(tmp_path):
    import lmdb

    opt = _paired(tmp_path)
    script = load_script('make_lmdb')
    for sub in ('lq', 'gt'):
        script.main(['folder', str(tmp_path / sub)])
    env = lmdb.open(str(tmp_path / 'gt.lmdb'), map_size=1 << 20)
    with env.begin(write=True) as txn:
        txn.put(b'b', b'not a png')
    env.close()
    lmdb_opt = dict(opt, phase='train', dataroot_lq=str(tmp_path / 'lq.lmdb'), dataroot_gt=str(tmp_path / 'gt.lmdb'),
                    io_backend={'type': 'lmdb'})
    with pytest.raises(ImageReadError, match=r"gt.lmdb\[b\]"):
        PairedDefocusDataset(lmdb_opt)


# --------------------------------------------------------------------------------------------- LPIPS
def _lpips_opt(tmp_path, **metric):
    opt = _train_opt(tmp_path)
    opt['val']['metrics']['lpips'] = {'type': 'calculate_lpips', 'better': 'lower', **metric}
    return opt


def test_lpips_without_weights_stops_training_before_it_starts(tmp_path, offline_torch_home):
    expected_path, attempts = offline_torch_home
    with pytest.raises(lpips_metric.LpipsWeightsUnavailable) as err:
        check_options(_lpips_opt(tmp_path), is_train=True)
    msg = str(err.value)
    assert 'alexnet-owt-7be5be79.pth' in msg and str(expected_path) in msg
    assert 'val.metrics.lpips' in msg and 'if_missing: skip' in msg and 'could not be downloaded' in msg
    assert attempts == ['https://download.pytorch.org/models/alexnet-owt-7be5be79.pth']  # the real loading code


def test_lpips_with_if_missing_skip_warns_and_drops_the_metric(tmp_path, offline_torch_home):
    opt = _lpips_opt(tmp_path, if_missing='skip')
    with pytest.warns(RuntimeWarning, match='Skipping metric .lpips.'):
        check_options(opt, is_train=False)
    assert 'lpips' not in opt['val']['metrics'] and 'psnr' in opt['val']['metrics']


def test_shipped_test_option_files_skip_lpips_when_weights_are_missing():
    import yaml

    for path in sorted((REPO / 'options').glob('test_*.yml')):
        metrics = yaml.safe_load(path.read_text())['val']['metrics']
        lpips_entries = [m for m in metrics.values() if m.get('type') == 'calculate_lpips']
        assert all(m.get('if_missing') == 'skip' for m in lpips_entries), path.name


# --------------------------------------------------------------------------------------------- umask
@pytest.mark.skipif(os.name != 'posix', reason='POSIX file modes')
@pytest.mark.parametrize('umask, mode', [(0o022, 0o644), (0o027, 0o640), (0o077, 0o600)])
def test_checkpoint_mode_follows_the_umask(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        atomic.atomic_torch_save({'params': {}}, str(tmp_path / 'net_g_1.pth'))
    finally:
        os.umask(old)
    assert (tmp_path / 'net_g_1.pth').stat().st_mode & 0o777 == mode


# --------------------------------------------------------------------------------------------- validation
def test_a_failing_validation_saves_the_latest_weights_before_stopping():
    from basicsr.models.base_model import BaseModel

    saved = []

    class _Model:
        opt = {'is_train': True, 'dist': False}

        def nondist_validation(self, *args):
            raise RuntimeError('metric exploded')

        def save(self, epoch, current_iter):
            saved.append((epoch, current_iter))

    assert getattr(BaseModel.validation, '_mpt_patched', False)
    with pytest.raises(RuntimeError, match='metric exploded'):
        BaseModel.validation(_Model(), None, 10, None, False)
    assert saved == [(-1, -1)]


def test_dist_validation_uses_the_unwrapped_network_and_meets_at_a_barrier(monkeypatch):
    import torch.distributed as dist
    from basicsr.models.sr_model import SRModel

    events = []
    net = torch.nn.Linear(1, 1)

    class _Wrapper(torch.nn.parallel.DistributedDataParallel):
        def __init__(self, module):  # no process group needed for this check
            torch.nn.Module.__init__(self)
            self.module = module

    class _Model:
        def __init__(self, rank):
            self.opt = {'rank': rank}
            self.net_g = _Wrapper(net)

        def nondist_validation(self, *args):
            events.append(('validate', type(self.net_g).__name__))

    monkeypatch.setattr(dist, 'is_initialized', lambda: True)
    monkeypatch.setattr(dist, 'barrier', lambda *a, **k: events.append(('barrier',)))
    for rank in (0, 1):
        model = _Model(rank)
        SRModel.dist_validation(model, None, 2, None, False)
        assert isinstance(model.net_g, _Wrapper)  # the wrapper is back for training
    assert events == [('validate', 'Linear'), ('barrier',), ('barrier',)]


def test_check_files_covers_unlabeled_sets(tmp_path):
    from mpt_data import UnlabeledDefocusDataset

    make_paired_folder(tmp_path / 'lq', tmp_path / 'unused', ['a.png', 'b.png'], c=3)
    (tmp_path / 'lq' / 'b.png').write_bytes(b'')
    opt = dict(name='u', dataroot_lq=str(tmp_path / 'lq'), gt_size=16)
    with pytest.raises(ImageReadError, match=r"(?s)check_files: 1 problem.*lq/b.png' \(empty file\)"):
        UnlabeledDefocusDataset(dict(opt, phase='train'))
    assert len(UnlabeledDefocusDataset(dict(opt, phase='val'))) == 2
