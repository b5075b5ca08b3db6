"""tools/mutation_test.py: equivalents file, counting and the module-to-tests map (no mutmut run)."""

import os

import pytest

from helpers import REPO
from helpers.scripts import load_script

ROOT = str(REPO)


def test_every_listed_module_and_test_file_exists():
    script = load_script('mutation_test')
    for module, tests in script.MODULE_TESTS.items():
        assert os.path.isfile(os.path.join(ROOT, module)), module
        for test in tests:
            assert os.path.isfile(os.path.join(ROOT, test)), test
    assert script.read_equivalents() is not None  # the shipped file parses


def test_equivalents_file_format_is_checked(tmp_path):
    script = load_script('mutation_test')
    bad = tmp_path / 'eq.txt'
    bad.write_text('# comment\nm__mutmut_1 | x = 1\n')
    with pytest.raises(ValueError, match='eq.txt:2'):
        script.read_equivalents(str(bad))
    good = tmp_path / 'ok.txt'  # a mutated line may hold ' | ' itself (bitwise or)
    good.write_text('m__mutmut_2 | a = (b | c) | (d | e) | the reason\n')
    assert script.read_equivalents(str(good)) == {'m__mutmut_2': ('a = (b | c) | (d | e)', 'the reason')}


def test_summary_counts_and_stale_equivalents():
    script = load_script('mutation_test')
    result = {'statuses': {'f__mutmut_1': 'killed', 'f__mutmut_2': 'survived', 'f__mutmut_3': 'survived',
                           'f__mutmut_4': 'timeout', 'f__mutmut_5': 'no tests', 'f__mutmut_6': 'not checked'},
              'diffs': {'f__mutmut_2': '--- a\n+++ b\n-    y = x\n+    y = x * 1\n',
                        'f__mutmut_3': '--- a\n+++ b\n-    z = 0\n+    z = 1\n',
                        'f__mutmut_5': '+ q = 2\n'}}
    eq = {'f__mutmut_2': ('y = x * 1', 'multiplying by one'), 'f__mutmut_3': ('z = 2', 'stale: another line')}
    summary = script.summarise(result, eq)
    c = summary['counts']
    assert (c['generated'], c['killed'], c['survived'], c['equivalent'], c['timeout'], c['no tests'], c['not run']) \
        == (6, 2, 1, 1, 1, 1, 1)
    assert summary['survivors'] == ['f__mutmut_3', 'f__mutmut_5']
    assert c['killed %'] == pytest.approx(100 * 2 / 4)
