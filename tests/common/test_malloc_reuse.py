"""mpt_common.malloc_reuse: freed tensor memory is reused instead of paged in again (checked in subprocesses,
since the setting is process-wide)."""

import json
import os
import subprocess
import sys

import pytest

CHILD = r'''
import json, resource, sys
from mpt_common.malloc_reuse import keep_freed_memory
applied = keep_freed_memory(None if sys.argv[1] == 'env' else sys.argv[1] == 'on')
import torch
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
def step():  # a few activation-sized tensors alive together, then all freed, like a training step
    tensors = [torch.ones(n << 20) for n in (10, 12, 10)]  # 40-48 MiB each: glibc always mmaps such blocks
    del tensors
for _ in range(8):  # the first steps page the heap in whatever the setting, and settle its free blocks
    step()
start = faults()
for _ in range(4):
    step()
print(json.dumps({'applied': applied, 'faults': faults() - start}))
'''


def _run(mode: str, env_value: str = '') -> dict:
    env = {**os.environ, 'MPT_KEEP_FREED_MEMORY': env_value} if env_value else None
    out = subprocess.run([sys.executable, '-c', CHILD, mode], capture_output=True, text=True, check=True, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith('linux'), reason='glibc mallopt')
def test_freed_memory_is_reused_instead_of_paged_in_again():
    off, on = _run('off'), _run('on')
    assert off['applied'] is False and on['applied'] is True
    pages = (128 << 20) // 4096  # one step's tensors
    assert off['faults'] > 2 * pages  # the default allocator pages every block in again, step after step
    assert on['faults'] < pages // 4  # reused


@pytest.mark.skipif(not sys.platform.startswith('linux'), reason='glibc mallopt')
def test_environment_variable_switches_it_off():
    assert _run('env', env_value='0')['applied'] is False
    assert _run('env', env_value='1')['applied'] is True
