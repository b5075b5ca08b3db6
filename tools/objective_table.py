"""The optics table of ``docs/guides/synthetic_data.md``: Airy radius and defocus blur in pixels for common objectives
and camera pixel pitches (emission 520 nm), computed with :mod:`mpt_data.psf`'s definitions.

    python -m tools.objective_table --markdown docs/guides/synthetic_data.md
"""

from __future__ import annotations

import argparse
import math
import platform
import sys
from typing import List, Optional, Sequence

OBJECTIVES = [(10, 0.3, 1.0), (20, 0.5, 1.0), (20, 0.75, 1.0), (40, 0.95, 1.0), (40, 1.3, 1.518), (60, 1.2, 1.33),
              (60, 1.4, 1.518), (100, 1.45, 1.518)]  # magnification, NA, immersion index
CAMERAS = [('sCMOS 6.5 um', 6.5), ('EMCCD 13 um', 13.0), ('CMOS 3.45 um', 3.45)]
WAVELENGTH_UM = 0.52
MARKS = ('<!-- optics:begin -->', '<!-- optics:end -->')


def rows(wavelength_um: float = WAVELENGTH_UM) -> List[str]:
    """Markdown rows: objective, medium, then per camera the sample-plane pixel, Airy radius and blur per um."""
    from mpt_data.psf import AIRY_FIRST_ZERO

    media = {1.0: 'air', 1.33: 'water', 1.518: 'oil'}
    head = ' | '.join(f'{name}: pixel, Airy r, blur r per um' for name, _ in CAMERAS)
    out = [f'| objective | medium | {head} |', '|---|---|' + '---|' * len(CAMERAS)]
    for mag, na, n in OBJECTIVES:
        tan = (na / n) / math.sqrt(1 - (na / n) ** 2)  # geometric blur radius per um of defocus: dz tan(theta)
        cells = []
        for _, pitch in CAMERAS:
            pixel = pitch / mag
            cells.append(f'{pixel * 1000:.0f} nm, {AIRY_FIRST_ZERO * wavelength_um / na / pixel:.2f} px, '
                         f'{tan / pixel:.1f} px')
        out.append(f'| {mag}x/{na} | {media[n]} | ' + ' | '.join(cells) + ' |')
    return out


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--markdown', metavar='PAGE', help='write the table into the marked block of PAGE')
    args = parser.parse_args(argv)
    table = '\n'.join(rows())
    print(table)
    if args.markdown:
        import torch

        from mpt_metrics.table_output import write_markdown

        notes = [f'emission {WAVELENGTH_UM * 1000:.0f} nm; Airy r = 0.61 lambda / NA (first dark ring); blur r = '
                 'dz tan(theta_max), sin(theta_max) = NA / n, the radius of the geometric defocus shadow']
        env = {'cpu': platform.machine(), 'torch': torch.__version__}
        write_markdown(args.markdown, [table], notes, env, argv, '-m tools.objective_table', MARKS)
    return 0


if __name__ == '__main__':
    sys.exit(main())
