"""Classifier training on Detectron2's engine: SGD, warmup + cosine/step, DDP, resume.

:class:`ClassifierTrainer` takes a model, two data loaders and a
:class:`ClassifierTrainConfig`, and returns the validation metrics::

    data = build_classification_data("datasets/imagenet50", image_size=224, batch_size=256)
    model = build_attonet_classifier("A", num_classes=51)
    trainer = ClassifierTrainer(model, data.train, data.val, ClassifierTrainConfig(epochs=90),
                                output_dir="output/classifier_AttoNet-A")
    trainer.resume_or_load(resume=True)
    metrics = trainer.train()  # {"top1": ..., "top5": ..., "num_images": ..., "epoch": ...}

It is Detectron2's SimpleTrainer and hooks (LR scheduler, periodic checkpointer,
evaluation, metrics.json) with the classification pieces filled in. Training is counted
in iterations, and checkpoints and evaluations fall on epoch ends.
"""

import itertools
import logging
import math
import os
import weakref
from dataclasses import asdict, dataclass
from typing import Dict, Iterator, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from fvcore.common.param_scheduler import CosineParamScheduler, MultiStepParamScheduler
from torch import nn
from tqdm import tqdm

from detectron2.engine import SimpleTrainer, TrainerBase, hooks
from detectron2.engine.defaults import create_ddp_model
from detectron2.solver import LRMultiplier, WarmupParamScheduler
from detectron2.solver.build import get_default_optimizer_params
from detectron2.utils import comm
from detectron2.utils.env import seed_all_rng
from detectron2.utils.events import JSONWriter

from ..checkpoint import AtomicCheckpointer
from ..engine.trainer import StopOnDivergence

__all__ = [
    "LR_SCHEDULES",
    "ClassifierTrainConfig",
    "ClassificationLoss",
    "ClassifierTrainer",
    "ProgressBar",
    "build_classifier_optimizer",
    "build_classifier_lr_scheduler",
    "evaluate_classifier",
]

logger = logging.getLogger(__name__)

LR_SCHEDULES = ("cosine", "step")


