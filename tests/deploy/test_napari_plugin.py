"""napari plugin ``mpt-basicsr``: manifest, the Deblur widget in a real viewer (headless: Xvfb), sample data.

The widget must give ``mpt-deblur``'s numbers for the same data (2-D 16-bit, a 3-plane stack), stop on Cancel and
report a bad model file as a notification. Needs the ``[napari]`` extra (CI installs it).
"""

import os

import numpy as np
import pytest
import tifffile
import torch
import yaml

napari = pytest.importorskip('napari')
pytest.importorskip('pytestqt')

from basicsr.archs import build_network  # noqa: E402

from mpt_deploy import deblur  # noqa: E402
from mpt_deploy.napari_plugin import model_sources, sample_data  # noqa: E402
from mpt_deploy.napari_plugin.model_sources import LoadedModel, ModelSourceError, ModelSpec, layer_image  # noqa: E402
from mpt_deploy.napari_plugin.widget import DeblurWidget  # noqa: E402
from mpt_plugin.smoke import TINY_MPT  # noqa: E402

# opencv-python (imported with basicsr) points Qt at its own platform plugins; PyQt5's must win
os.environ.pop('QT_QPA_PLATFORM_PLUGIN_PATH', None)

pytestmark = pytest.mark.usefixtures('one_thread')


def _scene(shape, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:shape[-2], :shape[-1]]
    img = 3000 + 2500 * np.sin(yy / 4.0) * np.cos(xx / 6.0) + rng.normal(0, 200, shape)
    return np.clip(np.round(img), 0, 65535).astype(np.uint16)


@pytest.fixture
def viewer(qtbot):
    v = napari.Viewer(show=False)
    yield v
    v.close()


@pytest.fixture
def widget(viewer):
    _dock, w = viewer.window.add_plugin_dock_widget('mpt-basicsr', 'Deblur')
    return w


def _run(qtbot, w, layer, timeout=60000):
    w.image.reset_choices()
    w.image.value = layer
    w.start()
    qtbot.waitUntil(lambda: w.worker is None, timeout=timeout)


def _messages(monkeypatch):
    import napari.utils.notifications as notifications

    seen = []
    monkeypatch.setattr(notifications, 'show_error', lambda msg: seen.append(('error', msg)))
    monkeypatch.setattr(notifications, 'show_info', lambda msg: seen.append(('info', msg)))
    return seen


def test_manifest_validates_and_its_commands_import():
    from npe2 import PluginManifest

    manifest = PluginManifest.from_distribution('mpt-basicsr')
    assert manifest.name == 'mpt-basicsr'
    manifest.validate_imports()  # every python_name resolves
    assert [w.display_name for w in manifest.contributions.widgets] == ['Deblur']
    assert {s.key for s in manifest.contributions.sample_data} == {'cell', 'fluorescence'}


def test_layer_axes_follow_mpt_deblur_stacks():
    assert layer_image(np.zeros((5, 6)), False, 'a').axes == 'YX'
    assert layer_image(np.zeros((5, 6, 3)), True, 'a').axes == 'YXS'
    assert layer_image(np.zeros((2, 3, 5, 6)), False, 'a').axes == 'TZYX'
    with pytest.raises(ModelSourceError, match="Layer 'a' has shape"):
        layer_image(np.zeros(5), False, 'a')


def test_widget_docks_by_name_and_deblurs_16_bit_like_mpt_deblur(qtbot, viewer, widget, tmp_path, capsys,
                                                                  monkeypatch):
    assert isinstance(widget, DeblurWidget)
    img = _scene((70, 90))
    tifffile.imwrite(tmp_path / 'plane.tif', img)
    assert deblur.main(['-i', str(tmp_path / 'plane.tif'), '-o', str(tmp_path / 'out')]) == 0
    clipped_line = next(line for line in capsys.readouterr().err.splitlines() if 'clipped to 0' in line)
    expected = tifffile.imread(tmp_path / 'out' / 'plane.tif')
    seen = _messages(monkeypatch)
    layer = viewer.add_image(img, name='plane', scale=(0.1, 0.2), translate=(3, 4), metadata={'z_um': 1.5})
    _run(qtbot, widget, layer)
    out = viewer.layers['plane deblurred']
    assert out.data.dtype == np.uint16 and np.array_equal(out.data, expected)
    assert not np.array_equal(out.data, img)  # the starter model changed the image
    assert tuple(out.scale) == (0.1, 0.2) and tuple(out.translate) == (3, 4) and out.metadata == {'z_um': 1.5}
    assert widget.progress.value == widget.progress.max >= 1
    # the dark troughs undershoot 0: the widget reports the clipped values as mpt-deblur does
    counts = clipped_line.split(': ', 2)[2].split(' (')[0]  # '<low> value(s) clipped to 0, <high> to 65535'
    assert widget.status.value.startswith(f"'plane deblurred': {counts} (") and ('info', widget.status.value) in seen


