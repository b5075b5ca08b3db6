"""tools/train_starter_models.py: the model cards it writes carry each kind's own limits."""

from helpers import REPO
from helpers.scripts import load_script


def test_the_rgb_card_says_mpt_deblur_prefers_the_gray_model_and_the_shipped_card_says_so_too():
    from mpt_common.option_file import load_options

    tool = load_script('train_starter_models')
    cards = {kind: tool.model_card(kind, load_options(str(REPO / 'options' / f'train_MPT_starter_{kind}.yml')),
                                   1000, 'abc', 60.0, '1') for kind in ('gray', 'rgb')}
    assert cards['rgb'].endswith(tool.RGB_LIMITS) and '--starter rgb' in cards['rgb']
    assert tool.RGB_LIMITS not in cards['gray']
    shipped = (REPO / 'mpt_deploy' / 'starter_models' / 'MPT_starter_rgb.md').read_text(encoding='utf-8')
    assert shipped.endswith(tool.RGB_LIMITS)
