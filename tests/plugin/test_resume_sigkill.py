"""A run killed with SIGKILL after saving a state resumes with --auto_resume from that state to the end."""

import os
import re
import signal
import subprocess
import sys
import time

from helpers import REPO
from mpt_plugin.smoke import smoke_options, write_options, write_pairs

TOTAL = 12


def test_sigkill_then_auto_resume_finishes_from_last_state(tmp_path):
    write_pairs(str(tmp_path / 'data'), count=2, size=32)
    yml = write_options(str(tmp_path / 'r.yml'), smoke_options(str(tmp_path / 'data'), name='resume_smoke',
                                                               total_iter=TOTAL, save_freq=3, val=False))
    cmd = [sys.executable, str(REPO / 'scripts' / 'train.py'), '-opt', yml, '--auto_resume']
    env = {**os.environ, 'OMP_NUM_THREADS': '1'}
    exp = tmp_path / 'experiments' / 'resume_smoke'
    states = exp / 'training_states'

    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while not (states / '3.state').exists():
        assert proc.poll() is None, 'training ended before a state was saved'
        assert time.time() < deadline, 'no training state within 240 s'
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert not (exp / 'models' / 'net_g_latest.pth').exists(), 'first run finished before it was killed'
    saved = max(int(p.stem) for p in states.glob('*.state'))
    assert saved < TOTAL

    res = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    logs = sorted(exp.glob('train_resume_smoke_*.log'), key=os.path.getmtime)
    log = logs[-1].read_text()
    assert 'Resuming training from epoch: ' in log and f'iter: {saved}.' in log
    assert 'Start training from epoch: ' in log
    iters = [int(m) for m in re.findall(r'iter:\s+(\d+),', log)]
    assert iters and min(iters) == saved + 1 and max(iters) == TOTAL  # carried on, not restarted from 1
    assert (states / f'{TOTAL}.state').is_file() and (exp / 'models' / 'net_g_latest.pth').is_file()
    assert len(list(exp.parent.glob('resume_smoke_archived_*'))) == 0  # same experiment folder reused
    # what came back, checked independently of BasicSR's own bookkeeping:
    assert f'net_g_{saved}.pth' in log  # the weights of the saved iteration were loaded
    from mpt_common.checkpoint import load_checkpoint

    final = load_checkpoint(str(states / f'{TOTAL}.state'))
    steps = {int(s['step']) for s in final['optimizers'][0]['state'].values()}
    assert steps == {TOTAL}  # optimizer moments restored: a fresh optimizer would count TOTAL - saved steps
    resumed = load_checkpoint(str(states / f'{saved}.state'))
    assert resumed['iter'] == saved and final['iter'] == TOTAL
    # scheduler restored, not restarted: it advanced by exactly the resumed run's iterations
    assert final['schedulers'][0]['last_epoch'] == resumed['schedulers'][0]['last_epoch'] + TOTAL - saved
    assert resumed['schedulers'][0]['last_epoch'] > 0
