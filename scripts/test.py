"""Test with BasicSR's pipeline and this plugin: ``python scripts/test.py -opt options/x.yml``."""

from mpt_plugin.cli import test_main

if __name__ == '__main__':
    test_main()