@dataclass
class ClassifierTrainConfig:
    """
    How to train a classifier. Epoch counts refer to the training loader's length.

    The paper does not give its ImageNet50 recipe; the defaults are the usual ones for
    mobile ImageNet networks: SGD with Nesterov momentum 0.9, 0.1 learning rate for 256
    images per iteration (scale it linearly with the batch), one warmup epoch, cosine
    decay to 0 over 90 epochs, weight decay 4e-5 except on norm layers, label smoothing 0.1.

    Attributes:
        epochs: length of training.
        base_lr: learning rate after warmup.
        momentum, nesterov: SGD momentum.
        weight_decay: L2 on convolution and FC weights and biases.
        weight_decay_norm: L2 on norm layers' scale and shift.
        lr_schedule: "cosine" (to 0 at the end) or "step" (times ``lr_gamma`` at each
            epoch of ``lr_steps``).
        lr_steps, lr_gamma: the "step" schedule.
        warmup_epochs: linear warmup from ``warmup_factor * base_lr`` (may be fractional).
        warmup_factor: see ``warmup_epochs``.
        label_smoothing: of the cross-entropy loss.
        eval_period: evaluate every this many epochs (0: only after the last one).
        checkpoint_period: save a checkpoint every this many epochs (with an output
            folder); the last epoch is always saved, as ``model_final.pth``.
        max_to_keep: periodic checkpoints kept (None: all).
        log_period: iterations between records in ``metrics.json``.
        seed: seeds the order of the training images and the random augmentation, anew
            at each epoch from (seed, epoch, rank), so a resumed run replays them exactly.
        progress: show a tqdm progress bar (main process only).
    """

    epochs: int = 90
    base_lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 4e-5
    weight_decay_norm: float = 0.0
    lr_schedule: str = "cosine"
    lr_steps: Sequence[int] = (30, 60, 80)
    lr_gamma: float = 0.1
    warmup_epochs: float = 1.0
    warmup_factor: float = 0.1
    label_smoothing: float = 0.1
    eval_period: int = 1
    checkpoint_period: int = 1
    max_to_keep: Optional[int] = 2
    log_period: int = 20
    seed: int = 0
    progress: bool = True

    def __post_init__(self):
        if self.epochs < 1:
            raise ValueError(f"epochs must be at least 1; got {self.epochs}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"lr_schedule must be one of {LR_SCHEDULES}; got {self.lr_schedule!r}")
        self.lr_steps = tuple(int(s) for s in self.lr_steps)
        if list(self.lr_steps) != sorted(set(self.lr_steps)) or any(s <= 0 for s in self.lr_steps):
            raise ValueError(f"lr_steps must be increasing positive epochs; got {self.lr_steps}")
        if self.warmup_epochs < 0 or self.eval_period < 0 or self.checkpoint_period < 1:
            raise ValueError(
                "warmup_epochs and eval_period must be >= 0 and checkpoint_period >= 1; got "
                f"{self.warmup_epochs}, {self.eval_period}, {self.checkpoint_period}"
            )

    def to_dict(self) -> Dict:
        return asdict(self)


class ClassificationLoss(nn.Module):
    """
    Wraps a classifier for Detectron2's SimpleTrainer: takes a batch ``(images, labels)``
    (``(N, 3, H, W)`` float, ``(N,)`` int64) and returns ``{"loss_cls": cross-entropy}``.
    """

    def __init__(self, classifier: nn.Module, label_smoothing: float = 0.0):
        super().__init__()
        self.classifier = classifier
        self.label_smoothing = label_smoothing

    def forward(self, batch: Tuple[torch.Tensor, torch.Tensor]) -> Dict[str, torch.Tensor]:
        images, labels = batch
        device = next(self.classifier.parameters()).device
        logits = self.classifier(images.to(device, non_blocking=True))
        loss = F.cross_entropy(
            logits, labels.to(device, non_blocking=True), label_smoothing=self.label_smoothing
        )
        return {"loss_cls": loss}


def build_classifier_optimizer(model: nn.Module, config: ClassifierTrainConfig):
    """SGD with momentum; weight decay as the config says (none on norms by default)."""
    params = get_default_optimizer_params(
        model,
        base_lr=config.base_lr,
        weight_decay=config.weight_decay,
        weight_decay_norm=config.weight_decay_norm,
    )
    return torch.optim.SGD(
        params, lr=config.base_lr, momentum=config.momentum, nesterov=config.nesterov
    )


def build_classifier_lr_scheduler(optimizer, config: ClassifierTrainConfig, iters_per_epoch: int):
    """
    A per-iteration Detectron2 ``LRMultiplier``: linear warmup, then cosine decay to 0 or
    steps at the epochs of ``config.lr_steps`` (those before the end).
    """
    max_iter = config.epochs * iters_per_epoch
    if config.lr_schedule == "cosine":
        schedule = CosineParamScheduler(1.0, 0.0)
    else:
        milestones = [s * iters_per_epoch for s in config.lr_steps if s < config.epochs]
        schedule = MultiStepParamScheduler(
            values=[config.lr_gamma**k for k in range(len(milestones) + 1)],
            milestones=milestones,
            num_updates=max_iter,
        )
    warmup_iters = int(round(config.warmup_epochs * iters_per_epoch))
    if warmup_iters > 0:
        schedule = WarmupParamScheduler(
            schedule, config.warmup_factor, min(warmup_iters / max_iter, 1.0), "linear"
        )
    return LRMultiplier(optimizer, multiplier=schedule, max_iter=max_iter)


@torch.no_grad()
def evaluate_classifier(model: nn.Module, data_loader, topk: Sequence[int] = (1, 5)) -> Dict:
    """
    Top-k accuracies of ``model`` on ``data_loader``'s ``(images, labels)`` batches, summed
    over all processes (each process evaluates its own shard; see
    :class:`atto_detectron.classification.ShardSampler`).

    Returns:
        dict: "top1", "top5" (for the default ``topk``; in percent) and "num_images".
        With fewer classes than k, top-k counts every image as correct.
    """
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    counts = torch.zeros(len(topk) + 1, dtype=torch.float64)
    try:
        for images, labels in data_loader:
            logits = model(images.to(device, non_blocking=True))
            labels = labels.to(device, non_blocking=True)
            ranked = logits.topk(min(max(topk), logits.shape[1]), dim=1).indices
            hits = ranked.eq(labels[:, None])
            for i, k in enumerate(topk):
                counts[i] += hits[:, :k].any(dim=1).sum().item()
            counts[-1] += labels.numel()
    finally:
        model.train(was_training)
    counts = sum(comm.all_gather(counts))
    if counts[-1] == 0:
        raise ValueError("The validation loader gave no images: nothing to evaluate.")
    results = {f"top{k}": float(100.0 * counts[i] / counts[-1]) for i, k in enumerate(topk)}
    results["num_images"] = int(counts[-1])
    return results


def _epoch_seed(seed: int, epoch: int, rank: int) -> int:
    return int(np.random.SeedSequence([seed, epoch, rank]).generate_state(1)[0])


class _EpochBatches:
    """
    An endless iterable over the batches of ``loader``, epoch after epoch, starting at
    iteration ``start_iter``. Each epoch first sets the sampler's epoch and reseeds the
    random generators from (seed, epoch, rank), so that the image order and the random
    augmentation of an epoch do not depend on what ran before it.
    """

    def __init__(self, loader, seed: int):
        self.loader = loader
        self.seed = seed
        self.start_iter = 0

    def __iter__(self) -> Iterator:
        iters_per_epoch = len(self.loader)
        first_epoch, skip = divmod(self.start_iter, iters_per_epoch)
        for epoch in itertools.count(first_epoch):
            if hasattr(self.loader.sampler, "set_epoch"):
                self.loader.sampler.set_epoch(epoch)
            seed_all_rng(_epoch_seed(self.seed, epoch, comm.get_rank()))
            batches = iter(self.loader)
            if epoch == first_epoch and skip:
                # A run resumed within an epoch: replay the epoch up to where it stopped.
                batches = itertools.islice(batches, skip, None)
            yield from batches


class ProgressBar(hooks.HookBase):
    """A tqdm bar over the iterations, with epoch, loss and learning rate."""

    def __init__(self, iters_per_epoch: int, enabled: bool = True):
        self._iters_per_epoch = iters_per_epoch
        self._enabled = enabled
        self._bar = None

    def before_train(self):
        self._bar = tqdm(
            total=self.trainer.max_iter,
            initial=self.trainer.start_iter,
            disable=not self._enabled,
            unit="it",
            dynamic_ncols=True,
        )

    def after_step(self):
        storage = self.trainer.storage
        epochs = math.ceil(self.trainer.max_iter / self._iters_per_epoch)
        postfix = {"epoch": f"{self.trainer.iter // self._iters_per_epoch + 1}/{epochs}"}
        histories = storage.histories()
        if "total_loss" in histories:
            postfix["loss"] = f"{histories['total_loss'].median(20):.3f}"
        if "lr" in histories:
            postfix["lr"] = f"{histories['lr'].latest():.3g}"
        self._bar.set_postfix(postfix, refresh=False)
        self._bar.update(1)

    def after_train(self):
        if self._bar is not None:
            self._bar.close()


class ClassifierTrainer(TrainerBase):
    """
    Trains a classifier with Detectron2's SimpleTrainer and hooks: per-iteration warmup
    and cosine/step learning rate, checkpoints (atomic, with optimizer and scheduler
    state) and evaluation at epoch ends, ``metrics.json``, a progress bar, and a stop
    before the optimizer step when gradients become NaN/inf. With several processes
    (``detectron2.engine.launch``) the model is wrapped in DistributedDataParallel,
    NCCL on GPUs, Gloo on CPUs; BatchNorm statistics are those of process 0.
    """

    def __init__(
        self,
        model: nn.Module,
        train_loader,
        val_loader,
        config: Optional[ClassifierTrainConfig] = None,
        output_dir: Optional[str] = None,
        device: Optional[str] = None,
    ):
        """
        Args:
            model: the classifier, ``(N, 3, H, W) -> (N, num_classes)`` logits; moved to
                ``device``. Its weights are trained in place.
            train_loader: yields ``(images, labels)``; its length is one epoch. Every
                process must have the same number of batches.
            val_loader: yields ``(images, labels)``; each process its share.
            config: see :class:`ClassifierTrainConfig` (default: its defaults).
            output_dir: where checkpoints and ``metrics.json`` go; None keeps nothing.
            device: "cuda", "cpu", ... (default: the current GPU if there is one).
        """
        super().__init__()
        self.config = config or ClassifierTrainConfig()
        self.iters_per_epoch = len(train_loader)
        if self.iters_per_epoch == 0:
            raise ValueError("The training loader gives no batch: there is nothing to train on.")
        if device is None:
            device = f"cuda:{torch.cuda.current_device()}" if torch.cuda.is_available() else "cpu"
        self.model = model.to(device)
        self.train_loader = train_loader
        self.val_loader = val_loader
        self.output_dir = output_dir
        self.optimizer = build_classifier_optimizer(self.model, self.config)
        self.scheduler = build_classifier_lr_scheduler(
            self.optimizer, self.config, self.iters_per_epoch
        )
        self.start_iter = 0
        self.max_iter = self.config.epochs * self.iters_per_epoch

        loss_model = ClassificationLoss(self.model, self.config.label_smoothing)
        ddp_kwargs = {} if str(device).startswith("cuda") else {"device_ids": None}
        # broadcast_buffers: every process keeps process 0's BN statistics, so that all
        # evaluate and save the same model.
        loss_model = create_ddp_model(loss_model, broadcast_buffers=True, **ddp_kwargs)
        self._batches = _EpochBatches(train_loader, self.config.seed)
        self._trainer = SimpleTrainer(loss_model, self._batches, self.optimizer)

        self.checkpointer = AtomicCheckpointer(
            self.model, output_dir or "", trainer=weakref.proxy(self)
        )
        advice = "Lower the learning rate or lengthen the warmup, then resume."
        self._trainer.register_hooks(
            [StopOnDivergence(loss_model, self.optimizer, self.checkpointer, advice)]
        )
        self._last_eval_results: Optional[Dict] = None
        self.register_hooks(self.build_hooks())

    def build_hooks(self):
        config, epoch = self.config, self.iters_per_epoch
        ret = [
            hooks.IterationTimer(),
            hooks.LRScheduler(self.optimizer, self.scheduler),
        ]
        if self.output_dir and comm.is_main_process():
            ret.append(
                hooks.PeriodicCheckpointer(
                    self.checkpointer,
                    config.checkpoint_period * epoch,
                    max_to_keep=config.max_to_keep,
                )
            )
        # After the checkpointer, as in Detectron2: a failing evaluation leaves the
        # checkpoint of the epoch it evaluates.
        ret.append(hooks.EvalHook(config.eval_period * epoch, self._evaluate))
        if comm.is_main_process():
            ret.append(ProgressBar(epoch, enabled=config.progress))
            if self.output_dir:
                os.makedirs(self.output_dir, exist_ok=True)
                writer = JSONWriter(os.path.join(self.output_dir, "metrics.json"))
                ret.append(hooks.PeriodicWriter([writer], period=config.log_period))
        return ret

    @property
    def epoch(self) -> int:
        """Epochs completed (after the current iteration, during a step)."""
        return min(self.iter + 1, self.max_iter) // self.iters_per_epoch

    def _evaluate(self) -> Dict:
        if comm.get_world_size() > 1:
            # DDP broadcasts BN statistics from process 0 before each forward; the last
            # training forward has changed them in the other processes since.
            for buffer in self.model.buffers():
                torch.distributed.broadcast(buffer, src=0)
        results = evaluate_classifier(self.model, self.val_loader)
        self._last_eval_results = dict(results, epoch=self.epoch)
        if comm.is_main_process():
            logger.info(
                "Epoch %d/%d: top-1 %.2f%%, top-5 %.2f%% on %d validation images",
                self.epoch,
                self.config.epochs,
                results["top1"],
                results["top5"],
                results["num_images"],
            )
        return results

    def run_step(self):
        self._trainer.iter = self.iter
        self._trainer.run_step()

    def resume_or_load(self, weights: str = "", resume: bool = True) -> None:
        """
        With ``resume`` and a checkpoint in the output folder: continue from the last one
        (weights, optimizer, scheduler, iteration). Otherwise load the model weights of
        ``weights`` if given (a checkpoint of this trainer or any file Detectron2's
        checkpointer reads) and start at iteration 0.
        """
        if resume and self.output_dir and self.checkpointer.has_checkpoint():
            self.checkpointer.resume_or_load(weights, resume=True)
            # The checkpoint holds the iteration that had just finished.
            self.start_iter = self.iter + 1
        elif weights:
            self.checkpointer.load(weights, checkpointables=[])
        self._batches.start_iter = self.start_iter

    def train(self) -> Dict:
        """
        Trains from ``start_iter`` to the last epoch and evaluates.

        Returns:
            dict: "top1", "top5", "num_images" of the final evaluation, "epoch",
            "iteration" (iterations done).
        """
        super().train(self.start_iter, self.max_iter)
        if self._last_eval_results is None:
            raise RuntimeError(f"Training stopped at iteration {self.iter} before evaluating.")
        return dict(self._last_eval_results, iteration=min(self.iter, self.max_iter))

    def state_dict(self):
        ret = super().state_dict()
        ret["_trainer"] = self._trainer.state_dict()
        ret["iters_per_epoch"] = self.iters_per_epoch
        return ret

    def load_state_dict(self, state_dict):
        saved = state_dict.get("iters_per_epoch", self.iters_per_epoch)
        if saved != self.iters_per_epoch:
            raise ValueError(
                f"The checkpoint in {self.output_dir} was written with {saved} iterations per "
                f"epoch, this run has {self.iters_per_epoch}: resume with the same data, "
                f"batch size and number of processes, or start in a new output folder."
            )
        super().load_state_dict(state_dict)
        self._trainer.load_state_dict(state_dict["_trainer"])
