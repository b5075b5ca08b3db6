"""The **Deblur** dock widget: pick an image layer and a model, deblur in a worker thread, get a new layer.

The result layer keeps the input's dtype, scale, translate, metadata and colour settings. Progress counts network
calls; Cancel stops at the next tile; errors become napari notifications. The work itself is
:class:`~mpt_deploy.napari_plugin.model_sources.LoadedModel` (``mpt-deblur``'s own functions).
"""

from __future__ import annotations

import threading
from typing import Any, Dict, Optional

from magicgui.widgets import CheckBox, ComboBox, Container, FileEdit, Label, ProgressBar, PushButton, SpinBox
from qtpy.QtCore import QObject, Signal

from mpt_deploy.napari_plugin.model_sources import (
    SOURCES,
    DeblurCancelled,
    LoadedModel,
    ModelSourceError,
    ModelSpec,
    Tile,
    layer_image,
)

PATH_FIELDS = {'options + weights': ('option_file', 'weights'), 'model folder': ('folder',),
               'bioimage.io package': ('package',), 'starter': ('starter',)}


class _Progress(QObject):
    """Carries progress from the worker thread to the GUI thread (queued signals)."""

    total = Signal(int)
    step = Signal(int)


def preload() -> None:
    """Import BasicSR's registries (torch, torchvision) when the widget is made, in the GUI thread, not first inside
    the worker thread."""
    import basicsr.archs  # noqa: F401

    import mpt_deploy.model_loading  # noqa: F401


def devices() -> list:
    """``cpu``, and ``cuda`` where a CUDA device is visible."""
    import torch

    return ['cpu'] + (['cuda'] if torch.cuda.is_available() else [])


