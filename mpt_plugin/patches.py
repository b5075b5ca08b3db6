"""Small, documented run-time patches that make BasicSR 1.4.2 train on CPU and GPU, resume and save safely.

Applied by the plugin's entry points (:mod:`mpt_plugin.cli`) and by the auto-load hook
(:mod:`mpt_plugin.autoload`), so BasicSR's own ``train.py``/``test.py`` gain them too. Each patch replaces one
function at the depth where the problem lives; nothing of ``train.py`` is copied. :func:`apply` is idempotent.

=====================================================  ==================================================
BasicSR 1.4.2 function                                  change
=====================================================  ==================================================
``utils.dist_util._init_dist_pytorch``                  without CUDA: backend ``gloo``, no ``set_device``;
                                                        ``MPT_DIST_TIMEOUT`` (seconds): collective timeout
``models.base_model.BaseModel.model_to_device``         on CPU: ``DistributedDataParallel(device_ids=None)``
``BaseModel.save_network`` / ``save_training_state``   atomic write (:mod:`mpt_common.atomic`) after a free-space
                                                        check; a save that fails stops the run
                                                        (:class:`CheckpointSaveError`); never a non-finite network
``train.load_resume_state``                             CPU-safe, latest complete state (:mod:`.resume`)
``BaseModel.resume_training``                           a scheduler changed in the option file since the state
                                                        was saved follows the option file (with a warning)
``utils.options.parse_options``                         accepts ``--local-rank``; site-packages root -> cwd;
                                                        ``num_gpu`` > 0 without CUDA -> 0 (with a warning);
                                                        the file checked and ``--force_yml`` applied as data
                                                        before BasicSR reads it, the experiment locked
                                                        (:mod:`.startup`); exit 2 on an option problem
``utils.options.ordered_yaml``                          safe loader (:mod:`mpt_common.option_file`):
                                                        ``!!python/...`` tags refused, nothing executed
``models.sr_model.SRModel.feed_data``                   a batch without ``gt`` drops the previous ``gt``
``models.sr_model.SRModel.dist_validation``             rank 0 validates the unwrapped network; all ranks
                                                        then meet at a barrier (:func:`dist_validation`)
``models.base_model.BaseModel.validation``              a validation that raises during training first
                                                        saves ``net_g_latest.pth`` (:func:`_make_validation`)
``utils.file_client.FileClient`` ``lmdb`` backend       one environment per folder per process
                                                        (:mod:`mpt_data.lmdb_envs`)
=====================================================  ==================================================

The last one makes validation on unlabeled sets correct for SRModel and its subclasses (EFCRModel): BasicSR
keeps the last *training* ``gt`` when a validation batch has none, so the first unlabeled image would be
scored against a stale training patch. No-reference metrics (``calculate_sharpness``) then get ``img`` only.

BasicSR 1.4.2 seeds its generators with ``manual_seed + rank`` *before* it applies ``--force_yml``; here the
overrides are in the file BasicSR reads, and the wrapper seeds again with the final ``manual_seed`` (a no-op when
it did not change: nothing draws random numbers in between).

BasicSR's own policy for a failing save was "retry three times, then *Just ignore it*": a full disk ended a run
with exit status 0 and no final model. Here a save first checks the free space against the size of what it
writes, an OS error is retried only when it may pass (not for a full disk, a quota, a read-only or forbidden
folder), and then :class:`CheckpointSaveError` stops the run naming the file, the cause and the size; the last
complete checkpoint stays (atomic writes) and ``--auto_resume`` continues from it once the cause is fixed.

GPU runs are unchanged: NCCL, one device per rank (``rank % device_count``), ``device_ids=[current]``.
"""

from __future__ import annotations

import contextlib
import copy
import errno
import os
import shutil
import sys
import time
import warnings
from typing import Any, Dict, Iterator, List

from mpt_common.training_stop import TrainingStopped

_APPLIED = False


# --- distributed ----------------------------------------------------------------------------------------------
def _make_init_dist_pytorch(original):
    def _init_dist_pytorch(backend: str = 'nccl', **kwargs: Any) -> None:
        """BasicSR's pytorch launcher init; without CUDA uses gloo and skips ``torch.cuda.set_device``."""
        import torch
        import torch.distributed as dist

        if os.environ.get('MPT_DIST_TIMEOUT'):  # rank 0's validation must finish within it (others wait)
            import datetime

            kwargs.setdefault('timeout', datetime.timedelta(seconds=float(os.environ['MPT_DIST_TIMEOUT'])))
        if 'RANK' not in os.environ:
            raise RuntimeError('--launcher pytorch needs the RANK/WORLD_SIZE/MASTER_ADDR environment set by a launcher '
                               '(e.g. torchrun --nproc_per_node=2 ...).')
        if torch.cuda.is_available() and torch.cuda.device_count() > 0:
            return original(backend, **kwargs)
        if backend == 'nccl':
            backend = 'gloo'
        dist.init_process_group(backend=backend, **kwargs)

    _init_dist_pytorch._mpt_patched = True
    return _init_dist_pytorch


