"""Fault injection, end to end: each fault of issue 27 on a tiny MPT, one line per fault (what happened, what was kept).

Every fault runs the real commands (``scripts/train.py`` = ``mpt-train``, ``mpt-deblur``) in a fresh process in a
scratch folder; the line says the exit status and which checkpoints or outputs are on disk afterwards. The disk-full
fault writes the experiment onto a small tmpfs when this process may mount one (root), else it simulates a disk
that fills after the first checkpoint (``shutil.disk_usage`` reports 1 kB free).

    python -m tools.fault_injection            # about two minutes on 2 CPU cores
    python -m tools.fault_injection --keep DIR # keep the scratch folders
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np

REPO = Path(__file__).resolve().parents[1]
TRAIN = str(REPO / 'scripts' / 'train.py')
ENV = {**os.environ, 'OMP_NUM_THREADS': '1'}


def _options(root: Path, name: str = 'fault', **kwargs) -> dict:
    from mpt_plugin.smoke import smoke_options, write_pairs

    if not (root / 'data').exists():
        write_pairs(str(root / 'data'), count=2, size=32)
    return smoke_options(str(root / 'data'), name=name, **{'val': False, **kwargs})


def _run(root: Path, opt, *extra: str, env: Optional[dict] = None) -> subprocess.CompletedProcess:
    from mpt_plugin.smoke import write_options

    yml = root / 'run.yml'
    if isinstance(opt, dict):
        write_options(str(yml), opt)
    else:
        yml.write_text(opt)
    return subprocess.run([sys.executable, TRAIN, '-opt', str(yml), *extra], cwd=root, env=env or ENV,
                          capture_output=True, text=True, timeout=600)


def _kept(root: Path, name: str = 'fault') -> str:
    exp = root / 'experiments' / name
    models = sorted(p.name for p in (exp / 'models').glob('*.pth')) if exp.is_dir() else []
    states = sorted((p.name for p in (exp / 'training_states').glob('*.state')), key=lambda n: int(n.split('.')[0]))
    return ' '.join(models + states) or 'no experiment folder'


def _last_line(res: subprocess.CompletedProcess) -> str:
    lines = [line for line in res.stderr.strip().splitlines() if line.strip()]
    return lines[-1][:260] if lines else ''


def disk_full(root: Path) -> Tuple[int, str]:
    opt = _options(root, total_iter=40, save_freq=2)
    mount = root / 'small_disk'
    mount.mkdir()
    mounted = subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=8m', 'tmpfs', str(mount)],
                             capture_output=True).returncode == 0
    env = ENV
    if mounted:
        (root / 'experiments').symlink_to(mount)
    else:
        (root / 'sitecustomize.py').write_text(
            'import os, shutil\n_real = shutil.disk_usage\n'
            'def disk_usage(path):\n    u = _real(path)\n'
            '    full = any(n.endswith(".pth") for n in os.listdir(path)) if os.path.isdir(path) else False\n'
            '    return type(u)(u.total, u.total - 1000, 1000) if full else u\n'
            'shutil.disk_usage = disk_usage\n')
        env = {**ENV, 'PYTHONPATH': str(root)}
    try:
        res = _run(root, opt, env=env)
        kept = _kept(root)
        freed = f'; after freeing space --auto_resume exits {_resume_after_freeing(root, opt, mounted)}'
    finally:
        if mounted:
            subprocess.run(['umount', '-l', str(mount)], capture_output=True)
    how = 'tmpfs of 8 MB' if mounted else 'simulated: 1 kB free after the first checkpoint'
    return res.returncode, f'({how}) {_last_line(res)} | kept: {kept}{freed}'


def _resume_after_freeing(root: Path, opt: dict, mounted: bool) -> int:
    exp = root / 'experiments' / 'fault'
    if mounted:  # move the run to a disk with space, as a user would after freeing some
        target = root / 'big_disk'
        shutil.copytree(exp, target / 'fault')
        (root / 'experiments').unlink()
        (root / 'experiments').symlink_to(target)
    states = sorted(int(p.stem) for p in (root / 'experiments' / 'fault' / 'training_states').glob('*.state'))
    for extra in sorted((root / 'experiments' / 'fault' / 'models').glob('*.pth')):  # keep the disk small
        if extra.stem.split('_')[-1] not in ('latest', str(states[-1] if states else -1)):
            extra.unlink()
    return _run(root, opt, '--auto_resume').returncode


def nan_loss(root: Path) -> Tuple[int, str]:
    opt = _options(root, total_iter=6, save_freq=1)
    opt['train']['optim_g']['lr'] = 1.0e12
    res = _run(root, opt)
    return res.returncode, f'{_last_line(res)} | kept: {_kept(root)}'


def same_name(root: Path) -> Tuple[int, str]:
    from mpt_plugin.smoke import write_options

    yml = write_options(str(root / 'run.yml'), _options(root, total_iter=6, save_freq=3))
    procs = [subprocess.Popen([sys.executable, TRAIN, '-opt', yml], cwd=root, env=ENV, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [(p.wait(timeout=600), p.communicate()[1]) for p in procs]
    refused = [err.strip().splitlines()[-1][:120] for code, err in results if code == 2]
    archived = len(list((root / 'experiments').glob('fault_archived_*')))
    codes = sorted(code for code, _ in results)
    return codes[-1], (f'exit statuses {codes}; {refused[0] if refused else "none refused"} | kept: {_kept(root)}, '
                       f'{archived} archived folders')


def bad_name(root: Path) -> Tuple[int, str]:
    victim = root / 'victim'
    victim.mkdir()
    opt = _options(root)
    opt['name'] = str(victim)
    res = _run(root, opt)
    return res.returncode, f'{_last_line(res)} | victim folder untouched: {victim.is_dir()}'


def alias_bomb(root: Path) -> Tuple[int, str]:
    rows = ['a: &a [x, x, x, x, x, x, x, x, x]'] + [
        f'{chr(98 + i)}: &{chr(98 + i)} [{", ".join([f"*{chr(97 + i)}"] * 9)}]' for i in range(8)]
    start = time.time()
    res = _run(root, '\n'.join(rows) + '\n')
    return res.returncode, f'{_last_line(res)[:110]} ({time.time() - start:.1f} s)'


def bad_keys(root: Path) -> Tuple[int, str]:
    opt = _options(root, val=True)
    opt['vall'] = opt.pop('val')
    opt['train']['total_iter'] = 'ten'
    res = _run(root, opt)
    problems = [line.strip() for line in res.stderr.splitlines() if line.strip().startswith('- ')]
    created = (root / 'experiments').exists()
    return res.returncode, '; '.join(problems)[:160] + f' | experiment folder created: {created}'


def truncated_png(root: Path) -> Tuple[int, str]:
    opt = _options(root, total_iter=2, save_freq=2)
    cut = root / 'data' / 'lq' / '001.png'
    cut.write_bytes(cut.read_bytes()[: cut.stat().st_size // 2])
    res = _run(root, opt)
    line = next((x.strip() for x in res.stderr.splitlines() if '001.png' in x), _last_line(res))
    return res.returncode, f'{line[:140]} | kept: {_kept(root)}'


def deblur_existing(root: Path) -> Tuple[int, str]:
    import cv2

    (root / 'in').mkdir()
    for i in range(2):
        img = np.random.default_rng(i).integers(0, 255, (16, 16), np.uint8)
        cv2.imwrite(str(root / 'in' / f'{i}.png'), img)
    (root / 'out').mkdir()
    (root / 'out' / '0.png').write_bytes(b'an earlier result')
    res = subprocess.run(['mpt-deblur', '-i', str(root / 'in'), '-o', str(root / 'out')], capture_output=True,
                         text=True, env=ENV, timeout=600)
    kept = (root / 'out' / '0.png').read_bytes() == b'an earlier result'
    return res.returncode, f'{_last_line(res)} | earlier output kept: {kept}'


def force_yml_code(root: Path) -> Tuple[int, str]:
    marker = root / 'PWNED'
    res = _run(root, _options(root), '--force_yml', f"train:total_iter=[__import__('os').system('touch {marker}')]")
    return res.returncode, f'{_last_line(res)[:110]} | code ran: {marker.exists()}'


def empty_tiff(root: Path) -> Tuple[int, str]:
    import tifffile

    (root / 'in').mkdir()
    tifffile.imwrite(root / 'in' / 'empty.tif', np.zeros((0, 64), np.uint16))
    res = subprocess.run(['mpt-deblur', '-i', str(root / 'in'), '-o', str(root / 'out')], capture_output=True,
                         text=True, env=ENV, timeout=600)
    line = next((x.strip() for x in res.stderr.splitlines() if 'no pixels' in x), _last_line(res))
    return res.returncode, line[:150]


def schedule_change(root: Path) -> Tuple[int, str]:
    opt = _options(root, total_iter=2, save_freq=2)
    first = _run(root, opt).returncode
    opt['train']['total_iter'] = 4
    opt['train']['scheduler']['periods'] = [4]
    res = _run(root, opt, '--auto_resume')
    log = sorted((root / 'experiments' / 'fault').glob('train_fault_*.log'))[-1].read_text()
    warned = next((x.split('WARNING: ')[-1] for x in log.splitlines() if 'scheduler changed' in x), 'no warning')
    return res.returncode, f'first run {first}; {warned[:110]} | kept: {_kept(root)}'


FAULTS: List[Tuple[str, Callable[[Path], Tuple[int, str]]]] = [
    ('disk full during a save', disk_full), ('non-finite loss (lr 1e12)', nan_loss),
    ('two runs, same name, started together', same_name), ('name: an existing absolute folder', bad_name),
    ('YAML alias bomb', alias_bomb), ('unknown top-level key, total_iter: ten', bad_keys),
    ('PNG cut in half in the training set', truncated_png),
    ('mpt-deblur into a folder with an output', deblur_existing),
    ('--force_yml with Python code', force_yml_code), ('0x64 TIFF to mpt-deblur', empty_tiff),
    ('resume after extending scheduler periods', schedule_change),
]


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--keep', help='keep the scratch folders under this folder')
    parser.add_argument('--only', nargs='+', help='run only the faults whose function names are given')
    args = parser.parse_args(argv)
    base = Path(args.keep or tempfile.mkdtemp(prefix='mpt_faults_'))
    base.mkdir(parents=True, exist_ok=True)
    print('| fault | exit | what happened, what was kept |\n|---|---|---|', flush=True)
    for title, fault in FAULTS:
        if args.only and fault.__name__ not in args.only:
            continue
        root = base / fault.__name__
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir()
        code, what = fault(root)
        print(f'| {title} | {code} | {what.replace(" | ", "; ").replace("|", "/")} |', flush=True)
    if not args.keep:
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
