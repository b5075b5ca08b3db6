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


def test_tables_list_every_method_and_condition():
    bench = load_script('benchmark_quality')
    score = {'psnr': 30.0, 'ssim': 0.9}
    res = {'conditions': ['disk/none', 'disk/high'],
           'rows': {m: {'disk/none': [score], 'disk/high': [dict(score, psnr=20.0)]}
                    for m in ('input', 'richardson_lucy', 'wiener', 'starter')},
           'tuned': {'disk/none': {'rl_iterations': 80, 'wiener_balance': 0.001},
                     'disk/high': {'rl_iterations': 5, 'wiener_balance': 0.1}}, 'n_pairs': 1}
    (table,) = bench.tables({'gray': res})
    lines = [line for line in table.splitlines() if line.startswith('| ')]
    assert [line.split(' | ')[0][2:] for line in lines[1:]] == ['input', 'richardson_lucy', 'wiener', 'starter']
    assert '| input | 30.00 | 20.00 | 25.00 | 0.9000 |' in table
    assert 'disk/high: 5 it, 0.1' in table
