"""Which files are images to this package: the extensions it decodes (imports nothing heavy, so commands can list
their inputs before loading torch)."""

TIFF_EXTENSIONS = ('.tif', '.tiff')
IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff', '.PNG', '.JPG', '.JPEG', '.BMP', '.TIF', '.TIFF')


def is_image_file(name: str) -> bool:
    """True when ``name`` has an image extension this package decodes."""
    return name.endswith(IMAGE_EXTENSIONS)
