"""``benchmark.py --markdown``: the tables land between the markers of a docs page, with date, machine, torch
version and command under them; a page without markers is never overwritten."""

import pytest

from helpers.scripts import load_script

ENV = {'torch': '9.9.9', 'cpu': 'x86_64', 'device': 'cpu', 'threads': 2}


def test_tables_replace_the_marked_block_and_keep_the_page(tmp_path):
    bench = load_script('benchmark')
    page = tmp_path / 'performance.md'
    page.write_text(f'# Performance\n\nintro\n\n{bench.MARK_BEGIN}\nold table\n{bench.MARK_END}\n\nafter\n')
    bench.write_markdown(str(page), ['| a | b |\n|---|---|\n| 1 | 2 |'], ['note one'], ENV, ['--sizes', '256'])
    text = page.read_text()
    assert text.startswith('# Performance\n\nintro\n\n') and text.endswith('\n\nafter\n')
    assert 'old table' not in text and '| 1 | 2 |' in text and '- note one' in text
    assert 'torch 9.9.9' in text and '`python -m tools.benchmark --sizes 256`' in text and 'CPU cores' in text
    bench.write_markdown(str(page), ['| new |'], [], ENV, [])  # a second run replaces the block again
    assert page.read_text().count(bench.MARK_BEGIN) == 1 and '| 1 | 2 |' not in page.read_text()


def test_an_existing_file_without_markers_is_refused(tmp_path):
    bench = load_script('benchmark')
    page = tmp_path / 'notes.md'
    page.write_text('my notes\n')
    with pytest.raises(SystemExit, match='no <!-- benchmark:begin -->'):
        bench.write_markdown(str(page), ['| t |'], [], ENV, [])
    assert page.read_text() == 'my notes\n'
    fresh = tmp_path / 'new.md'
    bench.write_markdown(str(fresh), ['| t |'], [], ENV, [])
    assert fresh.read_text().startswith(bench.MARK_BEGIN)
