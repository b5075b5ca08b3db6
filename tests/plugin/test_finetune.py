"""mpt-finetune end to end on a tiny budget: optics -> fine-tuned starter -> mpt-deblur with the files it writes."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import tifffile

from mpt_common.option_file import load_options
from mpt_data.scenes import make_scene

ENV = {**os.environ, 'OMP_NUM_THREADS': '1'}
OPTICS = ['--na', '0.75', '--wavelength', '0.52', '--pixel-size', '0.16', '--defocus', '0:2', '--minutes', '1']


def _run(args, cwd):
    return subprocess.run([sys.executable, '-m', 'mpt_plugin.finetune', *args], cwd=cwd, env=ENV,
                          capture_output=True, text=True, timeout=600)


def test_finetune_writes_a_model_that_mpt_deblur_uses(tmp_path):
    (tmp_path / 'sharp').mkdir()
    for i in range(3):
        img = make_scene(np.random.default_rng(i), (80, 80), 1)[:, :, 0]
        tifffile.imwrite(tmp_path / 'sharp' / f's{i}.tif', (img * 65535).astype(np.uint16))
    res = _run(['--sharp', 'sharp', *OPTICS, '--iters', '2', '-o', 'scope'], tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    out = tmp_path / 'scope'
    assert {'model.pth', 'model.yml', 'model.md', 'finetune_plan.yml'} <= set(os.listdir(out))
    held = (out / 'val_files.txt').read_text().split()
    assert held and not set(held) & set((out / 'train_files.txt').read_text().split())  # held out, never trained
    model = load_options(str(out / 'model.yml'))
    assert model['datasets']['train']['psf'] == {'widefield_physical': {
        'na': 0.75, 'immersion_index': 1.0, 'wavelength_um': 0.52, 'pixel_size_um': 0.16, 'defocus_um': [0.0, 2.0]}}
    card = (out / 'model.md').read_text()
    assert model['datasets']['train']['norm_context'] == 256 and 'Loss: MSELoss' in card  # the defaults
    assert 'NA 0.75' in card and '| input | starter model | fine-tuned |' in card and 'held-out images' in card
    assert 'applies it to each colour channel of RGB images.' in card and 'RGB image per sample' not in card
    assert 'starter model gray' in res.stderr and 'validation PSNR: input' in res.stderr
    assert 'eta:' in res.stderr and 'iter:' in res.stderr  # BasicSR's progress lines with a time estimate
    assert list((out / 'experiments' / 'finetune').glob('train_finetune_*.log'))  # and the run's log file
    # model.pth is the better of the fine-tune and the starter on validation, and the card says which
    from mpt_deploy.starter_models import starter_model
    from mpt_plugin.finetune import finetuned_weights

    shipped = (out / 'model.pth').read_bytes()
    tuned = Path(finetuned_weights(str(out))).read_bytes()
    starter, finetuned = (float(v) for v in card.split('| input | starter model | fine-tuned |')[1]
                          .split('\n')[2].strip('| ').split(' | ')[1:])
    if finetuned >= starter:
        assert shipped == tuned and '`model.pth` holds the fine-tuned weights.' in card
    else:
        assert shipped == open(starter_model('gray').weights, 'rb').read() and 'holds the **starter model**' in card
    assert load_options(str(out / 'finetune_plan.yml'))['train']['total_iter'] == 2
    deblur = subprocess.run(['mpt-deblur', '-opt', str(out / 'model.yml'), '-w', str(out / 'model.pth'), '-i',
                             str(tmp_path / 'sharp' / 's0.tif'), '-o', str(tmp_path / 'deblurred')], env=ENV,
                            capture_output=True, text=True, timeout=300)
    assert deblur.returncode == 0, deblur.stderr[-2000:]
    result = tifffile.imread(tmp_path / 'deblurred' / 's0.tif')
    assert result.dtype == np.uint16 and result.shape == (80, 80)
    again = _run(['--sharp', 'sharp', *OPTICS, '-o', 'scope', '--auto_resume'], tmp_path)  # the saved plan
    assert again.returncode == 0 and 'continuing the run planned in' in again.stderr, again.stderr[-2000:]


def test_finetune_without_images_uses_procedural_scenes_and_refuses_impossible_optics(tmp_path):
    res = _run([*OPTICS, '--iters', '2', '--loss', 'l1', '-o', 'proc'], tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    assert 'procedural training image(s)' in res.stderr
    assert load_options(str(tmp_path / 'proc' / 'finetune_plan.yml'))['train']['pixel_opt']['type'] == 'L1Loss'
    assert 'procedural scenes' in (tmp_path / 'proc' / 'model.md').read_text()
    bad = _run(['--na', '1.4', '--wavelength', '0.52', '--pixel-size', '0.1', '-o', 'x'], tmp_path)
    assert bad.returncode == 2 and 'must be below the immersion index' in bad.stderr


def test_crop_and_learning_rate_shape_the_plan_and_bad_values_are_refused(tmp_path, capsys):
    import pytest

    from mpt_plugin.finetune import FINETUNE_LR, parse_args, plan_options

    default = plan_options(parse_args([*OPTICS, '-o', str(tmp_path)]), [], 'gray', 100)
    train = default['datasets']['train']
    assert (train['gt_size'], train['batch_size_per_gpu']) == (64, 8)  # the starter recipe's crops
    assert default['train']['optim_g']['lr'] == FINETUNE_LR
    large = plan_options(parse_args([*OPTICS, '--crop', '128', '--lr', '1e-3', '-o', str(tmp_path)]), [], 'gray', 100)
    train = large['datasets']['train']
    assert (train['gt_size'], train['batch_size_per_gpu']) == (128, 2)  # the same pixels per step
    assert large['train']['optim_g']['lr'] == 1e-3 and large['train']['scheduler']['eta_min'] == pytest.approx(1e-4)
    for bad, message in ((['--crop', '8'], '--crop must be >= 16'), (['--lr', '0'], '--lr must be > 0')):
        with pytest.raises(SystemExit) as exit_info:
            parse_args([*OPTICS, *bad, '-o', str(tmp_path)])
        assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_a_crop_larger_than_the_training_images_is_refused_naming_the_file(tmp_path):
    (tmp_path / 'sharp').mkdir()
    for i in range(3):
        img = make_scene(np.random.default_rng(i), (80, 80), 1)[:, :, 0]
        tifffile.imwrite(tmp_path / 'sharp' / f's{i}.tif', (img * 65535).astype(np.uint16))
    res = _run(['--sharp', 'sharp', *OPTICS, '--crop', '96', '--iters', '2', '-o', 'scope'], tmp_path)
    assert res.returncode == 1 and '--crop 96 is larger than' in res.stderr and '(80 x 80)' in res.stderr
    assert not (tmp_path / 'scope' / 'model.pth').exists()  # refused before any training


def test_rgb_images_fine_tune_the_gray_model_per_channel_as_mpt_deblur_applies_it(tmp_path):
    """mpt-deblur deblurs RGB images with the gray starter per channel, so that is what mpt-finetune starts from (and
    trains on one channel per sample); --kind rgb keeps the RGB network."""
    from mpt_plugin.finetune import parse_args, plan_options

    (tmp_path / 'sharp').mkdir()
    for i in range(2):
        img = make_scene(np.random.default_rng(i), (80, 80), 3)
        tifffile.imwrite(tmp_path / 'sharp' / f'c{i}.tif', (img * 65535).astype(np.uint16))
    res = _run(['--sharp', 'sharp', *OPTICS, '--iters', '2', '-o', 'scope'], tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    assert 'starter model gray' in res.stderr
    plan = load_options(str(tmp_path / 'scope' / 'finetune_plan.yml'))
    assert plan['network_g']['in_chans'] == 1
    assert all(plan['datasets'][k]['gray_channels'] and 'to_gray' not in plan['datasets'][k] for k in ('train', 'val'))
    assert 'trained on one colour channel of an RGB image per sample' in (tmp_path / 'scope' / 'model.md').read_text()
    deblur = subprocess.run(['mpt-deblur', '-opt', str(tmp_path / 'scope' / 'model.yml'), '-w',
                             str(tmp_path / 'scope' / 'model.pth'), '-i', str(tmp_path / 'sharp' / 'c0.tif'), '-o',
                             str(tmp_path / 'deblurred')], env=ENV, capture_output=True, text=True, timeout=300)
    assert deblur.returncode == 0, deblur.stderr[-2000:]
    assert tifffile.imread(tmp_path / 'deblurred' / 'c0.tif').shape == (80, 80, 3)
    rgb = plan_options(parse_args([*OPTICS, '--kind', 'rgb', '-o', str(tmp_path / 'r')]), [], 'rgb', 10)
    assert rgb['network_g']['in_chans'] == 3 and 'gray_channels' not in rgb['datasets']['train']
