"""tools/benchmark_quality.py: the oracle deconvolutions restore a known blur; tables hold every row."""

import cv2
import numpy as np

from helpers.scripts import load_script
from mpt_data.psf import disk_psf, gaussian_psf


def _scene():
    rng = np.random.default_rng(0)
    img = cv2.resize(rng.random((12, 12)).astype(np.float32), (64, 64), interpolation=cv2.INTER_NEAREST)
    return (0.1 + 0.8 * img)[:, :, None]


def test_oracles_given_the_true_psf_recover_detail():
    bench = load_script('benchmark_quality')
    sharp = _scene()
    for psf in (disk_psf(2.5), gaussian_psf(1.2)):
        blurry = cv2.filter2D(sharp, -1, psf, borderType=cv2.BORDER_REFLECT_101)[:, :, None]
        base = bench.scores(blurry, sharp, False)['psnr']
        assert bench.scores(bench.richardson_lucy(blurry, psf, 40), sharp, False)['psnr'] > base + 0.5
        assert bench.scores(bench.wiener(blurry, psf, 1e-3), sharp, False)['psnr'] > base + 0.5
        # a wrong PSF (another size) must do worse than the true one: the oracle really uses it
        wrong = disk_psf(5.0)
        assert (bench.scores(bench.richardson_lucy(blurry, wrong, 40), sharp, False)['psnr']
                < bench.scores(bench.richardson_lucy(blurry, psf, 40), sharp, False)['psnr'])


def test_tables_list_every_condition_method_gain_and_worst_image():
    bench = load_script('benchmark_quality')
    score = {'psnr': 30.0, 'ssim': 0.9}
    conds = ['photos lowNA/low', 'scenes highNA/high']
    rows = {m: {conds[0]: [dict(score), dict(score, psnr=32.0)], conds[1]: [dict(score, psnr=20.0)]}
            for m in ('input', 'richardson_lucy', 'wiener')}
    rows['starter'] = {conds[0]: [dict(score, psnr=33.0), dict(score, psnr=31.5)], conds[1]: [dict(score, psnr=23.0)]}
    res = {'conditions': conds, 'rows': rows, 'networks': ['starter'], 'counts': {conds[0]: 2, conds[1]: 1},
           'names': {conds[0]: ['moon_s0', 'moon_s1'], conds[1]: ['procedural_00000_s0']},
           'tuned': {c: {'rl_iterations': 5, 'wiener_balance': 0.1} for c in conds}}
    (table,) = bench.tables({'gray': res})
    lines = [line for line in table.splitlines() if line.startswith('| ')]
    assert lines[0] == '| condition | pairs | input | richardson_lucy | wiener | starter | starter - input |'
    assert '| photos lowNA/low | 2 | 31.00 | 31.00 | 31.00 | 32.25 | +1.25 |' in lines
    assert '| scenes highNA/high | 1 | 20.00 | 20.00 | 20.00 | 23.00 | +3.00 |' in lines
    assert '| **all (PSNR)** | 3 | 27.33 | 27.33 | 27.33 | 29.17 | +1.83 |' in lines
    assert '`starter`: worst image moon_s1 (photos lowNA/low): -0.50 dB over the input; images worse than the ' \
           'input: 1 of 3.' in table
    assert 'scenes highNA/high: 5 it, 0.1' in table


def test_a_baseline_equal_to_the_shipped_model_gets_no_column(tmp_path):
    import shutil

    from mpt_deploy.starter_models import starter_model

    bench = load_script('benchmark_quality')
    same, other = tmp_path / 'same', tmp_path / 'other'
    same.mkdir()
    other.mkdir()
    shutil.copyfile(starter_model('gray').weights, same / 'MPT_starter_gray.pth')
    (other / 'MPT_starter_gray.pth').write_bytes(b'other weights')
    assert bench.distinct_baselines('gray', {'v_same': str(same), 'v_other': str(other)}) == ['v_other']


def test_figure_leaves_blank_the_columns_a_kind_lacks(tmp_path, monkeypatch):
    """Two kinds with different baseline columns (a version changed only one model) still make one figure."""
    import matplotlib.axes

    from mpt_data.synthetic_defocus_dataset import SyntheticPair

    bench = load_script('benchmark_quality')
    drawn = []

    original = matplotlib.axes.Axes.imshow
    monkeypatch.setattr(matplotlib.axes.Axes, 'imshow', lambda ax, img, **kw: drawn.append(img.shape) or
                        original(ax, img, **kw))

    def result(channels, networks):
        gt = np.full((32, 32, channels), 0.5, np.float32)
        pair = SyntheticPair(gt, gt, np.ones((1, 1)), {}, 'x')
        outs = {name: gt for name in ['input', 'richardson_lucy', 'wiener', *networks]}
        return {'networks': networks, 'examples': {c: (pair, outs) for c in ('scenes highNA/low', 'photos lowNA/high')}}

    path = tmp_path / 'fig.png'
    bench.figure({'gray': result(1, ['starter @v1', 'starter @v2', 'starter']),
                  'rgb': result(3, ['starter @v1', 'starter'])}, str(path))
    assert path.stat().st_size > 0
    # 4 rows x (3 oracles/input + sharp): gray rows show 3 networks, rgb rows 2 (the @v2 cell blank)
    assert len(drawn) == 2 * (4 + 3) + 2 * (4 + 2)


def test_tune_split_scores_tune_images_apart_from_oracle_seeds_and_rgb_gets_the_gray_model_per_channel(monkeypatch):
    from mpt_data.synthetic_defocus_dataset import SyntheticPair

    bench = load_script('benchmark_quality')
    calls = []

    def fake_pairs(source, kind, optics, noise, pairs_per_image, crop, seed, label):
        calls.append((source, seed, label))
        rng = np.random.default_rng(seed)
        gt = rng.random((24, 24, 3)).astype(np.float32)
        return [SyntheticPair(0.5 * gt + 0.25, gt, np.ones((1, 1)), {}, f'{label}_{seed}')]

    monkeypatch.setattr(bench, 'make_pairs', fake_pairs)
    monkeypatch.setattr(bench, 'tune', lambda pairs: {'rl_iterations': 1, 'wiener_balance': 0.1})
    res = bench.run(['rgb'], '/data', [], 1, 24, 1, split='tune')['rgb']
    assert res['networks'] == ['starter', 'starter gray per channel'] and res['default'] == 'starter gray per channel'
    tuning, scored = calls[0::2], calls[1::2]  # per condition: the oracles' pairs, then the scored ones
    photos = [src['dataroot_gt'] for src, _, label in scored if 'dataroot_gt' in src]
    assert photos and all(p == '/data/rgb/tune' for p in photos)
    assert not {seed for _, seed, _ in tuning} & {seed for _, seed, _ in scored}
    assert min(seed for _, seed, _ in scored) >= 60000  # none of the held-out seeds (0-1101)
    scores = res['rows']['starter gray per channel']['photos lowNA/low']
    assert np.isfinite(scores[0]['psnr'])
    (table,) = bench.tables({'rgb': res})  # the gain column is the default's, not the RGB model's
    assert '| starter | starter gray per channel | starter gray per channel - input |' in table
    gain = scores[0]['psnr'] - res['rows']['input']['photos lowNA/low'][0]['psnr']
    assert f'| {gain:+.2f} |' in next(line for line in table.splitlines() if line.startswith('| photos lowNA/low'))


def test_markdown_refuses_tune_scores():
    import pytest

    bench = load_script('benchmark_quality')
    with pytest.raises(SystemExit):
        bench.main(['--split', 'tune', '--markdown', 'page.md'])
