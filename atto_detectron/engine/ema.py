"""
An exponential moving average (EMA) of the model's weights during training
(``MODEL_EMA.*``), evaluated instead of the last weights.

The average is torch's :class:`~torch.optim.swa_utils.AveragedModel` with
:func:`~torch.optim.swa_utils.get_ema_multi_avg_fn`, over parameters and buffers (BN
running statistics included). It is a checkpointable of the trainer, so a resumed run
continues the same average.
"""

import logging
from typing import Dict

import torch
from torch.nn.parallel import DistributedDataParallel
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from detectron2.engine import HookBase
from detectron2.utils import comm

from ..checkpoint import load_weights_file

__all__ = [
    "CHECKPOINT_KEY",
    "ModelEMA",
    "ema_state_to_model_state",
    "load_ema_weights",
    "load_ema_weights_if_enabled",
]

logger = logging.getLogger(__name__)

# The key of the average in the trainer's checkpoints.
CHECKPOINT_KEY = "model_ema"
_MODULE_PREFIX = "module."


class ModelEMA(HookBase):
    """
    After every optimizer step: ``ema = decay * ema + (1 - decay) * weights``, for every
    parameter and floating-point buffer; the first step copies the weights.

    With several processes, BN running statistics differ between processes (each
    normalizes its own images); the buffers of the average are their mean over the
    processes, one all-reduce per step, so every process holds the same average and a
    checkpoint written by the main process resumes all of them exactly.
    """

    def __init__(self, model: torch.nn.Module, decay: float):
        """
        Args:
            model: the trained model (a DistributedDataParallel wrapper is looked through).
            decay: weight of the old average per step, in [0, 1).
        """
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"MODEL_EMA.DECAY must be in [0, 1), got {decay}.")
        if isinstance(model, DistributedDataParallel):
            model = model.module
        self.model = model
        self.decay = decay
        self.averaged = AveragedModel(
            model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True
        )
        self.averaged.eval()  # only ever evaluated; its BN statistics come from the average

    @property
    def module(self) -> torch.nn.Module:
        """The averaged model, ready to evaluate (in eval mode)."""
        return self.averaged.module

    @torch.no_grad()
    def after_step(self):
        self.averaged.update_parameters(self.model)
        if comm.get_world_size() > 1:
            _average_buffers_over_processes(self.averaged.module)

    def state_dict(self) -> Dict:
        return self.averaged.state_dict()

    def load_state_dict(self, state: Dict):
        self.averaged.load_state_dict(state)


def _average_buffers_over_processes(module: torch.nn.Module) -> None:
    buffers = [b for b in module.buffers() if b.is_floating_point()]
    if not buffers:
        return
    flat = torch.cat([b.reshape(-1) for b in buffers])
    torch.distributed.all_reduce(flat)
    flat /= comm.get_world_size()
    offset = 0
    for b in buffers:
        b.copy_(flat[offset : offset + b.numel()].view_as(b))
        offset += b.numel()


def ema_state_to_model_state(state: Dict) -> Dict:
    """The model state dict held in a :class:`ModelEMA` state (AveragedModel's keys)."""
    return {k[len(_MODULE_PREFIX) :]: v for k, v in state.items() if k.startswith(_MODULE_PREFIX)}


def load_ema_weights(model: torch.nn.Module, path: str) -> bool:
    """
    Loads the weight average of a training checkpoint into ``model``.

    Returns:
        bool: False (and ``model`` untouched) when the checkpoint holds no average, e.g.
        one trained with ``MODEL_EMA.ENABLED False`` or a converted weights file.

    Raises:
        CheckpointError: the file cannot be read safely (see :func:`load_weights_file`).
        RuntimeError: the average does not fit ``model``.
    """
    checkpoint = load_weights_file(path)
    state = checkpoint.get(CHECKPOINT_KEY) if isinstance(checkpoint, dict) else None
    if not state:
        logger.warning(
            f"MODEL_EMA.ENABLED is set but {path} holds no weight average: using its weights."
        )
        return False
    model.load_state_dict(ema_state_to_model_state(state))
    logger.info(f"Using the weight average (MODEL_EMA) of {path}.")
    return True


def load_ema_weights_if_enabled(model: torch.nn.Module, cfg) -> bool:
    """
    With ``cfg.MODEL_EMA.ENABLED`` and a local ``.pth`` in ``cfg.MODEL.WEIGHTS`` (already
    loaded into ``model`` as usual), replaces its weights with the checkpoint's average
    (see :func:`load_ema_weights`); returns whether it did.
    """
    path = cfg.MODEL.WEIGHTS
    if not (cfg.MODEL_EMA.ENABLED and path.endswith(".pth") and "://" not in path):
        return False
    return load_ema_weights(model, path)
