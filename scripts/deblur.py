"""Deblur images with a trained network: ``python scripts/deblur.py -opt x.yml -w net_g.pth -i in/ -o out/``."""

import sys

from mpt_deploy.deblur import main

if __name__ == '__main__':
    sys.exit(main())
