"""options/ablation/*.yml: each is the BBBC006 w1 training file with only name and network_g changed, its
network_g names the paper's table row (Tables 3, 4, 9, 10) and builds through BasicSR's registry."""

from pathlib import Path

import pytest
import torch
import yaml

from helpers import REPO as ROOT
from mpt_arch import MPT

BASE = ROOT / 'options' / 'train_MPT_BBBC006_w1.yml'
FILES = sorted((ROOT / 'options' / 'ablation').glob('*.yml'))
PAPER_SCALES = [[1 / 8, 1 / 8, 1 / 4, 1 / 4, 1, 1], [1 / 4, 1 / 4, 1 / 2, 1 / 2, 1, 1],
                [1 / 2, 1 / 2, 1 / 2, 1 / 2, 1, 1], [1 / 2, 1 / 2, 1 / 2, 1 / 2, 1, 1]]
# table row (file name prefix) -> network_g keys that differ from the paper configuration (from the paper's text)
ROWS = {
    'T3_V1': dict(attention='cswa+cswa'),
    'T3_V2': dict(attention='wa+wa'),
    'T3_V3': dict(attention='isca+isca'),
    'T3_V4': dict(attention='wa+isca'),
    'T4_V1': dict(ffn='cat_gelu'),
    'T4_V2': dict(ffn='add_gelu'),
    'T4_V3': dict(ffn='reversed'),
    'T9_Vds1': dict(downsample='no_shortcut'),
    'T9_Vds2': dict(downsample='no_linear'),
    'T9_Vds3': dict(downsample='maxpool'),
    'T9_Vds4': dict(downsample='conv'),
    'T9_Vds5': dict(downsample='bicubic'),
    'T9_Vwo_npc': dict(npconv=False),
    'T9_Vwo_sw': dict(shift_windows=False),
    'T10_V1': dict(scales=[[1] * 6] * 4),
    'T10_V2': dict(scales=[[1 / 16, 1 / 16, 1 / 8, 1 / 8, 1, 1], [1 / 8, 1 / 8, 1 / 4, 1 / 4, 1, 1],
                           [1 / 4, 1 / 4, 1 / 2, 1 / 2, 1, 1], [1 / 4, 1 / 4, 1 / 2, 1 / 2, 1, 1]]),
    'T10_V3': dict(scales=[[1 / 4, 1 / 4, 1 / 2, 1 / 2, 1, 1], [1 / 2, 1 / 2, 1 / 2, 1 / 2, 1, 1],
                           [1 / 2, 1 / 2, 1 / 2, 1 / 2, 1, 1], [1 / 2, 1 / 2, 1 / 2, 1 / 2, 1, 1]]),
}


def _load(path: Path) -> dict:
    with open(path) as f:
        return yaml.safe_load(f)


def _row(path: Path) -> str:
    matches = [row for row in ROWS if path.stem == row or path.stem.startswith(row + '_')]
    assert len(matches) == 1, f'{path.name} does not name exactly one table row'
    return matches[0]


def test_every_row_has_one_file():
    assert sorted(_row(p) for p in FILES) == sorted(ROWS)


@pytest.mark.parametrize('path', FILES, ids=lambda p: p.stem)
def test_file_matches_its_table_row(path):
    base, opt = _load(BASE), _load(path)
    assert opt['name'] != base['name'] and path.stem in opt['name']
    for key in set(base) | set(opt):
        if key not in ('name', 'network_g'):
            assert opt.get(key) == base.get(key), f'{path.name}: {key} differs from {BASE.name}'
    assert base['network_g']['scales'] == PAPER_SCALES
    expected = {**base['network_g'], **ROWS[_row(path)]}
    assert opt['network_g'] == expected
    assert f'options/ablation/{path.name}' in path.read_text()  # the train command in its header


@pytest.mark.parametrize('path', FILES, ids=lambda p: p.stem)
def test_file_builds_through_registry(path):
    from basicsr.archs import build_network

    torch.set_num_threads(1)
    net_opt = dict(_load(path)['network_g'])
    net_opt['dim'] = 8  # tiny sizes; the row's keywords, scales, blocks, heads and window stay as in the file
    net = build_network(net_opt)
    assert isinstance(net, MPT)
    row = ROWS[_row(path)]
    if 'scales' in row:
        assert [b.cswa.ratio for b in net.latent.blocks] == [round(1 / s) for s in row['scales'][3]]
        assert [b.cswa.ratio for b in net.encoders[0].blocks] == [round(1 / s) for s in row['scales'][0]]
    x = torch.rand(1, net_opt['in_chans'], 21, 19)
    with torch.no_grad():
        y = net(x)
    assert y.shape == x.shape and torch.isfinite(y).all()
