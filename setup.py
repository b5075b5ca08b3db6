"""Installs the MPT/EFCR BasicSR plugin (CVPR 2024 microscopy defocus deblurring)."""

import os

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

# bioimage.io export (mpt-export-bioimageio); bioimageio.spec 0.5.12.0 (pinned by core 0.11.0) fails with pydantic 2.14
BIOIMAGEIO = ['bioimageio.core==0.11.0', 'pydantic==2.13.5', 'pydantic-core==2.46.5']
# napari plugin (mpt_deploy/napari_plugin): the viewer, its widget toolkit and a Qt binding
NAPARI = ['napari>=0.5', 'magicgui', 'npe2', 'PyQt5']

PACKAGES = ('mpt_common', 'mpt_arch', 'mpt_losses', 'mpt_data', 'mpt_models', 'mpt_metrics', 'mpt_plugin', 'mpt_deploy')

# Start-up hook that registers the plugin whenever `basicsr` is imported (see mpt_plugin/autoload.py).
AUTOLOAD_PTH = 'mpt_basicsr_plugin.pth'
AUTOLOAD_LINE = ("import os, importlib.util; os.environ.get('MPT_BASICSR_PLUGIN', '1').strip().lower() not in "
                 "('0', 'false', 'no', 'off') and importlib.util.find_spec('mpt_plugin') "
                 "and __import__('mpt_plugin.autoload')\n")


class BuildPyWithAutoload(build_py):
    """Also writes AUTOLOAD_PTH to the wheel root (site-packages), for regular and editable installs."""

    def run(self):
        super().run()
        # an editable wheel is assembled from install_lib; a regular one from build_lib
        editable = getattr(self, 'editable_mode', False)  # setuptools >= 64 (PEP 660)
        target = self.get_finalized_command('install').install_lib if editable else self.build_lib
        os.makedirs(target, exist_ok=True)
        with open(os.path.join(target, AUTOLOAD_PTH), 'w', encoding='utf-8') as handle:
            handle.write(AUTOLOAD_LINE)


setup(
    name='mpt-basicsr',
    version='0.1.0',
    description='Multi-Pyramid Transformer and EFCR for microscopy defocus deblurring, as a BasicSR plugin',
    long_description=open('README.md', encoding='utf-8').read(),
    long_description_content_type='text/markdown',
    python_requires='>=3.9',
    packages=find_packages(include=[f'{name}*' for name in PACKAGES]),
    install_requires=[
        'torch>=2.1',
        'torchvision',
        'basicsr==1.4.2',
        'pywavelets',
        'opencv-python',
        'lmdb',
        'pyyaml',
        'lpips',
        'einops',
        'tifffile',
        'tqdm',
        'scikit-image',
        'matplotlib',
    ],
    # the shipped starter models (weights, option file, reference output, model card; tools/train_starter_models.py)
    package_data={'mpt_deploy': ['starter_models/*.pth', 'starter_models/*.yml', 'starter_models/*.json',
                                 'starter_models/*.md'],
                  'mpt_deploy.napari_plugin': ['napari.yaml']},
    # test: pytest-xvfb runs the napari tests in a virtual display (Xvfb); mutation: tools/mutation_test.py
    extras_require={'test': ['pytest', 'pytest-qt', 'pytest-xvfb', 'ruff', *BIOIMAGEIO], 'bioimageio': BIOIMAGEIO,
                    'napari': NAPARI, 'mutation': ['mutmut==3.8.1', 'pytest']},
    cmdclass={'build_py': BuildPyWithAutoload},
    entry_points={'console_scripts': ['mpt-train = mpt_plugin.cli:train_main', 'mpt-test = mpt_plugin.cli:test_main',
                                      'mpt-deblur = mpt_deploy.deblur:main',
                                      'mpt-finetune = mpt_plugin.finetune:main',
                                      'mpt-export-bioimageio = mpt_deploy.bioimageio_export:main'],
                  'napari.manifest': ['mpt-basicsr = mpt_deploy.napari_plugin:napari.yaml']},
)
