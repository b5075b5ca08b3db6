"""The authors' public code where it departs from the paper, as subclasses of the paper's modules.

``MPT(compat='authors')`` builds its sub-blocks from :class:`AuthorsPyramidSubBlock`, so the authors' released
weights (converted by ``mpt_deploy.authors_checkpoint``) compute exactly their function. The numbers cite
docs/guides/authors_weights.md (differences 1-6; ``models/MPT.py`` of PieceZhang/MPT-CataBlur, commit 6b06096).
"""

from __future__ import annotations

import torch
from torch import nn

from .cswa import CrossScaleWindowAttention
from .fefn import FeatureEnhancingFFN
from .pyramid_block import PyramidSubBlock


class AuthorsCSWA(CrossScaleWindowAttention):
    """CSWA with the authors' raster-order pairing (1-4: ``region_geometry.build_authors_layout``: key window ``K``
    serves query windows ``K r^2 .. K r^2 + r^2 - 1``, the query depthwise conv on the regrouped frame, their shift
    and -100 mask; map sizes must be multiples of ``r M``) and their raw, unclamped per-head temperature (5)."""

    pairing = 'raster'

    def _init_temperature(self, heads: int) -> None:
        self.temperature = nn.Parameter(torch.ones(heads))  # the authors' raw multiplier, initialised to 1

    def attention_temperature(self) -> torch.Tensor:
        return self.temperature

    def extra_repr(self) -> str:
        return super().extra_repr() + ", pairing='raster'"


class AuthorsFEFN(FeatureEnhancingFFN):
    """FEFN whose shortcut is the ISCA branch ``x2`` (6) instead of Eq. (3)'s ``x1``."""

    def shortcut_of(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        return x2


class AuthorsPyramidSubBlock(PyramidSubBlock):
    """The paper's sub-block (Fig. 2) built from :class:`AuthorsCSWA` and :class:`AuthorsFEFN`."""

    cswa_class = AuthorsCSWA
    fefn_class = AuthorsFEFN
