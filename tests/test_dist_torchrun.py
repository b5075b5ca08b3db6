"""`torchrun --nproc_per_node=2 ... --launcher pytorch` trains on CPU (gloo); ranks stay identical; rank 0 saves."""

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from mpt_plugin.smoke import smoke_options, write_options, write_pairs

REPO = Path(__file__).resolve().parents[1]

# Test-only launcher: records every checkpoint write per rank and dumps each rank's final weights.
RANK_SCRIPT = textwrap.dedent('''
    import os, sys
    import torch
    import basicsr.train
    import mpt_plugin.atomic as atomic
    from mpt_plugin.cli import train_main

    rank = os.environ['RANK']
    models, build_model, atomic_save = [], basicsr.train.build_model, atomic.atomic_torch_save
    basicsr.train.build_model = lambda opt: models.append(build_model(opt)) or models[-1]

    def recording_save(obj, path):
        with open(f'saves_rank{rank}.txt', 'a') as handle:
            handle.write(path + '\\n')
        atomic_save(obj, path)

    atomic.atomic_torch_save = recording_save
    train_main()
    model = models[0]
    assert type(model.net_g).__name__ == 'DistributedDataParallel', type(model.net_g)
    torch.save(model.get_bare_model(model.net_g).state_dict(), f'weights_rank{rank}.pth')
''')


@pytest.mark.skipif(torch.cuda.is_available(), reason='checks the CPU (gloo) path')
def test_two_cpu_ranks_train_identically_and_only_rank0_saves(tmp_path):
    write_pairs(str(tmp_path / 'data'), count=4, size=32)
    yml = write_options(str(tmp_path / 'dist.yml'),
                        smoke_options(str(tmp_path / 'data'), name='dist_smoke', total_iter=3, save_freq=3, val=False))
    (tmp_path / 'run_rank.py').write_text(RANK_SCRIPT)
    torchrun = shutil.which('torchrun') or None
    cmd = [torchrun] if torchrun else [sys.executable, '-m', 'torch.distributed.run']
    cmd += ['--standalone', '--nproc_per_node=2', 'run_rank.py', '-opt', yml, '--launcher', 'pytorch']
    res = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300,
                         env={**os.environ, 'OMP_NUM_THREADS': '1'})
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]

    w0 = torch.load(tmp_path / 'weights_rank0.pth', weights_only=True)
    w1 = torch.load(tmp_path / 'weights_rank1.pth', weights_only=True)
    assert w0.keys() == w1.keys()
    for key in w0:
        assert torch.equal(w0[key], w1[key]), key
    saved = torch.load(tmp_path / 'experiments/dist_smoke/models/net_g_latest.pth', weights_only=True)['params']
    assert all(torch.equal(saved[k], w0[k]) for k in w0)

    log = next((tmp_path / 'experiments/dist_smoke').glob('train_dist_smoke_*.log')).read_text()
    assert 'World size (gpu number): 2' in log
    rank0 = (tmp_path / 'saves_rank0.txt').read_text().split()
    assert any(p.endswith('net_g_3.pth') for p in rank0) and any(p.endswith('3.state') for p in rank0)
    assert not (tmp_path / 'saves_rank1.txt').exists(), 'rank 1 wrote checkpoints'