def _make_model_to_device(original):
    def model_to_device(self, net):  # noqa: ANN001, ANN202 - BasicSR signature
        """Like BasicSR's, but wraps CPU models in ``DistributedDataParallel(device_ids=None)``."""
        if self.opt['dist'] and self.device.type == 'cpu':
            from torch.nn.parallel import DistributedDataParallel

            return DistributedDataParallel(net.to(self.device), device_ids=None,
                                           find_unused_parameters=self.opt.get('find_unused_parameters', False))
        return original(self, net)

    model_to_device._mpt_patched = True
    return model_to_device


def _make_feed_data(original):
    def feed_data(self, data):  # noqa: ANN001, ANN202 - BasicSR signature
        """SRModel.feed_data; a batch without ``gt`` (unlabeled validation) removes a stale ``self.gt``."""
        original(self, data)
        if 'gt' not in data and hasattr(self, 'gt'):
            del self.gt

    feed_data._mpt_patched = True
    return feed_data


@contextlib.contextmanager
def unwrapped_networks(model) -> Iterator[None]:  # noqa: ANN001
    """Temporarily replace the model's ``DistributedDataParallel``/``DataParallel`` networks by their modules."""
    from torch.nn.parallel import DataParallel, DistributedDataParallel

    swapped = {}
    for name in ('net_g', 'net_g_ema'):
        net = getattr(model, name, None)
        if isinstance(net, (DataParallel, DistributedDataParallel)):
            swapped[name] = net
            setattr(model, name, net.module)
    try:
        yield
    finally:
        for name, net in swapped.items():
            setattr(model, name, net)


def dist_validation(self, dataloader, current_iter, tb_logger, save_img) -> None:  # noqa: ANN001
    """``SRModel.dist_validation`` that cannot desynchronise the ranks.

    BasicSR 1.4.2 runs ``nondist_validation`` on rank 0 *through* the DDP wrapper, whose forward broadcasts
    buffers: a collective that the other ranks, already training on (or finished), never join -- a hang on NCCL,
    "Connection closed by peer" on gloo, or a silent mix-up with their next collective. Here rank 0 validates
    the bare module (no collective in its forward; weights are identical on every rank after each step), and
    every rank then waits at a barrier, so all leave validation together and the last validation cannot outlive
    the other processes.
    """
    import torch.distributed as dist

    if self.opt['rank'] == 0:
        with unwrapped_networks(self):
            self.nondist_validation(dataloader, current_iter, tb_logger, save_img)
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def _make_validation(original):
    def validation(self, dataloader, current_iter, tb_logger, save_img=False):  # noqa: ANN001, ANN202
        """BaseModel.validation; if it raises during training, the latest weights are saved before re-raising."""
        try:
            return original(self, dataloader, current_iter, tb_logger, save_img)
        except BaseException as err:
            if self.opt.get('is_train'):
                from basicsr.utils import get_root_logger

                get_root_logger().error(f'Validation at iteration {current_iter} failed ({type(err).__name__}: '
                                        f'{err}); saving net_*_latest.pth before stopping.')
                self.save(-1, -1)  # networks only; rank 0 (save_network is master_only)
            raise

    validation._mpt_patched = True
    return validation


# --- checkpoints ----------------------------------------------------------------------------------------------
class CheckpointSaveError(OSError, TrainingStopped):
    """A checkpoint could not be written; the run stops (the message names the file, the cause and the size)."""


PERMANENT_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM)
FREE_SPACE_MARGIN = 1 << 20  # bytes kept free beyond the checkpoint itself


