"""Option files are data: every entry point refuses ``!!python/...`` tags before anything runs (issue 18)."""

import os
import subprocess
import sys
from collections import OrderedDict
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from helpers import REPO
from helpers.scripts import load_script
from mpt_common.option_file import UnsafeOptionError, load_options, parse_option_text

ENV = {**os.environ, 'OMP_NUM_THREADS': '1'}
TAGS = {'apply': '!!python/object/apply:os.system ["touch {marker}"]',
        'name': '!!python/name:os.system'}


def _evil(tmp_path: Path, tag: str) -> tuple:
    """A smoke-sized option file whose 4th line carries ``tag``; returns (file, marker that must not appear)."""
    marker = tmp_path / 'PWNED'
    text = ('name: evil_run\nmodel_type: EFCRModel\nnum_gpu: 0\n'
            f'evil: {TAGS[tag].format(marker=marker)}\n'
            'network_g: {type: MPT, in_chans: 3, dim: 8}\n')
    path = tmp_path / 'evil.yml'
    path.write_text(text)
    return path, marker


def _assert_refused(message: str, path: Path, tag: str, marker: Path) -> None:
    assert str(path) in message and 'line 4' in message, message
    assert ('!!python/object/apply:os.system' if tag == 'apply' else '!!python/name:os.system') in message, message
    assert not marker.exists(), 'the command in the option file was run'


def _basicsr_script(name: str) -> Path:
    import basicsr

    return Path(basicsr.__file__).resolve().parent / name


@pytest.mark.parametrize('tag', sorted(TAGS))
def test_loader_refuses_python_tags_naming_file_line_and_tag(tmp_path, tag):
    path, marker = _evil(tmp_path, tag)
    with pytest.raises(UnsafeOptionError) as err:
        load_options(str(path))
    _assert_refused(str(err.value), path, tag, marker)
    with pytest.raises(UnsafeOptionError, match='given.yml, line 4'):
        parse_option_text(path.read_text(), 'given.yml')


def test_loader_keeps_order_floats_anchors_and_merge_keys():
    opt = parse_option_text('z: 1\na: !!float 1e-4\nb: 5e3\nbase: &base {k: 1, j: [1, 2]}\n'
                            'copy: *base\nmerged: {<<: *base, j: 3}\n')
    assert isinstance(opt, OrderedDict) and list(opt) == ['z', 'a', 'b', 'base', 'copy', 'merged']
    assert opt['a'] == 1e-4 and isinstance(opt['a'], float)
    assert opt['b'] == '5e3'  # YAML 1.1, as BasicSR reads it: hence the option files' !!float
    assert opt['copy'] == {'k': 1, 'j': [1, 2]} and isinstance(opt['copy'], OrderedDict)
    assert opt['merged'] == {'k': 1, 'j': 3}


@pytest.mark.parametrize('path', sorted((REPO / 'options').rglob('*.yml')), ids=lambda p: p.name)
def test_every_shipped_option_file_loads_as_before(path):
    # BasicSR 1.4.2's loader (full yaml.Loader + OrderedDict), rebuilt here because the plugin replaces it
    loader = yaml.CLoader if hasattr(yaml, 'CLoader') else yaml.Loader

    class Before(loader):
        pass

    Before.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
                           lambda ld, node: OrderedDict(ld.construct_pairs(node)))
    with open(path) as handle:
        before = yaml.load(handle, Loader=Before)
    assert load_options(str(path)) == before


def _run(args, cwd):
    return subprocess.run([sys.executable, *map(str, args)], cwd=cwd, env=ENV, capture_output=True, text=True,
                          timeout=300)


@pytest.mark.parametrize('tag', sorted(TAGS))
@pytest.mark.parametrize('script', ['train.py', 'test.py'])
def test_basicsr_own_scripts_refuse(tmp_path, script, tag):
    """BasicSR's installed train.py / test.py, with the plugin's auto-load hook only."""
    path, marker = _evil(tmp_path, tag)
    res = _run([_basicsr_script(script), '-opt', path], cwd=tmp_path)
    assert res.returncode != 0
    _assert_refused(res.stderr, path, tag, marker)
    assert 'Traceback' not in res.stderr  # one clear error line
    assert not (tmp_path / 'experiments').exists() and not (tmp_path / 'results').exists()


