"""``tools.finetune_unlabeled``: the unlabeled arm is the shipped mpt-finetune plan plus EFCR's extra_unlabeled mode
on the user's blurry images, and BasicSR builds its training set; the gradient ratio is read from the run's log."""

import numpy as np
import pytest
import tifffile

from helpers.scripts import load_script

OPTICS = ['--na', '0.75', '--wavelength', '0.52', '--pixel-size', '0.16', '--defocus', '0:2', '--minutes', '1']


def test_unlabeled_plan_adds_the_blurry_images_and_the_efcr_term(tmp_path):
    study = load_script('finetune_unlabeled')
    from basicsr.data import build_dataset

    from mpt_plugin.finetune import parse_args, plan_options

    blurry = tmp_path / 'blurry'
    blurry.mkdir()
    tifffile.imwrite(blurry / 'b.tif', np.random.default_rng(0).integers(1000, 9000, (96, 96), dtype=np.uint16))
    plan = plan_options(parse_args([*OPTICS, '-o', str(tmp_path / 'out')]), [], 'gray', 40)
    arm = study.unlabeled_plan(plan, str(blurry), 1e-3, 2)
    assert arm['train']['efcr_opt'] == {'type': 'EFCRLoss', 'loss_weight': 1e-3}
    assert arm['train']['efcr_mode'] == 'extra_unlabeled' and arm['train']['log_grad_norm_freq'] == 2
    assert 'extra_dataset' not in plan['datasets']['train']  # the shipped plan is left as it was
    assert {k: v for k, v in arm['train'].items() if k not in ('efcr_opt', 'efcr_mode', 'log_grad_norm_freq')} == \
        plan['train']
    train = build_dataset({**arm['datasets']['train'], 'phase': 'train'})
    sample = train[0]
    assert sample['extra_lq'].shape == sample['lq'].shape == (1, 64, 64)
    assert sample['extra_lq_path'].endswith('b.tif')


def test_gradient_ratio_is_the_median_over_logged_lines(tmp_path):
    study = load_script('finetune_unlabeled')
    logs = tmp_path / 'experiments' / 'finetune'
    logs.mkdir(parents=True)
    (logs / 'train_finetune_1.log').write_text(
        'iter: 1 l_pix: 1.0e-01 grad_pix: 2.0e+00 grad_efcr: 2.0e-01\n'
        'iter: 2 l_pix: 1.0e-01\n'
        'iter: 3 grad_pix: 1.0e+00 grad_efcr: 3.0e-01\n'
        'iter: 4 grad_pix: 4.0e+00 grad_efcr: 4.0e+00\n')
    assert study.gradient_ratio(str(tmp_path)) == pytest.approx(0.3)
    assert study.gradient_ratio(str(tmp_path / 'none')) is None
