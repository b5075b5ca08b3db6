"""BasicSR's own train.py resolves the plugin from YAML alone; mpt-test roots results/ in the current folder."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import REPO
from mpt_plugin.smoke import smoke_options, write_options, write_pairs

ENV = {**os.environ, 'OMP_NUM_THREADS': '1'}


def _basicsr_dir() -> Path:
    import basicsr

    return Path(basicsr.__file__).resolve().parent


def _run(args, cwd):
    res = subprocess.run([sys.executable, *args], cwd=cwd, env=ENV, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return res


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    """Train 2 iterations of a tiny MPT with the *installed* basicsr/train.py (no plugin on the command line)."""
    root = tmp_path_factory.mktemp('entry')
    write_pairs(str(root / 'data'), count=2, size=32)
    opt = smoke_options(str(root / 'data'), name='entry_smoke', total_iter=2, save_freq=2)
    opt['val']['metrics']['sharpness'] = {'type': 'calculate_sharpness'}
    yml = write_options(str(root / 'train.yml'), opt)
    train_py = _basicsr_dir() / 'train.py'
    res = _run([str(train_py), '-opt', yml], cwd=root)
    return root, res


def test_basicsr_train_py_builds_mpt_efcr_model_and_saves_checkpoints(trained):
    root, _ = trained
    exp = root / 'experiments' / 'entry_smoke'
    assert (exp / 'models' / 'net_g_2.pth').is_file() and (exp / 'models' / 'net_g_latest.pth').is_file()
    assert (exp / 'training_states' / '2.state').is_file()
    log = next(exp.glob('train_entry_smoke_*.log')).read_text()
    assert 'Network: MPT, with parameters' in log
    assert 'EFCRModel' in log and 'l_efcr' in log
    assert '# sharpness:' in log and '# psnr:' in log
    # installed BasicSR would root experiments/ in site-packages; the plugin roots it in the current folder
    assert not (_basicsr_dir().parent / 'experiments' / 'entry_smoke').exists()


def _test_options(root, name):
    """Options of a test run of the trained tiny model on its two validation pairs."""
    opt = smoke_options(str(root / 'data'), name=name)
    opt['datasets'] = {'test_1': {**opt['datasets']['val'], 'name': 'smoke_test'}}
    opt['path'] = {'pretrain_network_g': str(root / 'experiments/entry_smoke/models/net_g_latest.pth'),
                   'strict_load_g': True, 'param_key_g': 'params'}
    return opt


def test_mpt_test_writes_results_under_the_current_folder(trained):
    root, _ = trained
    opt = _test_options(root, 'entry_test')
    opt['val'].update(save_img=True, suffix=None)
    yml = write_options(str(root / 'test.yml'), opt)
    run_dir = root / 'run'
    run_dir.mkdir()
    _run([str(REPO / 'scripts' / 'test.py'), '-opt', yml, '--local-rank=0'], cwd=run_dir)  # launch-style flag
    results = run_dir / 'results' / 'entry_test'
    assert len(list((results / 'visualization' / 'smoke_test').glob('*.png'))) == 2
    assert '# psnr:' in next(results.glob('test_entry_test_*.log')).read_text()


def test_mpt_test_reads_amp_and_tile_from_the_option_files_val_section(trained):
    root, _ = trained
    opt = _test_options(root, 'entry_test_amp')
    opt['val'].update(amp='bf16', tile='auto')
    yml = write_options(str(root / 'test_amp.yml'), opt)
    _run([str(REPO / 'scripts' / 'test.py'), '-opt', yml], cwd=root)
    log = next((root / 'results' / 'entry_test_amp').glob('test_entry_test_amp_*.log')).read_text()
    assert 'Validation inference: amp bf16, tile auto on cpu' in log and '# psnr:' in log
    bad = subprocess.run([sys.executable, str(REPO / 'scripts' / 'test.py'), '-opt', yml, '--force_yml',
                          'val:amp=fp8'], cwd=root, env=ENV, capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "val.amp: 'fp8' is not one of bf16, fp16, false" in bad.stderr