@pytest.mark.parametrize('tag', sorted(TAGS))
@pytest.mark.parametrize('entry', ['train_main', 'test_main'])
def test_mpt_train_and_mpt_test_refuse(tmp_path, monkeypatch, capsys, entry, tag):
    from mpt_plugin import cli

    monkeypatch.chdir(tmp_path)
    path, marker = _evil(tmp_path, tag)
    with pytest.raises(SystemExit) as err:
        getattr(cli, entry)(['-opt', str(path)])
    assert err.value.code == 2  # like argparse: an option problem, no traceback
    _assert_refused(capsys.readouterr().err, path, tag, marker)
    assert not (tmp_path / 'experiments').exists()


@pytest.mark.parametrize('tag', sorted(TAGS))
def test_mpt_deblur_refuses(tmp_path, capsys, tag):
    from mpt_deploy import deblur

    path, marker = _evil(tmp_path, tag)
    image = tmp_path / 'in.png'
    cv2.imwrite(str(image), np.zeros((16, 16, 3), np.uint8))
    argv = ['-opt', str(path), '-w', str(tmp_path / 'net.pth'), '-i', str(image), '-o', str(tmp_path / 'o')]
    assert deblur.main(argv) == 2  # an option-file problem, like a bad argument
    _assert_refused(capsys.readouterr().err, path, tag, marker)
    assert not (tmp_path / 'o').exists() or not any((tmp_path / 'o').iterdir())


@pytest.mark.parametrize('tag', sorted(TAGS))
def test_mpt_deblur_refuses_tags_in_net_opt_values(tmp_path, tag):
    from mpt_deploy import model_loading

    marker = tmp_path / 'PWNED'
    with pytest.raises(UnsafeOptionError, match='--net-opt'):
        model_loading.network_options(arch='MPT', net_opt=[f'dim={TAGS[tag].format(marker=marker)}'])
    assert not marker.exists()


@pytest.mark.parametrize('tag', sorted(TAGS))
def test_scripts_refuse(tmp_path, monkeypatch, tag):
    """report.py (option files and manifests), run_demo.py, attention_distance.py."""
    monkeypatch.chdir(tmp_path)
    path, marker = _evil(tmp_path, tag)
    calls = {
        'report': ['-opt', str(path), '--ckpt', f'm={tmp_path / "net.pth"}', '--no-lpips'],
        'report_manifest': ['--manifest', str(path), '--no-lpips'],
        'run_demo': ['--opt', str(path), '--data', str(tmp_path / 'demo_data'), '--threads', '1'],
        'attention_distance': ['--dataset', f'x={tmp_path}', '-opt', str(path), '--random-init'],
    }
    for name, argv in calls.items():
        script = load_script(name.split('_manifest')[0])
        with pytest.raises(UnsafeOptionError) as err:
            script.main(argv)
        _assert_refused(str(err.value), path, tag, marker)
    assert not (tmp_path / 'demo_data').exists()  # refused before the demo builds its data


def test_no_second_yaml_parsing_path():
    """Only mpt_plugin/option_file.py parses YAML in the package and its scripts (dumping is fine)."""
    import re

    offenders = []
    for path in sorted(REPO.glob('mpt_*/**/*.py')) + sorted((REPO / 'scripts').glob('*.py')):
        if path.name == 'option_file.py':
            continue
        text = path.read_text()
        if re.search(r'yaml\.(safe_|full_|unsafe_)?load(_all)?\(|ordered_yaml\(', text):
            offenders.append(str(path.relative_to(REPO)))
    assert not offenders, f'YAML parsed outside mpt_common.option_file: {offenders}'
