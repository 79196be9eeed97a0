"""Detectron2's DefaultTrainer, adapted: CPU multi-process, exact resume, divergence stop."""

import json
import logging
import os
import time
import weakref
from typing import Optional

import torch

from detectron2.engine import (
    AMPTrainer,
    DefaultTrainer,
    HookBase,
    SimpleTrainer,
    TrainerBase,
    create_ddp_model,
)
from detectron2.engine.hooks import EvalHook, LRScheduler, PeriodicWriter
from detectron2.evaluation import COCOEvaluator
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger

from ..checkpoint import AtomicCheckpointer, CheckpointError
from ..data.train_loader import ResumableTrainLoader, build_resumable_train_loader
from ..utils.seeding import STEP, derived_seed, seed_all_generators
from .ema import CHECKPOINT_KEY as EMA_CHECKPOINT_KEY
from .ema import ModelEMA

__all__ = ["AttoTrainer", "StopOnDivergence", "TrainingDiverged", "training_seed"]

logger = logging.getLogger(__name__)

DETECTION_ADVICE = (
    "Lower SOLVER.BASE_LR or raise SOLVER.WARMUP_ITERS, then continue from that checkpoint "
    "with --resume, or start again in a new OUTPUT_DIR."
)


class TrainingDiverged(FloatingPointError):
    """The loss, the gradients or the predicted boxes became NaN or infinite."""

    def __init__(self, iteration: int, cause: str, checkpointer=None, advice: str = ""):
        try:
            last = checkpointer.newest_healthy_checkpoint() if checkpointer is not None else ""
        except CheckpointError:
            last = ""
        super().__init__(
            f"Training diverged at iteration {iteration}: {cause}. It stopped before that "
            f"iteration's optimizer step. Last healthy checkpoint: {last or 'none saved yet'}. "
            f"{advice}".rstrip()
        )


