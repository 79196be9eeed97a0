"""Detectron2's DefaultTrainer, adapted: CPU multi-process, exact resume, divergence stop."""

import json
import logging
import os
import weakref

import torch

from detectron2.engine import AMPTrainer, DefaultTrainer, HookBase, SimpleTrainer, TrainerBase
from detectron2.engine.defaults import create_ddp_model
from detectron2.engine.hooks import EvalHook, PeriodicWriter
from detectron2.evaluation import COCOEvaluator
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger

from ..checkpoint import AtomicCheckpointer, CheckpointError
from ..data.train_loader import ResumableTrainLoader, build_resumable_train_loader
from .seeding import STEP, derived_seed, seed_all_generators

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
            last = checkpointer.get_checkpoint_file() if checkpointer is not None else ""
        except CheckpointError:
            last = ""
        super().__init__(
            f"Training diverged at iteration {iteration}: {cause}. It stopped before that "
            f"iteration's optimizer step. Last healthy checkpoint: {last or 'none saved yet'}. "
            f"{advice}".rstrip()
        )


class StopOnDivergence(HookBase):
    """
    Stops training before the optimizer step when the loss is NaN or infinite, or,
    without AMP, any gradient is. Gradients are all-reduced by DDP, so every process
    stops at the same iteration. Register it with the trainer that runs the step.

    With AMP (a trainer with a ``grad_scaler``), gradients are scaled, and an infinite
    one is GradScaler's overflow signal: the scaler skips that step and lowers the
    scale, which is how mixed precision trains. Only the loss is checked then.
    """

    def __init__(self, model: torch.nn.Module, checkpointer=None, advice: str = DETECTION_ADVICE):
        """
        Args:
            model: the model of the trainer; its training forward returns a dict of losses.
            checkpointer: its last checkpoint is named in the error.
            advice: what the error tells the user to do.
        """
        self._checkpointer = checkpointer
        self._advice = advice
        self._losses = None
        model.register_forward_hook(self._record_losses)

    def _record_losses(self, module, inputs, output):
        if module.training and isinstance(output, dict):
            self._losses = output

    def after_backward(self):
        losses, self._losses = self._losses, None
        if losses is not None:
            bad = [
                k for k, v in losses.items() if torch.is_tensor(v) and not torch.isfinite(v).all()
            ]
            if bad:
                self._stop(f"{', '.join(bad)} became NaN or infinite")
        if getattr(self.trainer, "grad_scaler", None) is not None:
            return
        grads = [p.grad for p in self.trainer.model.parameters() if p.grad is not None]
        if not grads:
            return
        norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
        if not torch.isfinite(norm):
            self._stop("the gradients became NaN or infinite")

    def _stop(self, cause: str):
        raise TrainingDiverged(self.trainer.iter, cause, self._checkpointer, self._advice)


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
      evaluation's results are kept in :attr:`eval_results`.

    Evaluation is Detectron2's COCOEvaluator (box AP, and mask AP for Mask R-CNN).
    """

    def __init__(self, cfg):
        # DefaultTrainer.__init__, except for the DDP wrapper, the checkpointer and the seed.
        TrainerBase.__init__(self)
        if not logging.getLogger("detectron2").isEnabledFor(logging.INFO):
            setup_logger()
        cfg = DefaultTrainer.auto_scale_workers(cfg, comm.get_world_size())

        model = self.build_model(cfg)
        optimizer = self.build_optimizer(cfg, model)
        data_loader = self.build_train_loader(cfg)
        self.seed = getattr(data_loader, "seed", None)
        if self.seed is None:
            self.seed = training_seed(cfg)

        ddp_kwargs = {} if cfg.MODEL.DEVICE.startswith("cuda") else {"device_ids": None}
        model = create_ddp_model(model, broadcast_buffers=False, **ddp_kwargs)
        trainer_class = AMPTrainer if cfg.SOLVER.AMP.ENABLED else SimpleTrainer
        self._trainer = trainer_class(model, data_loader, optimizer)

        self.scheduler = self.build_lr_scheduler(cfg, optimizer)
        self.checkpointer = AtomicCheckpointer(model, cfg.OUTPUT_DIR, trainer=weakref.proxy(self))
        # after_backward hooks run in the inner trainer, which runs the step.
        self._trainer.register_hooks([StopOnDivergence(model, self.checkpointer)])
        self.start_iter = 0
        self.max_iter = cfg.SOLVER.MAX_ITER
        self.cfg = cfg
        self.eval_results = None  # the last evaluation's, see build_hooks
        self.register_hooks(self.build_hooks())

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
        DefaultTrainer's hooks, with two of them made anew from public constructors:
        the evaluation keeps its results in :attr:`eval_results`, and short runs (CPU,
        tests) write metrics more often than Detectron2's every 20 iterations.
        """
        period = min(20, max(1, self.max_iter // 10))
        hooks = []
        for hook in super().build_hooks():
            if isinstance(hook, EvalHook):
                hook = EvalHook(self.cfg.TEST.EVAL_PERIOD, self._test_and_keep_results)
            elif isinstance(hook, PeriodicWriter):
                hook = PeriodicWriter(self._writers, period=period)
            hooks.append(hook)
        return hooks

    def _test_and_keep_results(self):
        self.eval_results = self.test(self.cfg, self.model)
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