def nbytes(obj: Any) -> int:
    """Bytes of the tensors in ``obj`` (nested dicts, lists, tuples): about what ``torch.save`` writes."""
    import torch

    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, dict):
        return sum(nbytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(nbytes(v) for v in obj)
    return 0


def _save(obj: Any, path: str, what: str) -> None:
    """Atomically save ``obj`` to ``path``, or raise :class:`CheckpointSaveError` (see module docstring)."""
    from basicsr.utils import get_root_logger

    from mpt_common import atomic

    folder = os.path.dirname(os.path.abspath(path))
    needed = nbytes(obj)
    free = shutil.disk_usage(folder).free
    size = f'the {what} needs about {needed / 2**20:.1f} MiB, {free / 2**20:.1f} MiB are free there'
    if free < needed + FREE_SPACE_MARGIN:
        raise CheckpointSaveError(errno.ENOSPC, f'Cannot save {what} {path!r}: no space left on device ({size}). '
                                  'The last complete checkpoint is kept; free space, then continue with --auto_resume.')
    for remaining in (2, 1, 0):
        try:
            atomic.atomic_torch_save(obj, path)
            return
        except OSError as err:
            if err.errno in PERMANENT_ERRNOS or not remaining:
                cause = os.strerror(err.errno) if err.errno else str(err)
                raise CheckpointSaveError(err.errno, f'Cannot save {what} {path!r}: {cause.lower()} ({size}). '
                                          'The last complete checkpoint is kept; fix the cause, then continue with '
                                          '--auto_resume.') from err
            get_root_logger().warning(f'Save {what} {path!r} failed ({err}); {remaining} more tries.')
            time.sleep(1)


def _bare_state_dict(model, net) -> Dict[str, Any]:  # noqa: ANN001
    state_dict = model.get_bare_model(net).state_dict()
    return {(k[7:] if k.startswith('module.') else k): v.cpu() for k, v in state_dict.items()}


def save_network(self, net, net_label: str, current_iter, param_key='params') -> None:  # noqa: ANN001
    """``BaseModel.save_network`` with an atomic write (same file name and content as BasicSR)."""
    if current_iter == -1:
        current_iter = 'latest'
    save_path = os.path.join(self.opt['path']['models'], f'{net_label}_{current_iter}.pth')
    nets: List = net if isinstance(net, list) else [net]
    keys: List[str] = param_key if isinstance(param_key, list) else [param_key]
    if len(nets) != len(keys):
        raise ValueError(f'save_network: {len(nets)} networks but {len(keys)} param keys.')
    from mpt_common.checkpoint import CheckpointError, check_finite

    states = {k: _bare_state_dict(self, n) for n, k in zip(nets, keys)}
    for state in states.values():  # a network with NaN/inf is never written (it would replace a good one)
        try:
            check_finite(state, save_path)
        except CheckpointError as err:
            raise CheckpointError(f'Not saving {save_path!r}: {str(err).split(": ", 1)[-1]}') from None
    _save(states, save_path, 'model')


def save_training_state(self, epoch: int, current_iter: int) -> None:
    """``BaseModel.save_training_state`` with an atomic write (same file name and content as BasicSR)."""
    if current_iter == -1:
        return
    state = {'epoch': epoch, 'iter': current_iter,
             'optimizers': [o.state_dict() for o in self.optimizers],
             'schedulers': [s.state_dict() for s in self.schedulers]}
    state.update(getattr(self, 'extra_training_state', dict)())  # e.g. EFCRModel's fp16 gradient scaler
    save_path = os.path.join(self.opt['path']['training_states'], f'{current_iter}.state')
    _save(state, save_path, 'training state')


SCHEDULE_KEYS = ('periods', 'cumulative_period', 'restart_weights', 'eta_min', 'milestones', 'gamma', 'restarts')


def _make_resume_training(original):
    def resume_training(self, resume_state) -> None:  # noqa: ANN001
        """``BaseModel.resume_training``; a schedule changed in the option file since the save is kept (warned)."""
        wanted = [{k: copy.deepcopy(getattr(s, k)) for k in SCHEDULE_KEYS if hasattr(s, k)} for s in self.schedulers]
        original(self, resume_state)
        for i, (scheduler, config) in enumerate(zip(self.schedulers, wanted)):
            changed = {k: (getattr(scheduler, k), v) for k, v in config.items() if getattr(scheduler, k) != v}
            if not changed:
                continue
            for key, (_, value) in changed.items():
                setattr(scheduler, key, value)
            from basicsr.utils import get_root_logger

            listing = '; '.join(f'{k}: {_plain(old)} -> {_plain(new)}' for k, (old, new) in changed.items()
                                if k != 'cumulative_period')
            get_root_logger().warning(f'train.scheduler changed since the resumed state was saved ({listing}); '
                                      f'scheduler {i} follows the option file from iteration '
                                      f'{scheduler.last_epoch} on.')

    resume_training._mpt_patched = True
    return resume_training


def _plain(value: Any) -> Any:
    return dict(value) if hasattr(value, 'most_common') else value


# --- options --------------------------------------------------------------------------------------------------
def normalize_argv(argv: List[str]) -> List[str]:
    """Rewrite ``--local-rank[=N]`` (``torch.distributed.launch`` style) to BasicSR's ``--local_rank``."""
    out = []
    for arg in argv:
        if arg == '--local-rank':
            arg = '--local_rank'
        elif arg.startswith('--local-rank='):
            arg = '--local_rank=' + arg.split('=', 1)[1]
        out.append(arg)
    return out


def experiment_root(root_path: str) -> str:
    """The folder for ``experiments/`` and ``results/``.

    BasicSR roots them two folders above its ``train.py``; for an *installed* BasicSR that is
    site-packages itself, so then the current directory is used instead. A BasicSR checkout is unchanged.
    """
    import basicsr

    installed_root = os.path.dirname(os.path.dirname(os.path.abspath(basicsr.__file__)))
    if (os.path.realpath(root_path) == os.path.realpath(installed_root)
            and os.path.basename(installed_root) in ('site-packages', 'dist-packages')):
        return os.getcwd()
    return root_path


def _patch_caller_resume(caller_globals: Dict[str, Any]) -> None:
    """Swap the CUDA-only ``load_resume_state`` of the calling ``train.py`` (module or ``__main__``)."""
    from mpt_plugin import resume

    current = caller_globals.get('load_resume_state')
    code = getattr(current, '__code__', None)
    if code is not None and current is not resume.load_resume_state and \
            os.path.basename(code.co_filename) == 'train.py' and 'basicsr' in code.co_filename:
        caller_globals['load_resume_state'] = resume.load_resume_state


def _make_parse_options(original):
    def parse_options(root_path: str, is_train: bool = True):
        """BasicSR's ``parse_options`` plus the changes listed in the module docstring."""
        import torch
        from basicsr.utils import set_random_seed

        from mpt_plugin import startup

        sys.argv[:] = normalize_argv(sys.argv)
        caller = sys._getframe(1).f_globals
        opt_file, merged = startup.prepare_option_file(is_train)  # exit 2 on any option problem
        opt, args = original(experiment_root(root_path), is_train=is_train)
        if merged is not None:
            args.opt = opt_file  # BasicSR copies args.opt into the experiment folder: the user's file
        if opt.get('num_gpu') and not torch.cuda.is_available():
            warnings.warn(f"num_gpu is {opt['num_gpu']} but CUDA is not available: running on the CPU (num_gpu: 0).",
                          RuntimeWarning, stacklevel=2)
            opt['num_gpu'] = 0
        set_random_seed(opt['manual_seed'] + opt['rank'])
        _patch_caller_resume(caller)
        try:
            startup.lock_experiment(opt)
        except startup.ExperimentInUseError as err:
            startup.exit_with_error(str(err))
        return opt, args

    parse_options._mpt_patched = True
    return parse_options


def apply() -> None:
    """Apply every patch once (imports BasicSR and torch)."""
    global _APPLIED
    if _APPLIED:
        return
    import basicsr.test
    import basicsr.train
    from basicsr.models import base_model, sr_model
    from basicsr.utils import dist_util, options
    from basicsr.utils.dist_util import master_only

    import mpt_common.basicsr_compat  # noqa: F401
    from mpt_common import checkpoint, option_file
    from mpt_data import lmdb_envs
    from mpt_plugin import resume

    if _APPLIED:  # importing basicsr above may have run the auto-load hook, which applies the patches
        return
    dist_util._init_dist_pytorch = _make_init_dist_pytorch(dist_util._init_dist_pytorch)
    model_cls = base_model.BaseModel
    model_cls.model_to_device = _make_model_to_device(model_cls.model_to_device)
    model_cls.validation = _make_validation(model_cls.validation)
    model_cls.save_network = master_only(save_network)
    model_cls.save_training_state = master_only(save_training_state)
    model_cls.load_network = checkpoint.load_network  # weights_only=True, errors naming the file
    model_cls.resume_training = _make_resume_training(model_cls.resume_training)
    sr_model.SRModel.feed_data = _make_feed_data(sr_model.SRModel.feed_data)
    sr_model.SRModel.dist_validation = dist_validation
    lmdb_envs.install()
    options.ordered_yaml = option_file.ordered_yaml  # looked up by parse_options at call time
    wrapped = _make_parse_options(options.parse_options)
    for module in (options, basicsr.train, basicsr.test):
        module.parse_options = wrapped
    basicsr.train.load_resume_state = resume.load_resume_state
    _APPLIED = True

