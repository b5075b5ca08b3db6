"""tools/compare_commits.py: another commit's network beside the working tree's, in one process."""

import subprocess
import sys

from tools.compare_commits import ROOT


def test_head_against_the_working_tree_runs_and_reports_outputs_and_ratios():
    res = subprocess.run([sys.executable, '-m', 'tools.compare_commits', '--baseline', 'HEAD', '--quick'], cwd=ROOT,
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    lines = res.stdout.splitlines()
    assert lines[0].startswith('max |working tree - HEAD| of the forward')
    assert float(lines[0].rsplit(' ', 1)[1]) >= 0  # the largest output difference is reported as a number
    assert sum('median ratio working tree / HEAD' in line for line in lines) == 2
