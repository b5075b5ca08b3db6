"""The miniature dataset replicas of :mod:`helpers.layouts` follow the published layouts."""

import os

import numpy as np
import tifffile

from helpers.layouts import make_bbbc006


def test_bbbc006_replica_follows_published_naming(tmp_path):
    """The replica uses the published folder/file pattern and different identifiers per plane."""
    from mpt_data.bbbc006_dataset import FILE_PATTERN

    make_bbbc006(tmp_path, wells=('a01',), sites=('1',), channels=('1',))
    names = {p: os.listdir(tmp_path / f'BBBC006_v1_images_z_{p:02d}') for p in (2, 16)}
    assert all(FILE_PATTERN.match(n[0]) for n in names.values())
    assert names[2][0] != names[16][0]  # file names differ, the (well, site, channel) does not
    img = tifffile.imread(tmp_path / 'BBBC006_v1_images_z_16' / names[16][0])
    assert img.dtype == np.uint16
