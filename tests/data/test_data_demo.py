"""mpt_data/demo_data.py: real bundled microscopy images -> paired train/val defocus sets."""

from pathlib import Path

import cv2
import numpy as np
import pytest

from helpers.scripts import load_script
from mpt_data import PairedDefocusDataset


def _script():
    from mpt_data import demo_data

    return demo_data


def _detail(path: Path) -> float:
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED).astype(np.float32)
    return float(cv2.Laplacian(img, cv2.CV_32F).var())


def test_demo_data_splits_and_blur(tmp_path):
    script = _script()
    counts = script.build_demo_data(str(tmp_path / 'demo'), radii=(2.0, 3.0), n_val_tiles=1)
    assert counts['gray']['train'] == 6 and counts['rgb']['train'] == 4
    assert counts['gray']['val'] >= 4 and counts['rgb']['val'] == 4
    for subset, chans in (('gray', 1), ('rgb', 3)):
        for split in ('train', 'val'):
            base = tmp_path / 'demo' / subset / split
            names = sorted(p.name for p in (base / 'gt').iterdir())
            assert names == sorted(p.name for p in (base / 'lq').iterdir())
            lq_detail = [_detail(base / 'lq' / name) for name in names]
            gt_detail = [_detail(base / 'gt' / name) for name in names]
            assert all(a < b for a, b in zip(lq_detail, gt_detail))  # every input is blurrier than its gt
            assert sum(lq_detail) < 0.5 * sum(gt_detail)
            sample = PairedDefocusDataset(dict(name='d', phase='val', dataroot_lq=str(base / 'lq'),
                                               dataroot_gt=str(base / 'gt'), in_chans=chans))[0]
            assert sample['lq'].shape[0] == chans
    stronger = tmp_path / 'demo' / 'rgb' / 'val' / 'lq'
    assert _detail(stronger / 'ihc_t0_r3.png') < _detail(stronger / 'ihc_t0_r2.png')


def test_regions_do_not_overlap():
    script = _script()
    img = np.arange(200 * 150, dtype=np.uint16).reshape(200, 150)  # every pixel unique
    train, val = script.split_regions(img, 0.25, 16)
    assert train.shape[0] + 16 + val.shape[0] == 200 and not set(train.ravel()) & set(val.ravel())
    wide_train, wide_val = script.split_regions(img.T.copy(), 0.25, 16)
    assert wide_train.shape[1] + 16 + wide_val.shape[1] == 200
    with pytest.raises(ValueError, match='gap'):
        script.build_demo_data('unused', radii=(20,), gap=16)


def test_run_demo_smoke(tmp_path, monkeypatch, capsys):
    """scripts/run_demo.py end to end with 2 fine-tuning iterations: data, starter model, Richardson-Lucy, BasicSR
    training from the starter weights, metrics, images; the exit status follows the fine-tuned PSNR."""
    import sys

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, 'argv', list(sys.argv))
    status = load_script('run_demo').main(['--iters', '2', '--threads', '1'])
    out = capsys.readouterr().out
    experiment = tmp_path / 'experiments' / 'MPT_starter_demo_finetune'
    assert (experiment / 'models' / 'net_g_latest.pth').is_file()
    assert len(list((experiment / 'demo_images').glob('*_blurry_rl_starter_finetuned_sharp.png'))) == 4
    assert (tmp_path / 'demo_data' / 'rgb' / 'val' / 'lq').is_dir()
    rows = {line[2:36].strip(): float(line[36:].split('dB')[0])
            for line in out.splitlines() if line.startswith('  ') and ' dB ' in line}
    assert {'input', 'starter model', 'starter + fine-tune'} <= set(rows)
    assert any(name.startswith('Richardson-Lucy (true PSF') for name in rows)
    assert status == (0 if rows['starter + fine-tune'] > rows['input'] else 1)
    # fine-tuned from the shipped weights: two small AdamW steps away from them (a fresh init would be far)
    from mpt_common.checkpoint import load_checkpoint
    from mpt_deploy.starter_models import starter_model

    tuned = load_checkpoint(str(experiment / 'models' / 'net_g_latest.pth'))['params']
    shipped = load_checkpoint(starter_model('rgb').weights)['params']
    assert tuned.keys() == shipped.keys()
    assert max(float((tuned[k] - shipped[k]).abs().max()) for k in tuned) < 0.01
