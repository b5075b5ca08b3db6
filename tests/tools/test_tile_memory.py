"""tools/tile_memory.py measures what mpt-deblur --tile auto assumes: peak inference memory per pixel and feature."""

from tools import tile_memory


def test_measures_a_positive_figure_per_network_and_size(capsys, monkeypatch):
    monkeypatch.setitem(tile_memory.CONFIGS, 'paper (dim 40)', {'in_chans': 1, 'dim': 8, 'num_blocks': [1, 1],
                                                               'heads': [1, 2], 'scales': [[0.5], [1]]})
    assert tile_memory.main(['--sizes', '256']) == 0
    rows = [r for r in capsys.readouterr().out.splitlines() if r.startswith('| ') and 'x256' in r]
    assert len(rows) == len(tile_memory.CONFIGS)
    assert all(float(r.split('|')[4]) > 10 for r in rows), rows  # tens of bytes per pixel and feature, as measured