def test_a_package_counts_the_values_it_clips():
    class Shift(torch.nn.Module):
        def forward(self, x):
            return x * 2 - 100

    clipped = {}
    img = np.array([[10, 40000], [60000, 100]], np.uint16)
    out = model_sources.PackageModel(Shift(), 1, 'fake.zip').deblur(layer_image(img, False, 'a'), 'auto', None, clipped)
    assert clipped == {'low': 1, 'high': 2} and out.tolist() == [[0, 65535], [65535, 100]]


def test_a_three_plane_stack_gives_mpt_deblur_numbers_plane_by_plane(qtbot, viewer, widget, tmp_path, monkeypatch):
    from mpt_common import tiling

    stack = np.stack([_scene((48, 56), seed) for seed in range(3)])
    tifffile.imwrite(tmp_path / 'stack.tif', stack)
    assert deblur.main(['-i', str(tmp_path / 'stack.tif'), '-o', str(tmp_path / 'out'), '--axes', 'ZYX']) == 0
    expected = tifffile.imread(tmp_path / 'out' / 'stack.tif')
    reads = []
    real_free_memory = tiling.free_memory
    monkeypatch.setattr(tiling, 'free_memory', lambda device: reads.append(device) or real_free_memory(device))
    _run(qtbot, widget, viewer.add_image(stack, name='stack'))
    out = viewer.layers['stack deblurred'].data
    assert out.shape == stack.shape and np.array_equal(out, expected)
    assert widget.progress.max == 3  # one network call per plane (one tile each)
    assert len(reads) == 1  # the tile is resolved once per run: the progress total counts the tiles that run


def test_cancel_stops_and_adds_nothing(qtbot, viewer, widget, monkeypatch):
    seen = _messages(monkeypatch)
    layer = viewer.add_image(_scene((400, 400)), name='big')
    assert widget.auto_tile.value and widget.tile.native.isHidden()  # the default: mpt-deblur's --tile auto
    widget.auto_tile.value = False
    assert not widget.tile.native.isHidden()  # a fixed tile size is asked for
    widget.tile.value = 128  # 81 tiles: seconds of work
    widget.image.reset_choices()
    widget.image.value = layer
    widget.start()
    widget.cancel()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=60000)
    assert [layer.name for layer in viewer.layers] == ['big']
    assert widget.status.value == 'cancelled' and ('info', 'Deblur: cancelled; nothing was added.') in seen
    assert widget.progress.value < widget.progress.max
    assert widget.run_button.enabled and not widget.cancel_button.enabled


def test_a_bad_model_file_is_a_notification(qtbot, viewer, widget, monkeypatch, tmp_path):
    seen = _messages(monkeypatch)
    bad = tmp_path / 'broken.pth'
    bad.write_bytes(b'not a checkpoint')
    opt = tmp_path / 'net.yml'
    opt.write_text(yaml.safe_dump({'network_g': dict(TINY_MPT)}), encoding='utf-8')
    widget.source.value = 'options + weights'
    widget.option_file.value, widget.weights.value = str(opt), str(bad)
    _run(qtbot, widget, viewer.add_image(_scene((32, 32)), name='x'))
    assert len(viewer.layers) == 1
    assert seen and seen[-1][0] == 'error' and 'broken.pth' in seen[-1][1], seen
    widget.weights.value = str(tmp_path / 'missing.pth')  # refused before any thread starts
    widget.start()
    assert widget.worker is None and 'missing.pth' in seen[-1][1] and 'does not exist' in seen[-1][1]


