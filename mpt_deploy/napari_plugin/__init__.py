"""napari plugin ``mpt-basicsr`` (npe2 manifest ``napari.yaml``): the **Deblur** dock widget and sample data.

Install with ``pip install 'mpt-basicsr[napari]'``; ``docs/guides/napari.md`` shows it. The widget runs
``mpt-deblur``'s own functions (:mod:`.model_sources`), so a layer gives the same numbers as its file.
"""

import sys


def _no_triton_without_cuda() -> None:
    """Without a CUDA device, mark triton absent before torchvision pulls it in (through ``torch._dynamo``).

    napari imports this package after its OpenGL canvas exists; on a Mesa (llvmpipe) system triton's bundled LLVM
    then crashed the process on import (measured under Xvfb). Triton only serves GPU kernels.
    """
    if 'triton' in sys.modules or 'torch._dynamo' in sys.modules:
        return
    import torch

    if not torch.cuda.is_available():
        sys.modules['triton'] = None  # type: ignore[assignment]  # import triton -> ImportError


_no_triton_without_cuda()
