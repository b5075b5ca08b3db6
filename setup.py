"""Installs the MPT/EFCR BasicSR plugin (CVPR 2024 microscopy defocus deblurring)."""

from setuptools import find_packages, setup

PACKAGES = ('mpt_arch', 'mpt_losses', 'mpt_data', 'mpt_models', 'mpt_metrics', 'mpt_plugin')

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
    extras_require={'test': ['pytest', 'ruff']},
)
