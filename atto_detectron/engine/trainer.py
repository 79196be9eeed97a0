"""Detectron2's DefaultTrainer, adapted: CPU multi-process, atomic checkpoints, NaN guard."""

import logging
import os
import weakref

import torch

from detectron2.engine import AMPTrainer, DefaultTrainer, HookBase, SimpleTrainer, TrainerBase
from detectron2.engine.hooks import PeriodicWriter
from detectron2.engine.defaults import create_ddp_model
from detectron2.evaluation import COCOEvaluator
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger

from ..checkpoint import AtomicCheckpointer

__all__ = ["AttoTrainer", "StopOnNonFiniteGradients"]


class StopOnNonFiniteGradients(HookBase):
    """
    Stops training, before the optimizer step, when the gradients are NaN or infinite
    (which they are whenever the loss is). Gradients are all-reduced by DDP, so every
    process stops at the same iteration; the weights and the last checkpoint stay intact.
    """

    def __init__(
        self,
        checkpointer=None,
        advice="Lower SOLVER.BASE_LR or raise SOLVER.WARMUP_ITERS, then rerun with --resume.",
    ):
        """
        Args:
            checkpointer: its last checkpoint is named in the error.
            advice: what the error tells the user to do.
        """
        self._checkpointer = checkpointer
        self._advice = advice

    def after_backward(self):
        grads = [p.grad for p in self.trainer.model.parameters() if p.grad is not None]
        if not grads:
            return
        norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
        if not torch.isfinite(norm):
            last = self._checkpointer and self._checkpointer.get_checkpoint_file()
            raise FloatingPointError(
                f"Loss or gradients became NaN/inf at iteration {self.trainer.iter}; training "
                f"stopped before the optimizer step, so no corrupt weights were saved. Last "
                f"checkpoint: {last or 'none yet'}. {self._advice}"
            )


class AttoTrainer(DefaultTrainer):
    """
    DefaultTrainer with four changes:

    * models on CPU are wrapped in DistributedDataParallel without ``device_ids``, so
      multi-process training runs on CPU (Gloo) as well as on GPUs (NCCL);
    * checkpoints are written atomically (:class:`AtomicCheckpointer`);
    * :class:`StopOnNonFiniteGradients` guards every step;
    * short runs write metrics more often than every 20 iterations.

    Evaluation is Detectron2's COCOEvaluator (box AP, and mask AP for Mask R-CNN).
    """

    def __init__(self, cfg):
        # DefaultTrainer.__init__, except for the DDP wrapper and the checkpointer.
        TrainerBase.__init__(self)
        if not logging.getLogger("detectron2").isEnabledFor(logging.INFO):
            setup_logger()
        cfg = DefaultTrainer.auto_scale_workers(cfg, comm.get_world_size())

        model = self.build_model(cfg)
        optimizer = self.build_optimizer(cfg, model)
        data_loader = self.build_train_loader(cfg)

        ddp_kwargs = {} if cfg.MODEL.DEVICE.startswith("cuda") else {"device_ids": None}
        model = create_ddp_model(model, broadcast_buffers=False, **ddp_kwargs)
        trainer_class = AMPTrainer if cfg.SOLVER.AMP.ENABLED else SimpleTrainer
        self._trainer = trainer_class(model, data_loader, optimizer)

        self.scheduler = self.build_lr_scheduler(cfg, optimizer)
        self.checkpointer = AtomicCheckpointer(model, cfg.OUTPUT_DIR, trainer=weakref.proxy(self))
        # after_backward hooks run in the inner trainer, which runs the step.
        self._trainer.register_hooks([StopOnNonFiniteGradients(self.checkpointer)])
        self.start_iter = 0
        self.max_iter = cfg.SOLVER.MAX_ITER
        self.cfg = cfg
        self.register_hooks(self.build_hooks())

    def build_hooks(self):
        hooks = super().build_hooks()
        # Detectron2 writes metrics every 20 iterations; short runs (CPU, tests) log more
        # often so that their loss curve is visible.
        for hook in hooks:
            if isinstance(hook, PeriodicWriter):
                hook._period = min(20, max(1, self.max_iter // 10))
        return hooks

    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_folder=None):
        if output_folder is None:
            output_folder = os.path.join(cfg.OUTPUT_DIR, "inference", dataset_name)
        tasks = ("bbox", "segm") if cfg.MODEL.MASK_ON else ("bbox",)
        return COCOEvaluator(dataset_name, tasks=tasks, distributed=True, output_dir=output_folder)
