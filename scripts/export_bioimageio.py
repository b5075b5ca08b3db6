"""Export a bioimage.io model package: ``python scripts/export_bioimageio.py -opt x.yml -w net_g.pth -o mpt.zip``."""

import sys

from mpt_deploy.bioimageio_export import main

if __name__ == '__main__':
    sys.exit(main())
