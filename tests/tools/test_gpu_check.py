"""tools/gpu_check.py rehearsed on the CPU: the GPU call runs the same code paths, so it works when a GPU is lent."""

import subprocess
import sys

from helpers import REPO


def test_gpu_check_quick_on_cpu_runs_every_step(tmp_path):
    page = tmp_path / 'performance.md'
    page.write_text('# Performance\n\n<!-- gpu:begin -->\n<!-- gpu:end -->\n', encoding='utf-8')
    res = subprocess.run([sys.executable, '-m', 'tools.gpu_check', '--device', 'cpu', '--quick', '--markdown',
                          str(page)], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    text = page.read_text(encoding='utf-8')
    assert '| gpu-marked tests | passed |' in text and '| benchmark | passed |' in text
    assert '| DDP, 2 processes | skipped (0 GPU visible) |' in text
    for variant in ('mpt-tiny |', 'mpt-tiny bf16 |', 'mpt-tiny bf16+compile |'):
        assert f'| {variant} forward |' in text and f'| {variant} train step (AdamW) |' in text, variant
    assert 'Ratio to the same model in fp32 eager' in text
