"""
The policy of a training or evaluation run of tools/train_net.py: which config and
weights it runs, which OUTPUT_DIR it may write and resume, what its report records. The
tool itself (atto_detectron/tools/train_net.py) is the command line around these.
"""

import contextlib
import difflib
import logging
import os

from detectron2.data import DatasetCatalog
from detectron2.engine import default_setup
from detectron2.modeling import build_model
from detectron2.utils import comm

from ..checkpoint import (
    AtomicCheckpointer,
    CheckpointMismatchError,
    last_checkpoint_file,
    load_weights_file,
)
from ..config import ConfigError, load_config
from .output_dir import OutputDirError, earlier_run_files, exclusive_output_dir
from .provenance import run_provenance
from .results import format_summary, write_results
from .trainer import AttoTrainer

__all__ = [
    "check_dataset_names",
    "check_output_dir",
    "claim_output_dir",
    "load_run_config",
    "provenance_at_start",
    "report",
    "setup",
]

logger = logging.getLogger(__name__)


def load_run_config(args):
    """The config of this run (frozen): the file, the overrides, and its OUTPUT_DIR."""
    cfg = load_config(args.config_file, args.opts)
    check_dataset_names(cfg)
    if args.eval_only:
        choose_eval_weights_and_folder(cfg, args)
    cfg.freeze()
    return cfg


def check_dataset_names(cfg):
    """Raises ConfigError naming the key and the closest registered names for a typo."""
    registered = DatasetCatalog.list()
    keys = [("DATASETS.TRAIN", cfg.DATASETS.TRAIN), ("DATASETS.TEST", cfg.DATASETS.TEST)]
    for key, names in keys:
        for name in names:
            if name not in registered:
                close = difflib.get_close_matches(name, registered, n=3, cutoff=0.6)
                hint = f"; did you mean {' or '.join(close)}?" if close else ""
                raise ConfigError(
                    f"{key}: no dataset {name!r} is registered{hint} `import atto_detectron` "
                    f"registers the VOC and generated ones (docs/DATA.md)."
                )


def choose_eval_weights_and_folder(cfg, args):
    training_run = earlier_run_files(cfg.OUTPUT_DIR)
    if args.resume and "last_checkpoint" in training_run:
        # --eval-only --resume: the last checkpoint of OUTPUT_DIR.
        cfg.MODEL.WEIGHTS = last_checkpoint_file(cfg.OUTPUT_DIR)
    if not cfg.MODEL.WEIGHTS and not args.allow_random_weights:
        if args.resume:
            raise OutputDirError(
                f"--eval-only --resume: OUTPUT_DIR {cfg.OUTPUT_DIR} holds no checkpoint "
                f"(no last_checkpoint file). Give the run's folder as OUTPUT_DIR, or its "
                f"weights as MODEL.WEIGHTS <model_final.pth>."
            )
        raise OutputDirError(
            "--eval-only without weights would evaluate a randomly initialised model. Give "
            "MODEL.WEIGHTS <model_final.pth>, or --resume to evaluate the last checkpoint of "
            f"OUTPUT_DIR ({cfg.OUTPUT_DIR}), or --allow-random-weights to do so on purpose."
        )
    if training_run:
        # Keep the training run's results.json and config.yaml.
        name = os.path.splitext(os.path.basename(cfg.MODEL.WEIGHTS))[0] or "random_weights"
        cfg.OUTPUT_DIR = os.path.join(cfg.OUTPUT_DIR, f"eval_{name}")
        logger.info(f"Evaluation results go to {cfg.OUTPUT_DIR}.")


def check_output_dir(cfg, args):
    """
    Refuses a training run that would overwrite an earlier run of its OUTPUT_DIR, or
    resume from another model's checkpoint: before Detectron2's default_setup writes
    config.yaml there.
    """
    if args.eval_only:
        return
    found = earlier_run_files(cfg.OUTPUT_DIR)
    if found and not args.resume:
        raise OutputDirError(
            f"OUTPUT_DIR {cfg.OUTPUT_DIR} holds an earlier run ({', '.join(found)}). Add "
            f"--resume to continue it, or give this run another folder (OUTPUT_DIR <folder>)."
        )
    if args.resume and "last_checkpoint" in found:
        model_cfg = cfg.clone()
        model_cfg.defrost()
        model_cfg.MODEL.DEVICE = "cpu"
        model = build_model(model_cfg)
        checkpointer = AtomicCheckpointer(model, cfg.OUTPUT_DIR)
        try:
            resume_from = checkpointer.check_resumable(
                AttoTrainer.build_optimizer(model_cfg, model)
            )
        except CheckpointMismatchError as e:
            raise CheckpointMismatchError(f"--resume with {args.config_file}: {e}") from None
        iteration = load_weights_file(resume_from).get("iteration", -1) if resume_from else -1
        if iteration + 1 > cfg.SOLVER.MAX_ITER:
            raise ConfigError(
                f"--resume: {resume_from} is at iteration {iteration + 1}, past SOLVER.MAX_ITER "
                f"{cfg.SOLVER.MAX_ITER}, so nothing would train. Raise SOLVER.MAX_ITER to go "
                f"on, or evaluate it with --eval-only --resume."
            )


@contextlib.contextmanager
def claim_output_dir(cfg, args):
    """On the main process: the OUTPUT_DIR lock and :func:`check_output_dir`."""
    if not comm.is_main_process():
        yield
        return
    with exclusive_output_dir(cfg.OUTPUT_DIR):
        check_output_dir(cfg, args)
        yield


def setup(args):
    """The run's config, after Detectron2's default_setup (logging, seeding, config.yaml)."""
    cfg = load_run_config(args)
    default_setup(cfg, args)
    return cfg


def provenance_at_start(cfg, model=None):
    """Where this run comes from (code, machine, data), read before it starts."""
    if not comm.is_main_process():
        return None
    if model is not None and hasattr(model, "module"):  # DistributedDataParallel
        model = model.module
    return run_provenance(cfg, model, processes=comm.get_world_size())


def report(cfg, results, iteration, provenance=None, timing=None):
    if not comm.is_main_process():
        return
    provenance = dict(provenance or {}, timing=timing or {})
    record = write_results(cfg, results, iteration, provenance=provenance)
    logger.info(
        "Final results (also in %s/results.json):\n%s", cfg.OUTPUT_DIR, format_summary(record)
    )
    print(format_summary(record), flush=True)
