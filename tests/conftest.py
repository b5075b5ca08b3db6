"""Shared test set-up: deterministic seeds and few threads so the suite runs on 2 cores.

Layout: one folder per package (``arch/``, ``losses/``, ``data/``, ``models/``, ``metrics/``, ``common/``,
``plugin/``, ``deploy/``), ``scripts/`` and ``tools/`` for the command files, ``project/`` for the docs and the
import layering; shared helpers in ``helpers/`` (importable as ``helpers``: pytest puts this folder on the path),
frozen inputs in ``fixtures/``.
"""

import os
import sys

import pytest
import torch

import mpt_common.basicsr_compat  # noqa: F401  (must precede any basicsr import)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:  # the maintainer tools are imported as the package ``tools``
    sys.path.append(REPO)

# intra-op threads per test process; mutation runs (several test processes at once) set 1
THREADS = int(os.environ.get('MPT_TEST_THREADS', '2'))


@pytest.fixture(autouse=True)
def _seed_and_threads():
    torch.manual_seed(0)
    torch.set_num_threads(THREADS)
    yield


@pytest.fixture
def one_thread():
    """Tiny networks run faster on one intra-op thread, above all when the 2 cores are shared."""
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(THREADS)


@pytest.fixture
def offline_torch_home(tmp_path, monkeypatch):
    """An empty $TORCH_HOME and a network that refuses downloads (records what was tried)."""
    import urllib.error

    import torch.hub

    from mpt_metrics import lpips_metric

    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch_home'))
    monkeypatch.setattr(lpips_metric, '_NETS', {})
    attempts = []

    def no_network(url, dst, *args, **kwargs):
        attempts.append(url)
        raise urllib.error.URLError('no network in this test')

    monkeypatch.setattr(torch.hub, 'download_url_to_file', no_network)
    return tmp_path / 'torch_home' / 'hub' / 'checkpoints' / 'alexnet-owt-7be5be79.pth', attempts


@pytest.fixture
def basicsr_log(caplog):
    """``caplog`` receiving BasicSR's root logger (``basicsr``, which does not propagate) from INFO up."""
    import logging

    logger = logging.getLogger('basicsr')
    logger.addHandler(caplog.handler)
    caplog.set_level(logging.INFO, logger='basicsr')
    yield caplog
    logger.removeHandler(caplog.handler)


@pytest.fixture
def fresh_basicsr_logger(monkeypatch):
    """BasicSR initialises its logger (and log file) once per process; give each run its own log file."""
    import logging

    import basicsr.utils.logger as basicsr_logger

    logger = logging.getLogger('basicsr')
    saved = list(logger.handlers)
    for handler in saved:
        logger.removeHandler(handler)
    monkeypatch.setattr(basicsr_logger, 'initialized_logger', {})
    yield
    for handler in list(logger.handlers):
        handler.close()
        logger.removeHandler(handler)
    for handler in saved:
        logger.addHandler(handler)
