"""Train with BasicSR's pipeline and this plugin: ``python scripts/train.py -opt options/x.yml [--auto_resume]``."""

from mpt_plugin.cli import train_main

if __name__ == '__main__':
    train_main()