class StopOnDivergence(HookBase):
    """
    Stops training before the optimizer step when a loss is NaN or infinite, or any
    gradient is. Works with any trainer, through public torch hooks on the model
    (losses, checked right after the forward) and on the optimizer (gradients, checked
    right before its step).

    In multi-process training every process stops at the same iteration: the loss check
    is shared by all processes, and the gradients are already all-reduced by DDP.

    With AMP, GradScaler unscales the gradients and calls the optimizer's step only when
    they are finite; an infinite one is its overflow signal, and it skips that step and
    lowers the scale. So the gradient check sees unscaled gradients and never stops a
    healthy mixed-precision run.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        checkpointer=None,
        advice: str = DETECTION_ADVICE,
    ):
        """
        Args:
            model: the model of the trainer; its training forward returns a dict of losses.
            optimizer: the optimizer of the trainer.
            checkpointer: its last checkpoint is named in the error.
            advice: what the error tells the user to do.
        """
        self._checkpointer = checkpointer
        self._advice = advice
        self._handles = [
            model.register_forward_hook(self._check_losses),
            optimizer.register_step_pre_hook(self._check_gradients),
        ]

    def _check_losses(self, module, inputs, output):
        if not (module.training and isinstance(output, dict)):
            return
        losses = {k: v for k, v in output.items() if torch.is_tensor(v)}
        bad = [k for k, v in losses.items() if not torch.isfinite(v).all()]
        if _on_any_process(bool(bad), next(iter(losses.values()), None)):
            self._stop(f"{', '.join(bad) or 'the loss of another process'} became NaN or infinite")

    def _check_gradients(self, optimizer, args, kwargs):
        grads = [p.grad for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
        if not grads:
            return
        norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
        if not torch.isfinite(norm):
            self._stop("the gradients became NaN or infinite")

    def after_train(self):
        for handle in self._handles:
            handle.remove()

    def _stop(self, cause: str):
        trainer = getattr(self, "trainer", None)
        iteration = trainer.iter if trainer is not None else "?"
        raise TrainingDiverged(iteration, cause, self._checkpointer, self._advice)


def _on_any_process(flag: bool, like: Optional[torch.Tensor]) -> bool:
    """Whether ``flag`` is true on any process (one all-reduce when there are several)."""
    if comm.get_world_size() == 1 or like is None:
        return flag
    shared = torch.tensor([int(flag)], device=like.device)
    torch.distributed.all_reduce(shared)
    return bool(shared.item())


def training_seed(cfg) -> int:
    """``cfg.SEED``, or where it is negative a random seed shared by all processes."""
    return cfg.SEED if cfg.SEED >= 0 else comm.shared_random_seed()


class AttoTrainer(DefaultTrainer):
    """
    DefaultTrainer with these changes:

    * models on CPU are wrapped in DistributedDataParallel without ``device_ids``, so
      multi-process training runs on CPU (Gloo) as well as on GPUs (NCCL);
    * checkpoints are written atomically, never with NaN/inf weights, and resumed with
      checks (:class:`AtomicCheckpointer`);
    * a resumed run continues bit for bit: the data (:class:`ResumableTrainLoader`) and
      every random draw of a step are functions of (seed, iteration, process), the seed
      is saved in the checkpoints, and ``metrics.json`` is cut back to the checkpoint;
    * :class:`StopOnDivergence` guards every step, and Detectron2's own divergence
      errors (non-finite loss, RPN boxes) become :class:`TrainingDiverged`, which names
      the last healthy checkpoint;
    * short runs write metrics more often than every 20 iterations, and the last
      evaluation's results are kept in :attr:`eval_results`;
    * with ``MODEL_EMA.ENABLED``, an average of the weights (:class:`ModelEMA`) is kept,
      checkpointed, and evaluated instead of the last weights.

    Evaluation is Detectron2's COCOEvaluator (box AP, and mask AP for Mask R-CNN).
    """

    def __init__(self, cfg):
        # DefaultTrainer.__init__, step by step through Detectron2's public API, but for
        # the DistributedDataParallel wrapper: Detectron2's create_ddp_model passes
        # device_ids=[local_rank], which DDP rejects for a model on CPU (detectron2#5146);
        # CPU processes (Gloo) need device_ids=None.
        TrainerBase.__init__(self)
        self.eval_results = None  # the last evaluation's, see build_hooks
        self.eval_seconds = 0.0  # time spent evaluating, all evaluations together
        self.ema = None  # the weight average (MODEL_EMA), made in build_hooks
        if not logging.getLogger("detectron2").isEnabledFor(logging.INFO):
            setup_logger()
        cfg = DefaultTrainer.auto_scale_workers(cfg, comm.get_world_size())
        model = self.build_model(cfg)
        optimizer = self.build_optimizer(cfg, model)
        data_loader = self.build_train_loader(cfg)
        on_cpu = not cfg.MODEL.DEVICE.startswith("cuda")
        model = create_ddp_model(
            model, broadcast_buffers=False, **({"device_ids": None} if on_cpu else {})
        )
        self._trainer = (AMPTrainer if cfg.SOLVER.AMP.ENABLED else SimpleTrainer)(
            model, data_loader, optimizer
        )
        self.scheduler = self.build_lr_scheduler(cfg, optimizer)
        self.checkpointer = AtomicCheckpointer(model, cfg.OUTPUT_DIR, trainer=weakref.proxy(self))
        self.start_iter = 0
        self.max_iter = cfg.SOLVER.MAX_ITER
        self.cfg = cfg
        self.register_hooks(self.build_hooks())
        self.seed = getattr(self.data_loader, "seed", None)
        if self.seed is None:
            self.seed = training_seed(cfg)

    @classmethod
    def build_train_loader(cls, cfg):
        """:func:`build_resumable_train_loader`; Detectron2's loader for other samplers."""
        if cfg.DATALOADER.SAMPLER_TRAIN != "TrainingSampler":
            logger.warning(
                f"DATALOADER.SAMPLER_TRAIN is {cfg.DATALOADER.SAMPLER_TRAIN}: Detectron2's "
                f"loader, which starts its data stream over when a run is resumed."
            )
            return super().build_train_loader(cfg)
        return build_resumable_train_loader(cfg, training_seed(cfg))

    def build_writers(self):
        self._writers = super().build_writers()
        return self._writers

    def build_hooks(self):
        """
        :class:`StopOnDivergence` first, then DefaultTrainer's hooks, with two of them
        made anew from public constructors: the evaluation keeps its results in
        :attr:`eval_results`, and short runs (CPU, tests) write metrics more often than
        Detectron2's every 20 iterations. The checkpointer, which the periodic
        checkpointer saves with, is the :class:`AtomicCheckpointer` of ``__init__``. With
        ``MODEL_EMA.ENABLED``, :class:`ModelEMA` follows the LR scheduler, so that the
        average is updated before a checkpoint is written or an evaluation runs, and it
        is saved in every checkpoint.
        """
        if self.cfg.MODEL_EMA.ENABLED:
            self.ema = ModelEMA(self.model, self.cfg.MODEL_EMA.DECAY)
            self.checkpointer.add_checkpointable(EMA_CHECKPOINT_KEY, self.ema)
        period = min(20, max(1, self.max_iter // 10))
        hooks = [StopOnDivergence(self.model, self.optimizer, self.checkpointer)]
        for hook in super().build_hooks():
            if isinstance(hook, EvalHook):
                hook = EvalHook(self.cfg.TEST.EVAL_PERIOD, self._test_and_keep_results)
            elif isinstance(hook, PeriodicWriter):
                hook = PeriodicWriter(self._writers, period=period)
            hooks.append(hook)
            if isinstance(hook, LRScheduler) and self.ema is not None:
                hooks.append(self.ema)
        return hooks

    def _test_and_keep_results(self):
        if self.ema is not None:
            model = self.ema.module  # the same in every process (see ModelEMA)
        else:
            model = self.model
            # With per-process BN, the processes' running statistics differ; checkpoints
            # hold the main process's. Every process evaluates those, so that the AP
            # reported is the AP of the saved model.
            if comm.get_world_size() > 1:
                for buffer in model.buffers():
                    torch.distributed.broadcast(buffer, src=0)
        start = time.perf_counter()
        self.eval_results = self.test(self.cfg, model)
        self.eval_seconds += time.perf_counter() - start
        return self.eval_results

    def resume_or_load(self, resume=True):
        super().resume_or_load(resume=resume)
        if isinstance(self.data_loader, ResumableTrainLoader):
            self.data_loader.seed = self.seed
            self.data_loader.start_iter = self.start_iter
        if resume and comm.is_main_process():
            # A killed run has written metrics past its last checkpoint; those
            # iterations run again now.
            drop_metrics_from(os.path.join(self.cfg.OUTPUT_DIR, "metrics.json"), self.start_iter)

    def run_step(self):
        seed_all_generators(derived_seed(self.seed, STEP, self.iter, comm.get_rank()))
        try:
            super().run_step()
        except TrainingDiverged:
            raise
        except FloatingPointError as e:
            # Detectron2's own checks: a non-finite loss, or non-finite RPN boxes.
            cause = str(e).splitlines()[0].rstrip(".!")
            raise TrainingDiverged(self.iter, cause, self.checkpointer, DETECTION_ADVICE) from e

    def state_dict(self):
        ret = super().state_dict()
        ret["seed"] = self.seed
        return ret

    def load_state_dict(self, state_dict):
        super().load_state_dict(state_dict)
        saved = state_dict.get("seed")
        if saved is not None and saved != self.seed:
            logger.warning(
                f"The checkpoint was trained with seed {saved}, not {self.seed}: continuing "
                f"with {saved}, so that the run goes on as it would have."
            )
            self.seed = saved

    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_folder=None):
        if output_folder is None:
            output_folder = os.path.join(cfg.OUTPUT_DIR, "inference", dataset_name)
        tasks = ("bbox", "segm") if cfg.MODEL.MASK_ON else ("bbox",)
        return COCOEvaluator(dataset_name, tasks=tasks, distributed=True, output_dir=output_folder)


def drop_metrics_from(path: str, iteration: int) -> int:
    """
    Removes the records of ``iteration`` and later (and any half-written last line) from
    a Detectron2 ``metrics.json``, in place, so that the writer that has the file open
    for appending goes on at its new end. Returns the number of lines removed.
    """
    if not os.path.isfile(path):
        return 0
    with open(path, "r+") as f:
        lines = f.readlines()
        kept = []
        for line in lines:
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if record.get("iteration", -1) < iteration:
                kept.append(line if line.endswith("\n") else line + "\n")
        f.seek(0)
        f.writelines(kept)
        f.truncate()
    if len(kept) < len(lines):
        logger.info(
            f"{path}: removed {len(lines) - len(kept)} records from iteration {iteration} on."
        )
    return len(lines) - len(kept)
