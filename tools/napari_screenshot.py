"""Screenshot of the napari **Deblur** widget docked beside its sample data, deblurred (``docs/guides/napari.md``).

Headless under Xvfb (napari's canvas needs OpenGL, which Qt's offscreen platform lacks): opens the plugin's
``fluorescence`` sample in a viewer, docks the widget
by name, deblurs the blurry layer with the shipped starter model and saves napari's own screenshot of the window::

    xvfb-run -a python -m tools.napari_screenshot docs/figures/napari_deblur.png
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Optional, Sequence


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('path', nargs='?', default='docs/figures/napari_deblur.png', help='PNG to write')
    path = parser.parse_args(argv).path
    import napari

    os.environ.pop('QT_QPA_PLATFORM_PLUGIN_PATH', None)  # opencv-python's Qt plugins must not shadow PyQt5's
    from qtpy.QtWidgets import QApplication

    viewer = napari.Viewer(show=False)
    viewer.window._qt_window.resize(1400, 800)
    viewer.open_sample('mpt-basicsr', 'fluorescence')
    _dock, widget = viewer.window.add_plugin_dock_widget('mpt-basicsr', 'Deblur')
    blurry = viewer.layers['fluorescence (blurry)']
    widget.image.reset_choices()
    widget.image.value = blurry
    widget.start()
    deadline = time.time() + 300
    while widget.worker is not None and time.time() < deadline:
        QApplication.processEvents()
        time.sleep(0.05)
    if 'fluorescence (blurry) deblurred' not in viewer.layers:
        raise SystemExit(f'the widget added no layer (status: {widget.status.value!r})')
    blurry.visible = False
    viewer.grid.enabled = True
    blurry.visible = True
    viewer.layers['fluorescence (sharp)'].visible = False
    for _ in range(20):
        QApplication.processEvents()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    viewer.screenshot(path, canvas_only=False, flash=False)
    print(f'screenshot written to {path}')
    viewer.close()
    return 0


if __name__ == '__main__':
    sys.exit(main())
