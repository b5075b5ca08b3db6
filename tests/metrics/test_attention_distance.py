"""Normalised average attention distance (Fig. 1): known answers, the MPT CSWA hook, and the script end to end."""

import json
import math

import cv2
import numpy as np
import pytest
import torch

from helpers.scripts import load_script
from mpt_metrics.attention_distance import (
    mean_attention_distance,
    model_attention_distance,
    normalised_attention_distance,
)


def test_all_weight_on_one_key_gives_that_distance():
    attention = torch.tensor([[[0.0, 1.0, 0.0]]])  # 1 head, 1 query, 3 keys
    query_xy = torch.tensor([[[0.0, 0.0]]])
    key_xy = torch.tensor([[[1.0, 1.0], [3.0, 4.0], [9.0, 9.0]]])
    assert float(mean_attention_distance(attention, query_xy, key_xy)) == pytest.approx(5.0)
    # Normaliser: the map diagonal, hypot(30, 40) = 50.
    assert normalised_attention_distance(attention, query_xy, key_xy, (30, 40)) == pytest.approx(0.1)


def test_uniform_attention_and_averaging_over_queries():
    keys = torch.tensor([[-1.0, 0.0], [0.0, 0.0], [1.0, 0.0]])
    uniform = torch.full((2, 3), 1 / 3)
    queries = torch.tensor([[0.0, 0.0], [-1.0, 0.0]])  # mean distances 2/3 and (0 + 1 + 2)/3 = 1
    assert float(mean_attention_distance(uniform, queries, keys)) == pytest.approx((2 / 3 + 1) / 2)
    valid = torch.tensor([True, False])  # the second query is padding
    assert float(mean_attention_distance(uniform, queries, keys, valid)) == pytest.approx(2 / 3)


def test_batch_of_heads_broadcasts_positions_and_averages_heads():
    keys = torch.tensor([[0.0, 0.0], [0.0, 6.0]])
    queries = torch.tensor([[0.0, 0.0]])
    attention = torch.tensor([[[1.0, 0.0]], [[0.0, 1.0]], [[0.5, 0.5]]])  # heads: distances 0, 6, 3
    assert float(mean_attention_distance(attention, queries[None], keys[None])) == pytest.approx(3.0)


def test_bad_shapes_and_logits_raise():
    with pytest.raises(ValueError, match='does not match'):
        mean_attention_distance(torch.ones(1, 2, 3), torch.zeros(1, 3, 2), torch.zeros(1, 3, 2))
    with pytest.raises(ValueError, match='non-negative'):
        mean_attention_distance(-torch.ones(1, 1), torch.zeros(1, 2), torch.zeros(1, 2))


def _brute_force_uniform(map_size, ratio, window):
    """Mean distance of uniform attention over each region's key block centres, by explicit loops."""
    h, w = map_size
    region = ratio * window
    total = 0.0
    for y in range(h):
        for x in range(w):
            ry, rx = (y // region) * region, (x // region) * region
            keys = [(rx + i * ratio + (ratio - 1) / 2, ry + j * ratio + (ratio - 1) / 2)
                    for j in range(window) for i in range(window)]
            total += np.mean([math.hypot(x - kx, y - ky) for kx, ky in keys])
    return total / (h * w) / math.hypot(h, w)


@pytest.mark.parametrize('scale', [1.0, 0.5])
def test_cswa_hook_on_uniform_attention_matches_brute_force(scale):
    from mpt_arch import cswa as cswa_module
    layer = cswa_module.CrossScaleWindowAttention(dim=4, heads=1, scale=scale, window_size=4, shifted=False)
    with torch.no_grad():
        layer.q.weight.zero_()  # zero queries and zero bias: softmax of constant logits = uniform weights
        layer.rpb_table.zero_()
    result = model_attention_distance(layer, [torch.randn(1, 16, 16, 4)])
    assert result['mean'] == pytest.approx(_brute_force_uniform((16, 16), round(1 / scale), 4), rel=1e-5)
    assert layer.keep_attention is False and layer.last_attention is None  # hooks undone


def _tiny_mpt_yaml(path):
    path.write_text(
        'network_g:\n  type: MPT\n  in_chans: 1\n  dim: 8\n  num_blocks: [2, 2, 2, 2]\n  heads: [1, 1, 2, 2]\n'
        '  scales: [[0.5, 1], [0.5, 1], [0.5, 1], [1, 1]]\n  window_size: 4\n')


def test_script_end_to_end_on_tiny_mpt(tmp_path):
    rng = np.random.default_rng(0)
    for name in ('cells', 'scenes'):
        (tmp_path / name).mkdir()
    cv2.imwrite(str(tmp_path / 'cells' / 'a.png'), rng.integers(0, 65535, (20, 24), dtype=np.uint16))
    cv2.imwrite(str(tmp_path / 'cells' / 'b.png'), rng.integers(0, 65535, (20, 24), dtype=np.uint16))
    cv2.imwrite(str(tmp_path / 'scenes' / 'c.png'), rng.integers(0, 255, (18, 18, 3), dtype=np.uint8))
    _tiny_mpt_yaml(tmp_path / 'tiny.yml')
    script = load_script('attention_distance')
    out = tmp_path / 'fig1'
    assert script.main(['-opt', str(tmp_path / 'tiny.yml'), '--random-init', '--crop', '16',
                        '--dataset', f'cells={tmp_path / "cells"}', '--dataset', f'scenes={tmp_path / "scenes"}',
                        '--out-dir', str(out)]) == 0
    assert cv2.imread(str(out / 'attention_distance.png')) is not None
    summary = json.loads((out / 'attention_distance.json').read_text())
    assert summary['random_init'] is True
    assert summary['datasets']['cells']['images'] == 2
    for name in ('cells', 'scenes'):
        value = summary['datasets'][name]['mean']
        assert 0.0 < value < 1.0
        assert len(summary['datasets'][name]['per_layer']) == 14  # 7 pyramid blocks x 2 CSWA sub-blocks
    with pytest.raises(ValueError, match='--random-init'):
        script.main(['-opt', str(tmp_path / 'tiny.yml'), '--dataset', f'cells={tmp_path / "cells"}'])
