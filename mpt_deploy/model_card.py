"""Model card of an exported network: who made it, on what data, for which blur, with which limits.

A model card is a YAML file given to ``mpt-export-bioimageio --model-card``. What only the model's maker knows
(:data:`REQUIRED`: name, description, authors, training data, blur) must be in it: the exporter never invents
where a network came from. The shipped starter models carry their own card (:func:`starter_card`, read from their
model-card page). Keys about the method itself take the defaults below (licence, tags, generic limits, the
paper's citation). :func:`render_documentation` turns the card into the package's ``README.md`` (bioimage.io
wants a ``# Validation`` section).
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional

PAPER = ('Zhang, Y., Zheng, P., Yan, W., Fang, C., Cheng, S. S.: A Unified Framework for Microscopy Defocus '
         'Deblur with Multi-Pyramid Transformer and Contrastive Learning. CVPR 2024.')
PAPER_URL = 'https://github.com/PieceZhang/MPT-CataBlur'

REQUIRED = ('name', 'description', 'authors', 'training_data', 'psf')
DEFAULTS: Dict[str, Any] = {
    'license': 'MIT',
    'version': '0.1.0',
    'tags': ['deblurring', 'defocus', 'microscopy', 'fluorescence', 'transformer', '2d', 'pytorch'],
    'limits': ['2D, one image plane at a time; each channel separately for a one-channel network.',
               'Blur, noise or modalities unlike the training data may give artefacts. Compare with the raw image '
               'before quantitative use.',
               'Not a substitute for deconvolution with a measured PSF.'],
    'cite': [{'text': PAPER, 'url': PAPER_URL}],
}


class ModelCardError(ValueError):
    """A model card file is unreadable or has a key of the wrong type."""


def load_model_card(path: Optional[str] = None) -> Dict[str, Any]:
    """The card of ``path`` (YAML mapping) over :data:`DEFAULTS`; every key of :data:`REQUIRED` must be set."""
    card = {k: (list(v) if isinstance(v, list) else v) for k, v in DEFAULTS.items()}
    if path is None:
        raise ModelCardError('No model card: give --model-card FILE.yml with ' + ', '.join(REQUIRED) + ' (a YAML '
                             'mapping; docs/guides/bioimageio.md). The exporter does not invent who made a model and '
                             'on what data; the shipped starter models bring their own (--starter gray|rgb).')
    from mpt_common.option_file import load_options

    data = load_options(path)  # the plugin's safe loader (!!python/ tags refused)
    if not isinstance(data, Mapping):
        raise ModelCardError(f'Model card {path!r} must be a YAML mapping (name: ..., authors: [...]).')
    known = set(DEFAULTS) | set(REQUIRED)
    unknown = sorted(set(data) - known)
    if unknown:
        raise ModelCardError(f'Model card {path!r}: unknown keys {unknown}; known: {sorted(known)}.')
    missing = [key for key in REQUIRED if not data.get(key)]
    if missing:
        raise ModelCardError(f'Model card {path!r}: missing {", ".join(missing)} (only the model\'s maker knows '
                             'them; the exporter does not invent them).')
    for key in ('authors', 'tags', 'limits', 'cite'):
        if key in data and not isinstance(data[key], list):
            raise ModelCardError(f'Model card {path!r}: {key} must be a list.')
    for author in data.get('authors', []):
        if not isinstance(author, Mapping) or 'name' not in author:
            raise ModelCardError(f'Model card {path!r}: each author needs a name, got {author!r}.')
    card.update(data)
    return card


def _markdown_sections(text: str) -> Dict[str, str]:
    """``{heading: body}`` of a markdown page's ``## `` sections, and ``''`` for the text before the first."""
    sections: Dict[str, List[str]] = {'': []}
    current = ''
    for line in text.split('\n'):
        if line.startswith('## '):
            current = line[3:].strip()
            sections[current] = []
        elif not line.startswith('# '):
            sections[current].append(line)
    return {k: '\n'.join(v).strip() for k, v in sections.items()}


def starter_card(kind: str) -> Dict[str, Any]:
    """The card of the shipped starter model ``kind``, read from its model-card page (``MPT_starter_<kind>.md``)."""
    from mpt_deploy.starter_models import starter_model

    with open(starter_model(kind).card, encoding='utf-8') as handle:
        sections = _markdown_sections(handle.read())
    training = sections.get('Training data', '')
    blur = next((p for p in training.split('\n\n') if p.startswith('Degradations')), '')
    card = {k: (list(v) if isinstance(v, list) else v) for k, v in DEFAULTS.items()}
    card.update({
        'name': f'MPT starter model ({kind})',
        'description': sections[''].split('\n\n')[0].replace('\n', ' '),
        'authors': [{'name': 'mpt-basicsr contributors (starter model recipe in the plugin repository)'}],
        'training_data': training.replace(blur, '').strip(),
        'psf': blur.replace('\n', ' '),
        'limits': [' '.join(item.split()).lstrip('- ') for item in sections.get('Limits', '').split('\n- ') if item]
        or card['limits'],
    })
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
