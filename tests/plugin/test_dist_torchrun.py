"""`torchrun --nproc_per_node=2 ... --launcher pytorch`: ranks stay identical, rank 0 saves, validation survives.

The CPU (gloo) tests hide any GPU (``CUDA_VISIBLE_DEVICES=''``), so they run on GPU machines too; the NCCL
variant runs only where at least two GPUs exist.
"""

import os
import shutil
import subprocess
import sys
import textwrap

import pytest
import torch

from mpt_plugin.smoke import smoke_options, write_options, write_pairs

# Test-only launcher: records every checkpoint write per rank and dumps each rank's final weights.
RANK_SCRIPT = textwrap.dedent('''
    import os, sys
    import torch
    import basicsr.train
    import mpt_common.atomic as atomic
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
    import torch.distributed as dist
    if dist.is_initialized():  # every rank is still alive here: the last validation did not outlive a peer
        dist.barrier()
    model = models[0]
    assert type(model.net_g).__name__ == 'DistributedDataParallel', type(model.net_g)
    torch.save(model.get_bare_model(model.net_g).state_dict(), f'weights_rank{rank}.pth')
''')


CPU_ONLY = {'CUDA_VISIBLE_DEVICES': ''}


def _torchrun(tmp_path, opt, extra_env=None):
    yml = write_options(str(tmp_path / 'dist.yml'), opt)
    (tmp_path / 'run_rank.py').write_text(RANK_SCRIPT)
    torchrun = shutil.which('torchrun') or None
    cmd = [torchrun] if torchrun else [sys.executable, '-m', 'torch.distributed.run']
    cmd += ['--standalone', '--nproc_per_node=2', 'run_rank.py', '-opt', yml, '--launcher', 'pytorch']
    res = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300,
                         env={**os.environ, 'OMP_NUM_THREADS': '1', **(extra_env or {})})
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return res


def _assert_identical_ranks(tmp_path):
    w0 = torch.load(tmp_path / 'weights_rank0.pth', weights_only=True)
    w1 = torch.load(tmp_path / 'weights_rank1.pth', weights_only=True)
    assert w0.keys() == w1.keys()
    for key in w0:
        assert torch.equal(w0[key], w1[key]), key
    return w0


def test_two_cpu_ranks_train_identically_and_only_rank0_saves(tmp_path):
    write_pairs(str(tmp_path / 'data'), count=4, size=32)
    _torchrun(tmp_path, smoke_options(str(tmp_path / 'data'), name='dist_smoke', total_iter=3, save_freq=3,
                                      val=False), CPU_ONLY)
    w0 = _assert_identical_ranks(tmp_path)
    saved = torch.load(tmp_path / 'experiments/dist_smoke/models/net_g_latest.pth', weights_only=True)['params']
    assert all(torch.equal(saved[k], w0[k]) for k in w0)

    log = next((tmp_path / 'experiments/dist_smoke').glob('train_dist_smoke_*.log')).read_text()
    assert 'World size (gpu number): 2' in log
    rank0 = (tmp_path / 'saves_rank0.txt').read_text().split()
    assert any(p.endswith('net_g_3.pth') for p in rank0) and any(p.endswith('3.state') for p in rank0)
    assert not (tmp_path / 'saves_rank1.txt').exists(), 'rank 1 wrote checkpoints'


def _validating_options(tmp_path, name, **kwargs):
    opt = smoke_options(str(tmp_path / 'data'), name=name, total_iter=5, save_freq=2, **kwargs)
    opt['val']['val_freq'] = 2  # validations at iterations 2 and 4, then BasicSR's final one after iteration 5
    return opt


def _assert_validated_and_saved(tmp_path, name):
    w0 = _assert_identical_ranks(tmp_path)
    exp = tmp_path / 'experiments' / name
    log = next(exp.glob(f'train_{name}_*.log')).read_text()
    assert log.count('Validation smoke_val') == 3, log[-2000:]
    saved = torch.load(exp / 'models' / 'net_g_latest.pth', weights_only=True)['params']
    assert all(torch.equal(saved[k], w0[k]) for k in w0)
    assert (exp / 'models' / 'net_g_4.pth').is_file() and (exp / 'training_states' / '4.state').is_file()


def test_two_cpu_ranks_validate_mid_run_and_at_the_end(tmp_path):
    """Gloo: rank 0 validates at iterations 2, 4 and after the last; no crash, identical ranks, final checkpoint."""
    write_pairs(str(tmp_path / 'data'), count=4, size=32)
    _torchrun(tmp_path, _validating_options(tmp_path, 'dist_val'), {**CPU_ONLY, 'MPT_DIST_TIMEOUT': '240'})
    _assert_validated_and_saved(tmp_path, 'dist_val')


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason='NCCL variant needs at least two GPUs')
def test_two_gpu_ranks_validate_mid_run_and_at_the_end(tmp_path):
    """NCCL: the same run on two GPUs (BasicSR's default backend for --launcher pytorch)."""
    write_pairs(str(tmp_path / 'data'), count=4, size=32)
    opt = _validating_options(tmp_path, 'dist_val_nccl')
    opt.update(num_gpu=2, dist_params={'backend': 'nccl', 'port': 29500})
    _torchrun(tmp_path, opt)
    _assert_validated_and_saved(tmp_path, 'dist_val_nccl')