def test_options_weights_and_model_folder_match_mpt_deblur(tmp_path):
    torch.manual_seed(1)
    state = build_network(dict(TINY_MPT)).state_dict()
    folder = tmp_path / 'my_model'
    folder.mkdir()
    torch.save({'params': state}, folder / 'model.pth')
    (folder / 'model.yml').write_text(yaml.safe_dump({'network_g': dict(TINY_MPT)}), encoding='utf-8')
    img = _scene((40, 44), 5)
    tifffile.imwrite(tmp_path / 'a.tif', img)
    assert deblur.main(['-opt', str(folder / 'model.yml'), '-w', str(folder / 'model.pth'), '-i',
                        str(tmp_path / 'a.tif'), '-o', str(tmp_path / 'out')]) == 0
    expected = tifffile.imread(tmp_path / 'out' / 'a.tif')
    for spec in (ModelSpec('model folder', folder=str(folder)),
                 ModelSpec('options + weights', options=str(folder / 'model.yml'), weights=str(folder / 'model.pth'))):
        assert np.array_equal(LoadedModel(spec).deblur(layer_image(img, False, 'a')), expected)
    with pytest.raises(ModelSourceError, match='has no model.yml'):
        ModelSpec('model folder', folder=str(tmp_path)).check()


def test_a_bioimageio_package_of_this_plugin_deblurs_a_layer(tmp_path):
    from mpt_deploy import bioimageio_export as exporter

    torch.manual_seed(2)
    state = build_network(dict(TINY_MPT)).state_dict()
    state['conv_out.weight'].mul_(0.05)
    torch.save({'params': state}, tmp_path / 'net.pth')
    opt = tmp_path / 'net.yml'
    opt.write_text(yaml.safe_dump({'network_g': dict(TINY_MPT), 'datasets': {
        'train': {'name': 't', 'type': 'PairedDefocusDataset'}}}), encoding='utf-8')
    card = tmp_path / 'card.yml'
    card.write_text(yaml.safe_dump({'name': 'Tiny napari test MPT', 'description': 'A tiny MPT for the napari tests.',
                                    'authors': [{'name': 'tests'}], 'training_data': 'None: random weights.',
                                    'psf': 'None.'}), encoding='utf-8')
    tiling = ['--tile', '16', '--overlap', '2', '--context', '2']
    zipped = str(tmp_path / 'tiny.zip')
    assert exporter.main(['-opt', str(opt), '-w', str(tmp_path / 'net.pth'), '-o', zipped, '--model-card', str(card),
                          *tiling]) == 0
    img = _scene((37, 45), 3)
    tifffile.imwrite(tmp_path / 'a.tif', img)
    assert deblur.main(['-opt', str(opt), '-w', str(tmp_path / 'net.pth'), '-i', str(tmp_path / 'a.tif'), '-o',
                        str(tmp_path / 'out'), *tiling]) == 0
    expected = tifffile.imread(tmp_path / 'out' / 'a.tif').astype(np.int64)
    model = LoadedModel(ModelSpec('bioimage.io package', package=zipped))
    got = model.deblur(layer_image(img, False, 'a'), tile=16)
    assert got.dtype == np.uint16 and np.abs(got.astype(np.int64) - expected).max() <= 1
    assert np.abs(expected - img).max() > 50
    not_ours = tmp_path / 'other.zip'
    not_ours.write_bytes(b'PK\x05\x06' + b'\0' * 18)  # an empty zip
    with pytest.raises(ModelSourceError, match='other.zip'):
        model_sources.load_package(str(not_ours))


def test_sample_data_is_a_16_bit_defocused_pair(viewer):
    blurry, sharp = sample_data.fluorescence()
    assert blurry[0].dtype == sharp[0].dtype == np.uint16 and blurry[0].shape == sharp[0].shape
    assert blurry[1]['name'] == 'fluorescence (blurry)' and blurry[1]['metadata']['optics']['na'] == 1.4
    diff = np.abs(blurry[0].astype(float) - sharp[0])
    assert diff.mean() > 20  # blurred and noisy, not a copy
    layers = viewer.open_sample('mpt-basicsr', 'cell')
    assert [layer.name for layer in layers] == ['cell (blurry)', 'cell (sharp)']
