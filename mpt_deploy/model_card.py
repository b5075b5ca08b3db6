"""Model card of an exported network: who made it, on what data, for which blur, with which limits.

A model card is an optional YAML file given to ``mpt-export-bioimageio --model-card``; keys it leaves out take
the defaults below (the paper's MPT trained on BBBC006). :func:`render_documentation` turns it into the
package's ``README.md`` (bioimage.io wants a ``# Validation`` section).
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional

PAPER = ('Zhang, Y., Zheng, P., Yan, W., Fang, C., Cheng, S. S.: A Unified Framework for Microscopy Defocus '
         'Deblur with Multi-Pyramid Transformer and Contrastive Learning. CVPR 2024.')
PAPER_URL = 'https://github.com/PieceZhang/MPT-CataBlur'

DEFAULTS: Dict[str, Any] = {
    'name': 'MPT microscopy defocus deblurring',
    'description': 'Multi-Pyramid Transformer (MPT) that removes defocus blur from 2D fluorescence microscopy '
                   'images; trained with the BasicSR plugin mpt-basicsr.',
    'authors': [{'name': 'Yuelin Zhang'}, {'name': 'Pengyu Zheng'}, {'name': 'Wanquan Yan'},
                {'name': 'Chengyu Fang'}, {'name': 'Shing Shin Cheng'}],
    'license': 'MIT',
    'version': '0.1.0',
    'tags': ['deblurring', 'defocus', 'microscopy', 'fluorescence', 'transformer', '2d', 'pytorch'],
    'training_data': 'BBBC006 (Broad Bioimage Benchmark Collection): U2OS cells, Hoechst and phalloidin channels, '
                     'z-stacks of 34 focal planes; in-focus plane 16 is the target, defocused planes the input.',
    'psf': 'Real wide-field defocus of the BBBC006 stacks (not a synthetic PSF); the amount of defocus is that '
           'of the training planes.',
    'limits': ['2D, one image plane at a time; each channel separately for a one-channel network.',
               'Trained on one microscope, stain and magnification; other modalities, PSFs or noise levels may '
               'give artefacts. Compare with the raw image before quantitative use.',
               'Not a substitute for deconvolution with a measured PSF.'],
    'cite': [{'text': PAPER, 'url': PAPER_URL}],
}


class ModelCardError(ValueError):
    """A model card file is unreadable or has a key of the wrong type."""


def load_model_card(path: Optional[str] = None) -> Dict[str, Any]:
    """The card of ``path`` (YAML mapping) over :data:`DEFAULTS`; ``None``: the defaults."""
    card = {k: (list(v) if isinstance(v, list) else v) for k, v in DEFAULTS.items()}
    if path is None:
        return card
    from mpt_common.option_file import load_options

    data = load_options(path)  # the plugin's safe loader (!!python/ tags refused)
    if not isinstance(data, Mapping):
        raise ModelCardError(f'Model card {path!r} must be a YAML mapping (name: ..., authors: [...]).')
    unknown = sorted(set(data) - set(DEFAULTS))
    if unknown:
        raise ModelCardError(f'Model card {path!r}: unknown keys {unknown}; known: {sorted(DEFAULTS)}.')
    for key in ('authors', 'tags', 'limits', 'cite'):
        if key in data and not isinstance(data[key], list):
            raise ModelCardError(f'Model card {path!r}: {key} must be a list.')
    for author in data.get('authors', []):
        if not isinstance(author, Mapping) or 'name' not in author:
            raise ModelCardError(f'Model card {path!r}: each author needs a name, got {author!r}.')
    card.update(data)
    return card


def _section(title: str, lines: List[str]) -> str:
    return f'## {title}\n\n' + '\n'.join(lines) + '\n'


def render_documentation(card: Mapping[str, Any], contract: Mapping[str, Any]) -> str:
    """Markdown documentation of the package: the card plus the processing ``contract`` (see the exporter)."""
    limits = [f'- {item}' for item in card['limits']]
    cites = [f"- {c['text']}" + (f" <{c['url']}>" if c.get('url') else '') + (f" doi:{c['doi']}" if c.get('doi')
                                                                              else '') for c in card['cite']]
    parts = [
        f"# {card['name']}\n\n{card['description']}\n",
        _section('Training data', [str(card['training_data'])]),
        _section('Point spread function / blur', [str(card['psf'])]),
        _section('Input and output', [
            f"- input `raw`: {contract['channels']} channel(s), {contract['dtype']}, axes b, c, y, x; "
            f"y and x at least {contract['min_size']} pixels.",
            f"- output `deblurred`: same shape, float32 in the input's units ({contract['dtype']} range; cast it "
            'to store it as such).',
            f"- normalisation inside the model (no consumer pre/postprocessing besides dtype casts): "
            f"{contract['normalization']}",
            f"- tiling inside the model: tiles of {contract['tile']} px, overlap {contract['overlap']}, "
            f"context {contract['context']} (as `mpt-deblur --tile {contract['tile']} --overlap "
            f"{contract['overlap']} --context {contract['context']}`).",
            f"- {contract['torchscript']}",
            '- Give the model the whole image (no consumer tiling): the percentiles are those of the tensor the '
            'model receives, so a consumer that tiles normalises every tile by itself and its tiles may differ '
            'in brightness; halo 0 is declared for that reason.']),
        _section('Limits', limits),
        '# Validation\n\n'
        'The test tensors were produced by the exported model itself from a deterministic synthetic blurred '
        'image; `bioimageio.core`\'s model test reproduces them with both weight formats. The plugin\'s test '
        'suite checks that the package\'s prediction equals `mpt-deblur` on a 16-bit image.\n',
        _section('Citation', cites),
        _section('Licence', [str(card['license'])]),
    ]
    return '\n'.join(parts)
