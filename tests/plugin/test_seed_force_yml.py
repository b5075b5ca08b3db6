"""``--force_yml manual_seed=N`` seeds the run with N (BasicSR 1.4.2 seeds before applying ``--force_yml``)."""

import sys

import pytest
import torch

from mpt_plugin import patches
from mpt_plugin.smoke import smoke_options, write_options


def parsed_seed_draw(tmp_path, monkeypatch, *force: str):
    """Parse an option file (manual_seed 0) with ``--force_yml force...``; return the seed and a torch draw."""
    patches.apply()
    from basicsr.utils import options

    opt_file = write_options(str(tmp_path / 'opt.yml'), smoke_options(str(tmp_path / 'data'), val=False))
    argv = ['train.py', '-opt', opt_file] + (['--force_yml', *force] if force else [])
    monkeypatch.setattr(sys, 'argv', argv)
    torch.manual_seed(12345)  # a state that neither seed below produces
    opt, _ = options.parse_options(str(tmp_path), is_train=True)
    return opt['manual_seed'], torch.rand(4)


@pytest.mark.parametrize('seed', [1, 7])
def test_force_yml_manual_seed_seeds_the_run(tmp_path, monkeypatch, seed):
    recorded, draw = parsed_seed_draw(tmp_path, monkeypatch, f'manual_seed={seed}')
    assert recorded == seed
    torch.manual_seed(seed)
    assert torch.equal(draw, torch.rand(4))
    torch.manual_seed(0)  # the option file's seed, which BasicSR alone would have used
    assert not torch.equal(draw, torch.rand(4))


def test_option_file_seed_unchanged_without_force_yml(tmp_path, monkeypatch):
    recorded, draw = parsed_seed_draw(tmp_path, monkeypatch)
    assert recorded == 0
    torch.manual_seed(0)
    assert torch.equal(draw, torch.rand(4))
