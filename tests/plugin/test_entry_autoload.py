"""The start-up hook registers the plugin in BasicSR without code changes, lazily and switchably."""

import os
import shutil
import site
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from helpers import REPO

REGISTERED = (
    "from basicsr.utils.registry import ARCH_REGISTRY as A, LOSS_REGISTRY as L, DATASET_REGISTRY as D, "
    "MODEL_REGISTRY as M, METRIC_REGISTRY as R\n"
    "names = {'MPT': A, 'EFCRLoss': L, 'BBBC006Dataset': D, 'PairedDefocusDataset': D, "
    "'UnlabeledDefocusDataset': D, 'EFCRModel': M, 'calculate_lpips': R, 'calculate_sharpness': R}\n"
    "missing = [n for n, reg in names.items() if n not in reg]\n"
)


def _python(code, env=None, cwd=None):
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, env=full_env, cwd=cwd,
                          timeout=120)


def test_startup_is_lazy_then_plain_basicsr_import_registers_everything():
    res = _python("import sys; assert 'torch' not in sys.modules, 'torch imported at start-up'\n"
                  "assert 'basicsr' not in sys.modules\n"
                  "assert any(type(f).__name__ == 'BasicsrImportHook' for f in sys.meta_path), sys.meta_path\n"
                  'import basicsr\n' + REGISTERED + "assert not missing, missing\n"
                  "import basicsr.models.base_model as b; assert b.BaseModel.model_to_device._mpt_patched")
    assert res.returncode == 0, res.stderr


def test_env_switch_disables_registration():
    code = ('import sys\nassert not any(type(f).__name__ == "BasicsrImportHook" for f in sys.meta_path)\n'
            "assert 'mpt_plugin' not in sys.modules, 'the .pth line must be inert when switched off'\n"
            'import mpt_common.basicsr_compat, basicsr\n' + REGISTERED
            + "assert 'MPT' in missing and 'EFCRModel' in missing\n")
    res = _python(code, env={'MPT_BASICSR_PLUGIN': '0'})
    assert res.returncode == 0, res.stderr


def test_explicit_plugin_import_first_still_registers_the_others():
    res = _python('import mpt_losses\nfrom basicsr.utils.registry import ARCH_REGISTRY\n'
                  "assert ARCH_REGISTRY.get('MPT').__name__ == 'MPT'\n" + REGISTERED + 'assert not missing, missing')
    assert res.returncode == 0, res.stderr


def test_broken_plugin_package_warns_and_basicsr_still_works(tmp_path):
    broken = tmp_path / 'mpt_data'
    broken.mkdir()
    (broken / '__init__.py').write_text("raise RuntimeError('simulated broken plugin')\n")
    res = _python('import warnings\nwith warnings.catch_warnings(record=True) as caught:\n'
                  "    warnings.simplefilter('always')\n    import basicsr\n"
                  "assert any('mpt_data' in str(w.message) and 'simulated' in str(w.message) for w in caught), caught\n"
                  + REGISTERED + "assert 'PairedDefocusDataset' in missing and 'MPT' not in missing, missing\n"
                  "assert 'L1Loss' in L\n", env={'PYTHONPATH': str(tmp_path)}, cwd=tmp_path)
    assert res.returncode == 0, res.stderr


def test_editable_install_placed_the_pth_in_site_packages():
    pth = [Path(d) / 'mpt_basicsr_plugin.pth' for d in site.getsitepackages()]
    pth = [p for p in pth if p.is_file()]
    assert pth, 'mpt_basicsr_plugin.pth missing: run `pip install -e .`'
    assert 'mpt_plugin.autoload' in pth[0].read_text()


@pytest.mark.skipif(shutil.which('git') is None, reason='needs git to list the tracked sources')
def test_regular_and_editable_wheels_carry_the_pth(tmp_path):
    src = tmp_path / 'src'
    files = subprocess.run(['git', 'ls-files'], cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    for name in files + [str(p.relative_to(REPO)) for p in REPO.glob('mpt_*/*.py')]:
        if (REPO / name).is_file() and not name.startswith(('tests/', '.')):
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(REPO / name, src / name)
    build = subprocess.run([sys.executable, '-m', 'pip', 'wheel', '-q', '--no-deps', '--no-build-isolation', '-w',
                            str(tmp_path / 'dist'), str(src)], capture_output=True, text=True, timeout=180)
    assert build.returncode == 0, build.stderr
    wheel = next((tmp_path / 'dist').glob('mpt_basicsr-*.whl'))
    with zipfile.ZipFile(wheel) as archive:
        assert 'mpt_basicsr_plugin.pth' in archive.namelist()  # wheel root = site-packages
        assert 'mpt_plugin.autoload' in archive.read('mpt_basicsr_plugin.pth').decode()
    # the editable (PEP 660) wheel carries it too
    editable = subprocess.run([sys.executable, '-c', 'import sys; from setuptools import build_meta; '
                               f'print(build_meta.build_editable({str(tmp_path / "edist")!r}))'],
                              cwd=src, capture_output=True, text=True, timeout=180)
    assert editable.returncode == 0, editable.stderr[-2000:]
    with zipfile.ZipFile(tmp_path / 'edist' / editable.stdout.split()[-1]) as archive:
        assert 'mpt_plugin.autoload' in archive.read('mpt_basicsr_plugin.pth').decode()
    target = tmp_path / 'target'
    install = subprocess.run([sys.executable, '-m', 'pip', 'install', '-q', '--no-deps', '--target', str(target),
                              str(wheel)], capture_output=True, text=True, timeout=180)
    assert install.returncode == 0, install.stderr
    assert (target / 'mpt_basicsr_plugin.pth').is_file() and (target / 'mpt_plugin' / 'autoload.py').is_file()
    # only the installed copy and the system site dirs (processed after it) are on the path: its .pth arms the hook
    code = (f"import site, sys; site.addsitedir({str(target)!r})\n"
            f"for d in {site.getsitepackages()!r}: site.addsitedir(d)\n"
            "hooks = [f for f in sys.meta_path if type(f).__name__ == 'BasicsrImportHook']\n"
            f"assert hooks and sys.modules[type(hooks[0]).__module__].__file__.startswith({str(target)!r})\n")
    res = subprocess.run([sys.executable, '-S', '-c', code], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert res.returncode == 0, res.stderr
