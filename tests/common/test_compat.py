"""The torchvision shim lets BasicSR 1.4.2 import, and does not import torch at install time."""

import subprocess
import sys


def test_basicsr_imports_with_shim():
    import basicsr.data.degradations as degradations
    import torchvision.transforms.functional as functional

    assert degradations.rgb_to_grayscale is functional.rgb_to_grayscale


def test_shim_is_idempotent_and_lazy():
    code = (
        'import sys, mpt_common.basicsr_compat as c; c.install(); c.install();'
        'n = sum(type(f).__name__ == "_FunctionalTensorAlias" for f in sys.meta_path);'
        'assert n == 1, n; assert "torch" not in sys.modules, "torch imported at install"'
    )
    subprocess.run([sys.executable, '-c', code], check=True)