class DeblurWidget(Container):
    """Dock widget ``Deblur`` (contributed by ``napari.yaml``)."""

    def __init__(self, napari_viewer) -> None:
        super().__init__(labels=True)
        preload()
        self.viewer = napari_viewer
        self.image = ComboBox(label='image', choices=self._image_layers, nullable=True)
        self.source = ComboBox(label='model', choices=SOURCES, value='starter')
        self.starter = ComboBox(label='starter', choices=['auto', 'gray', 'rgb'], value='auto')
        self.option_file = FileEdit(label='option file', mode='r', filter='*.yml *.yaml')
        self.weights = FileEdit(label='weights', mode='r', filter='*.pth *.pt')
        self.folder = FileEdit(label='model folder', mode='d')
        self.package = FileEdit(label='bioimage.io zip', mode='r', filter='*.zip')
        self.device = ComboBox(label='device', choices=devices(), value='cpu')
        self.auto_tile = CheckBox(text='tile size from free memory (as mpt-deblur --tile auto)', value=True)
        self.tile = SpinBox(label='tile (0: whole)', min=0, max=16384, step=64, value=512)
        self.run_button = PushButton(text='Deblur')
        self.cancel_button = PushButton(text='Cancel', enabled=False)
        self.progress = ProgressBar(label='progress', min=0, max=1, value=0)
        self.status = Label(label='', value='')
        self.status.native.setWordWrap(True)  # a long message wraps instead of widening the dock
        self.extend([self.image, self.source, self.starter, self.option_file, self.weights, self.folder, self.package,
                     self.device, self.auto_tile, self.tile, self.run_button, self.cancel_button, self.progress,
                     self.status])
        self.source.changed.connect(self._show_fields)
        self.auto_tile.changed.connect(self._show_fields)
        self.run_button.clicked.connect(self.start)
        self.cancel_button.clicked.connect(self.cancel)
        for event in (napari_viewer.layers.events.inserted, napari_viewer.layers.events.removed):
            event.connect(lambda _=None: self.image.reset_choices())
        self._show_fields()
        self.worker = None
        self._cancel = threading.Event()
        self._models: Dict[tuple, LoadedModel] = {}
        self._signals = _Progress()
        self._signals.total.connect(self._set_total)
        self._signals.step.connect(self._advance)

    def _image_layers(self, _widget=None) -> list:
        from napari.layers import Image

        return [(layer.name, layer) for layer in self.viewer.layers if isinstance(layer, Image)]

    def _show_fields(self, _=None) -> None:
        shown = set(PATH_FIELDS[self.source.value])
        for name in ('starter', 'option_file', 'weights', 'folder', 'package'):
            getattr(self, name).visible = name in shown
        self.tile.visible = not self.auto_tile.value

    def spec(self) -> ModelSpec:
        """The model the fields describe (checked: missing files raise :class:`ModelSourceError`)."""
        def path(field: FileEdit) -> Optional[str]:
            value = str(field.value) if field.value is not None else ''
            return value if value not in ('', '.') else None

        return ModelSpec(self.source.value, self.starter.value, path(self.option_file), path(self.weights),
                         path(self.folder), path(self.package)).check()

    def _set_total(self, total: int) -> None:
        self.progress.max = max(1, total)
        self.progress.value = 0

    def _advance(self, count: int) -> None:
        self.progress.value = min(self.progress.max, self.progress.value + count)

    def start(self) -> None:
        """Deblur the chosen layer in a worker thread (the button's action)."""
        from napari.qt.threading import create_worker
        from napari.utils.notifications import show_error

        layer = self.image.value
        if layer is None:
            show_error('Deblur: choose an image layer first.')
            return
        try:
            spec = self.spec()
            if getattr(layer, 'multiscale', False):
                raise ModelSourceError(f'Layer {layer.name!r} is multiscale; deblur its full-resolution level as a '
                                       'separate layer.')
            image = layer_image(layer.data, bool(layer.rgb), layer.name)
        except ModelSourceError as err:
            show_error(f'Deblur: {err}')
            return
        self._cancel.clear()
        tile = 'auto' if self.auto_tile.value else int(self.tile.value)
        self.worker = create_worker(self._job, spec, self.device.value, image, tile,
                                    _start_thread=False, _ignore_errors=True)  # errors: _failed
        self.worker.returned.connect(lambda result: self._add_result(layer, *result))
        self.worker.errored.connect(self._failed)
        self.worker.finished.connect(self._finished)
        self.run_button.enabled, self.cancel_button.enabled = False, True
        self.status.value = f'deblurring {layer.name} ...'
        self.worker.start()

    def _job(self, spec: ModelSpec, device: str, image, tile: Tile) -> Any:
        key = (spec, device)
        if key not in self._models:
            self._models[key] = LoadedModel(spec, device)
        model = self._models[key]
        tile = model.tiling(image, tile)  # once: the progress total counts the tiles that run
        self._signals.total.emit(model.work(image, tile))

        def progress(count: int) -> None:
            if self._cancel.is_set():
                raise DeblurCancelled()
            self._signals.step.emit(count)

        clipped: Dict[str, int] = {}
        return model.deblur(image, tile, progress, clipped), clipped

    def cancel(self) -> None:
        """Stop the running job at its next tile (the Cancel button)."""
        self._cancel.set()
        self.status.value = 'cancelling ...'

    def _add_result(self, layer, data, clipped: Dict[str, int]) -> None:
        kwargs = dict(name=f'{layer.name} deblurred', scale=layer.scale, translate=layer.translate,
                      metadata=dict(layer.metadata), rgb=layer.rgb, blending=layer.blending)
        if not layer.rgb:
            kwargs.update(colormap=layer.colormap.name, contrast_limits=layer.contrast_limits)
        self.viewer.add_image(data, **kwargs)
        self.status.value = f'added {kwargs["name"]!r}'
        from mpt_deploy.inference import clip_report

        report = clip_report(clipped, data.dtype, data.size)  # as mpt-deblur reports them per file
        if report:
            from napari.utils.notifications import show_info

            self.status.value = f'{kwargs["name"]!r}: {report}'
            show_info(self.status.value)

    def _failed(self, err: BaseException) -> None:
        from napari.utils.notifications import show_error, show_info

        if isinstance(err, DeblurCancelled):
            self.status.value = 'cancelled'
            show_info('Deblur: cancelled; nothing was added.')
            return
        self.status.value = 'failed'
        show_error(f'Deblur failed: {err}')

    def _finished(self) -> None:
        self.run_button.enabled, self.cancel_button.enabled = True, False
        self.worker = None
