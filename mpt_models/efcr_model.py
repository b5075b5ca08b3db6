"""BasicSR model that trains any registered network with L1 + EFCR (paper Sec. 3.2, Eq. 7).

YAML (``model_type: EFCRModel``)::

    train:
      pixel_opt: {type: L1Loss, loss_weight: 1.0}
      efcr_opt: {type: EFCRLoss, loss_weight: 1.0e-5}   # omit for plain SRModel training
      efcr_mode: basic          # basic | basic_v1 | extra_labeled | extra_labeled_v1 | extra_unlabeled
      efcr_reblur: {kernel_sizes: [3, 5, 7], sigma: 10}  # optional; 'seed' makes the draws reproducible
      optim_g: {type: AdamW, lr: 1.0e-4, betas: [0.9, 0.999], weight_decay: 1.0e-4}
      log_grad_norm_freq: 100   # optional: every N iterations log grad_pix / grad_efcr, the L2 norms of the
                                # pixel loss's and the EFCR term's gradients w.r.t. the network weights
      nonfinite_patience: 0     # optional: batches with a NaN/inf loss or gradient skipped before the run stops
                                # (default 0: stop at the first one, nothing of that iteration applied or saved)
      amp: false                # optional mixed precision: bf16 | fp16 | false. The network runs under autocast;
                                # the losses (EFCR's wavelet terms included) are computed in float32. fp16 uses a
                                # gradient scaler, saved in the training state and restored on resume.
    val:                        # validation (training) and mpt-test, the images' whole size as mpt-deblur runs them
      amp: false                # optional: bf16 | fp16 | false, the network's forward under autocast
      tile: auto                # auto (default): the whole image when it fits half the free memory of the device,
                                # else blended tiles (mpt_common.tiling); N: tiles of N pixels; 0: always whole

Modes (``I``: the training pair, ``I'``: the extra pair from the batch keys ``extra_lq``/``extra_gt``,
``net``: the trained network; every forward pass below is in the autograd graph):

=================  ==========================================  =========================  ==================
mode               L+ / L- on                                  extended pair (B_in,B_out) Lext normaliser
=================  ==========================================  =========================  ==================
basic              out=net(lq), gt, lq (Eqs. 4, 5)             reblur(lq), net(B_in)      lq (Eq. 6)
basic_v1           out, gt, lq (Table 5 V1)                    --                         --
extra_labeled      net(extra_lq), extra_gt, extra_lq (8, 9)    reblur(extra_lq), net(.)   extra_lq (Eq. 10)
extra_labeled_v1   net(extra_lq), extra_gt, extra_lq (V_ex1)   --                         --
extra_unlabeled    out, gt, lq (Eqs. 4, 5)                     reblur(extra_lq), net(.)   extra_lq (Eq. 10)
=================  ==========================================  =========================  ==================

The value is ``beta * mean_i L+_i / (L-_i + Lext_i)`` (Eq. 7) added to the pixel loss on the training pair.
In the ``extra_labeled*`` modes the positive term uses the high bands only (Eq. 8) unless ``efcr_opt`` sets
``positive_bands`` itself, and the contrastive term is EFCR_ex alone: Sec. 3.2 says the objective "follows a
similar pattern with Eq. (7), where the supervised training on the testing dataset (L1) proceeds
simultaneously with EFCR_ex (L_CR)", and names EFCR_ex's components as {L+', L-', Lext'} (and
{L+, L-, Lext'} for unlabeled extra data), i.e. L_CR is replaced, not extended, by the extra-data terms.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Dict, NamedTuple, Optional, Tuple

import torch
from basicsr.losses import build_loss
from basicsr.models.sr_model import SRModel
from basicsr.utils import get_root_logger
from basicsr.utils.registry import MODEL_REGISTRY

from mpt_common.option_checks import val_tile_problem
from mpt_common.training_stop import TrainingStopped
from mpt_losses.reblur import DEFAULT_KERNEL_SIZES, DEFAULT_SIGMA, gaussian_kernel2d, random_gaussian_reblur

from .optimizers import TorchOptimizerMixin

__all__ = ['EFCR_MODES', 'EFCRMode', 'EFCRModel', 'NonFiniteLossError']


class NonFiniteLossError(FloatingPointError, TrainingStopped):
    """A training batch gave a NaN or infinite loss or gradient more often than ``train.nonfinite_patience``."""


class EFCRMode(NamedTuple):
    """Where each EFCR term comes from (see the module table)."""

    contrast_pair: str  # 'train': (net(lq), gt, lq); 'extra': (net(extra_lq), extra_gt, extra_lq)
    reblur_source: Optional[str]  # batch key re-blurred for the extended term; None: no extended term
    positive_bands: str  # default of EFCRLoss.positive_bands for this mode
    batch_keys: Tuple[str, ...]  # extra batch keys the mode needs


EFCR_MODES: Dict[str, EFCRMode] = {
    'basic': EFCRMode('train', 'lq', 'all', ()),
    'basic_v1': EFCRMode('train', None, 'all', ()),
    'extra_labeled': EFCRMode('extra', 'extra_lq', 'high', ('extra_lq', 'extra_gt')),
    'extra_labeled_v1': EFCRMode('extra', None, 'high', ('extra_lq', 'extra_gt')),
    'extra_unlabeled': EFCRMode('train', 'extra_lq', 'all', ('extra_lq',)),
}
_EXTRA_KEYS = ('extra_lq', 'extra_gt')


@MODEL_REGISTRY.register()
class EFCRModel(TorchOptimizerMixin, SRModel):
    """SRModel + EFCR regularizer (Eq. 7) + any ``torch.optim`` optimizer (AdamW for the paper)."""

    # the option facts of this model, read by the start-up checks through MODEL_REGISTRY
    TRAIN_KEYS = {'efcr_opt': 'section?', 'efcr_mode': 'str', 'efcr_reblur': 'section?', 'log_grad_norm_freq': 'int?',
                  'nonfinite_patience': 'int', 'amp': 'any', 'compile': 'any'}  # beyond SRModel's, with value kinds
    VAL_KEYS = {'amp': 'any', 'tile': 'int|auto'}  # beyond BasicSR's val keys, read by test()
    COMPILE_KEYS = ('mode', 'dynamic', 'fullgraph', 'backend')  # train.compile: true or these torch.compile options
    AMP_DTYPES = {'bf16': torch.bfloat16, 'fp16': torch.float16}
    REBLUR_KEYS = ('kernel_sizes', 'sigma', 'seed')  # train.efcr_reblur
    EFCR_MODES = EFCR_MODES

    def __init__(self, opt: dict) -> None:
        super().__init__(opt)
        val = opt.get('val') or {}
        self.val_amp_dtype = self.amp_dtype_of(val.get('amp', False), 'val.amp')
        self.val_tile = val.get('tile', 'auto')
        problem = val_tile_problem(self.val_tile)
        if problem:
            raise ValueError(f'val.tile must be {problem}, got {self.val_tile!r}')
        get_root_logger().info(f'Validation inference: amp {val.get("amp") or "false"}, tile {self.val_tile} '
                               f'on {self.device.type}')

    @classmethod
    def amp_dtype_of(cls, amp, key: str) -> Optional[torch.dtype]:
        """The autocast dtype of a ``train.amp`` / ``val.amp`` value (None: float32)."""
        if amp not in (False, None, 'false', *cls.AMP_DTYPES):
            raise ValueError(f'{key} must be bf16, fp16 or false, got {amp!r}')
        return cls.AMP_DTYPES.get(amp)

    def test(self) -> None:
        """SRModel's test (``net_g_ema`` when there is one) under ``val.amp``, sample by sample, in tiles when
        ``val.tile`` asks or the image does not fit (:func:`mpt_common.tiling.resolve_tile`, as ``mpt-deblur``);
        ``self.output`` is float32."""
        from mpt_common.tiling import resolve_tile, tiled_forward

        net = self.net_g_ema if hasattr(self, 'net_g_ema') else self.net_g
        was_training = net.training
        net.eval()
        outputs = []
        with torch.no_grad(), torch.autocast(self.device.type, dtype=self.val_amp_dtype or torch.float32,
                                             enabled=self.val_amp_dtype is not None):
            for sample in self.lq.split(1):
                tile, batch = resolve_tile(self.get_bare_model(net), self.val_tile, sample.shape[-2],
                                           sample.shape[-1], self.device)
                outputs.append(tiled_forward(net, sample, tile, device=self.device, batch=batch).to(self.device))
        self.output = torch.cat(outputs)
        net.train(was_training and net is self.net_g)

    def compile_network(self, spec) -> None:
        """``train.compile``: ``true`` or a mapping of :data:`COMPILE_KEYS` compiles ``net_g`` in place with
        ``torch.compile`` (``mpt_common.compiler``: static shapes by default, parameter names and checkpoints
        unchanged). The hand-written backward functions step aside while the compiler traces
        (:mod:`mpt_arch.custom_backward`)."""
        if spec in (False, None, 'false'):
            return
        kwargs = {} if spec is True or spec == 'true' else spec
        if not isinstance(kwargs, dict) or set(kwargs) - set(self.COMPILE_KEYS):
            raise ValueError(f'train.compile must be true, false or a mapping of {list(self.COMPILE_KEYS)}, '
                             f'got {spec!r}.')
        from mpt_common.compiler import compile_module

        compile_module(self.get_bare_model(self.net_g), **kwargs)  # static shapes unless train.compile says else

    def init_training_settings(self) -> None:
        train_opt = self.opt['train']
        efcr_opt = train_opt.get('efcr_opt')
        mode_name = train_opt.get('efcr_mode', 'basic' if efcr_opt else None)
        if mode_name is not None and mode_name not in EFCR_MODES:
            raise ValueError(f'Unknown train.efcr_mode {mode_name!r}; choose one of {", ".join(EFCR_MODES)}')
        super().init_training_settings()

        self.grad_norm_freq = int(train_opt.get('log_grad_norm_freq', 0) or 0)
        self.nonfinite_patience = int(train_opt.get('nonfinite_patience', 0))
        if self.nonfinite_patience < 0:
            raise ValueError(f'train.nonfinite_patience must be >= 0, got {self.nonfinite_patience}')
        self.nonfinite_batches = 0
        amp = train_opt.get('amp', False)
        self.amp_dtype = self.amp_dtype_of(amp, 'train.amp')
        self.scaler = torch.amp.GradScaler(self.device.type) if amp == 'fp16' else None
        self.compile_network(train_opt.get('compile', False))
        self.cri_efcr = None
        self.efcr_mode: Optional[EFCRMode] = None
        self.efcr_mode_name: Optional[str] = None
        if not efcr_opt:
            if mode_name is not None:
                get_root_logger().warning(f'train.efcr_mode {mode_name!r} is ignored: no train.efcr_opt, '
                                          'so training uses the pixel loss only.')
            return
        self.efcr_mode_name = mode_name
        self.efcr_mode = EFCR_MODES[mode_name]
        efcr_opt = dict(efcr_opt)
        efcr_opt.setdefault('positive_bands', self.efcr_mode.positive_bands)
        self.cri_efcr = build_loss(efcr_opt).to(self.device)

        reblur_opt = dict(train_opt.get('efcr_reblur') or {})
        unknown = set(reblur_opt) - set(self.REBLUR_KEYS)
        if unknown:
            raise ValueError(f'train.efcr_reblur has unknown key(s) {sorted(unknown)}; '
                             f'allowed: {", ".join(self.REBLUR_KEYS)}')
        self.reblur_kernel_sizes = tuple(reblur_opt.get('kernel_sizes', DEFAULT_KERNEL_SIZES))
        self.reblur_sigma = float(reblur_opt.get('sigma', DEFAULT_SIGMA))
        for size in self.reblur_kernel_sizes:  # fail at start-up, not at the first iteration
            try:
                gaussian_kernel2d(int(size), self.reblur_sigma)
            except (TypeError, ValueError) as err:
                raise ValueError(f'train.efcr_reblur: {err}') from err
        self.reblur_generator = None
        if reblur_opt.get('seed') is not None:
            self.reblur_generator = torch.Generator().manual_seed(int(reblur_opt['seed']))
        get_root_logger().info(f'EFCR mode {mode_name!r}: {self.cri_efcr}, re-blur kernel sizes '
                               f'{self.reblur_kernel_sizes}, sigma {self.reblur_sigma}')

    def autocast(self):
        """The network's forward under ``train.amp`` (a no-op context without it)."""
        return torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32,
                              enabled=self.amp_dtype is not None)

    def forward_g(self, x: torch.Tensor) -> torch.Tensor:
        """``net_g(x)`` under ``train.amp``, returned in float32 for the losses."""
        with self.autocast():
            out = self.net_g(x)
        return out.float()

    def extra_training_state(self) -> Dict[str, object]:
        """What the training state holds beyond BasicSR's: the fp16 gradient scaler."""
        return {'grad_scaler': self.scaler.state_dict()} if self.scaler is not None else {}

    def resume_training(self, resume_state: dict) -> None:
        """BasicSR's resume plus the gradient scaler of an fp16 run."""
        super().resume_training(resume_state)
        if self.scaler is not None and resume_state.get('grad_scaler'):
            self.scaler.load_state_dict(resume_state['grad_scaler'])

    def gradient_norms(self, losses: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        """L2 norm of each loss's gradient w.r.t. the trainable weights (extra backward passes; graph kept)."""
        params = [p for p in self.net_g.parameters() if p.requires_grad]
        norms = {}
        for name, loss in losses.items():
            grads = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
            norms[name] = torch.sqrt(sum((g.detach() ** 2).sum() for g in grads if g is not None))
        return norms

    def feed_data(self, data: dict) -> None:
        """SRModel's ``lq``/``gt`` plus the optional ``extra_lq``/``extra_gt`` of an attached extra dataset."""
        super().feed_data(data)
        for key in _EXTRA_KEYS:
            setattr(self, key, data[key].to(self.device) if key in data else None)

    def reblur(self, x: torch.Tensor) -> torch.Tensor:
        """Random Gaussian re-blur B_in of Eqs. 6 / 10."""
        return random_gaussian_reblur(x, self.reblur_kernel_sizes, self.reblur_sigma, self.reblur_generator)

    def compute_efcr(self) -> torch.Tensor:
        """EFCR term of the current batch for ``self.efcr_mode`` (runs the extra network forward passes)."""
        mode = self.efcr_mode
        missing = [key for key in mode.batch_keys if getattr(self, key, None) is None]
        if missing:
            raise ValueError(f'train.efcr_mode {self.efcr_mode_name!r} needs the batch key(s) {", ".join(missing)}, '
                             'which the training batch lacks: attach an extra dataset with '
                             'datasets.train.extra_dataset (labeled for extra_labeled*, any for extra_unlabeled)')
        if mode.contrast_pair == 'extra':
            output, gt, lq = self.forward_g(self.extra_lq), self.extra_gt, self.extra_lq
        else:
            output, gt, lq = self.output, self.gt, self.lq
        if mode.reblur_source is None:
            return self.cri_efcr(output, gt, lq)
        source = getattr(self, mode.reblur_source)
        reblur_in = self.reblur(source)
        reblur_out = self.forward_g(reblur_in)
        return self.cri_efcr(output, gt, lq, reblur_out=reblur_out, reblur_in=reblur_in, reblur_source=source)

    def optimize_parameters(self, current_iter: int) -> None:
        """SRModel's step (pixel and perceptual losses) plus EFCR (Eq. 7), applied only when loss and gradient are
        finite (:meth:`finite_or_skip`)."""
        self.optimizer_g.zero_grad()
        self.output = self.forward_g(self.lq)

        l_total = 0
        loss_dict = OrderedDict()
        if self.cri_pix:
            l_pix = self.cri_pix(self.output, self.gt)
            l_total += l_pix
            loss_dict['l_pix'] = l_pix
        if self.cri_perceptual:
            l_percep, l_style = self.cri_perceptual(self.output, self.gt)
            if l_percep is not None:
                l_total += l_percep
                loss_dict['l_percep'] = l_percep
            if l_style is not None:
                l_total += l_style
                loss_dict['l_style'] = l_style
        if self.cri_efcr is not None:
            l_efcr = self.compute_efcr()
            l_total += l_efcr
            loss_dict.update(self.cri_efcr.last_terms)  # l_pos, l_neg, (l_ext), l_efcr
            if self.grad_norm_freq and current_iter % self.grad_norm_freq == 0 and self.cri_pix:
                loss_dict.update(self.gradient_norms({'grad_pix': l_pix, 'grad_efcr': l_efcr}))

        if self.scaler is not None:  # fp16: inf/NaN gradients of a too large scale are the scaler's to skip
            self.scaler.scale(l_total).backward()
            self.scaler.unscale_(self.optimizer_g)
            if self.finite_or_skip(current_iter, loss_dict, check_gradients=False):
                self.scaler.step(self.optimizer_g)
            self.scaler.update()
        else:
            l_total.backward()
            if self.finite_or_skip(current_iter, loss_dict):
                self.optimizer_g.step()
        self.log_dict = self.reduce_loss_dict(loss_dict)

        if self.ema_decay > 0:
            self.model_ema(decay=self.ema_decay)

    def finite_or_skip(self, current_iter: int, loss_dict: Dict[str, torch.Tensor],
                       check_gradients: bool = True) -> bool:
        """True when every loss term and gradient is finite. Otherwise the batch is skipped (False) while fewer than
        ``train.nonfinite_patience`` batches were, else :class:`NonFiniteLossError` stops the run."""
        bad = [f'{name} = {float(value.detach())}' for name, value in loss_dict.items()
               if not bool(torch.isfinite(value.detach()).all())]
        if not bad and (not check_gradients or all(bool(torch.isfinite(p.grad).all())
                                                    for p in self.net_g.parameters() if p.grad is not None)):
            return True
        what = f'loss {", ".join(bad)}' if bad else 'gradient (the loss terms are finite: the weights overflowed)'
        self.nonfinite_batches += 1
        self.optimizer_g.zero_grad()
        if self.nonfinite_batches > self.nonfinite_patience:
            raise NonFiniteLossError(
                f'Iteration {current_iter}: non-finite {what}; training stopped before applying it. Nothing of this '
                'iteration was saved: the last checkpoint (net_g_<iter>.pth with its <iter>.state) is finite and '
                '--auto_resume continues from it. Lower train.optim_g.lr, or set train.nonfinite_patience to skip '
                f'such batches ({self.nonfinite_batches - 1} skipped so far, patience {self.nonfinite_patience}).')
        get_root_logger().warning(f'Iteration {current_iter}: non-finite {what}; batch skipped '
                                  f'({self.nonfinite_batches} of train.nonfinite_patience {self.nonfinite_patience}).')
        return False
