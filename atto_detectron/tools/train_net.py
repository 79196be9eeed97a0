#!/usr/bin/env python
"""
Trains and evaluates Atto-MaskRCNN (or any config here) with Detectron2's trainer.

    python tools/train_net.py --config-file configs/atto_maskrcnn_voc.yaml
    python tools/train_net.py --config-file configs/atto_maskrcnn_voc.yaml --num-gpus 8
    python tools/train_net.py --config-file ... --resume            # after an interruption
    python tools/train_net.py --config-file ... --eval-only MODEL.WEIGHTS out/model_final.pth

--num-gpus is the number of processes per machine: GPUs (NCCL) where CUDA is available,
CPU processes (Gloo) otherwise, which then share the machine's cores.
Multi-machine: --num-machines, --machine-rank, --dist-url. Options may come before or
after the KEY VALUE overrides.

Each run owns its OUTPUT_DIR (every config names its own): a second run with the same
folder stops at once; a new run does not start over an earlier run's checkpoints
(--resume continues them); --resume refuses checkpoints of another model; --eval-only
needs weights (MODEL.WEIGHTS, or --resume for the last checkpoint of OUTPUT_DIR) and
writes into OUTPUT_DIR/eval_<weights> when OUTPUT_DIR holds a training run.
"""

import contextlib
import difflib
import logging
import os
import re
import sys
import time

from torch.multiprocessing import ProcessRaisedException

from detectron2.data import DatasetCatalog
from detectron2.engine import default_argument_parser, default_setup, launch
from detectron2.modeling import build_model
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger

import atto_detectron  # noqa: F401  (registers backbones and datasets)
from atto_detectron.checkpoint import (
    AtomicCheckpointer,
    CheckpointError,
    CheckpointMismatchError,
    last_checkpoint_file,
    load_weights_file,
)
from atto_detectron.config import ConfigError, cpu_norm_notes, load_config
from atto_detectron.data import VOCDataError
from atto_detectron.engine import (
    AttoTrainer,
    OutputDirError,
    TrainingDiverged,
    earlier_run_files,
    exclusive_output_dir,
    format_summary,
    load_ema_weights_if_enabled,
    parse_args_any_order,
    set_cpu_threads,
    write_results,
)
from atto_detectron.engine.provenance import run_provenance, training_speed

logger = logging.getLogger("atto_detectron")

# Errors whose message says what is wrong and what to do: shown without a traceback.
USER_ERRORS = (
    CheckpointError,
    CheckpointMismatchError,
    ConfigError,
    FileNotFoundError,
    OutputDirError,
    TrainingDiverged,
    VOCDataError,
)


def load_run_config(args):
    """The config of this run (frozen): the file, the overrides, and its OUTPUT_DIR."""
    cfg = load_config(args.config_file, args.opts)
    check_dataset_names(cfg)
    if args.eval_only:
        _choose_eval_weights_and_folder(cfg, args)
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


def _choose_eval_weights_and_folder(cfg, args):
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


def main(args):
    set_cpu_threads()  # CPU processes of one machine share its cores
    cfg = load_run_config(args)
    with claim_output_dir(cfg, args):
        default_setup(cfg, args)
        # This project's messages go to log.txt too, beside Detectron2's.
        setup_logger(cfg.OUTPUT_DIR, distributed_rank=comm.get_rank(), name="atto_detectron")
        for note in cpu_norm_notes(cfg):
            logger.info(note)
        if args.eval_only:
            model = AttoTrainer.build_model(cfg)
            checkpoint = AtomicCheckpointer(model, save_dir=cfg.OUTPUT_DIR).resume_or_load(
                cfg.MODEL.WEIGHTS, resume=False
            )
            load_ema_weights_if_enabled(model, cfg)
            provenance = provenance_at_start(cfg, model)
            start = time.perf_counter()
            results = AttoTrainer.test(cfg, model)
            timing = {"eval_seconds": time.perf_counter() - start}
            report(cfg, results, checkpoint.get("iteration", -1), provenance, timing)
            return results

        trainer = AttoTrainer(cfg)
        trainer.resume_or_load(resume=args.resume)
        provenance = provenance_at_start(cfg, trainer.model)
        start = time.perf_counter()
        trainer.train()  # evaluates after the last iteration, whatever TEST.EVAL_PERIOD
        timing = {
            # This invocation's: a resumed run counts from where it resumed.
            "wall_seconds": time.perf_counter() - start,
            "start_iteration": trainer.start_iter,
            "eval_seconds": trainer.eval_seconds,
            **training_speed(os.path.join(cfg.OUTPUT_DIR, "metrics.json")),
        }
        report(cfg, trainer.eval_results, trainer.iter, provenance, timing)
        return trainer.eval_results


def get_parser():
    # Detectron2's parser: --config-file (argparse also takes --config), --resume,
    # --eval-only, --num-gpus, --num-machines, --machine-rank, --dist-url, KEY VALUE opts.
    parser = default_argument_parser(epilog=__doc__)
    parser.add_argument(
        "--allow-random-weights",
        action="store_true",
        help="let --eval-only evaluate a randomly initialised model (no MODEL.WEIGHTS)",
    )
    return parser


def parse_args(argv=None):
    parser = get_parser()
    args = parse_args_any_order(parser, argv)
    if args.num_gpus < 1 or args.num_machines < 1:
        parser.error(
            f"--num-gpus {args.num_gpus} --num-machines {args.num_machines}: each must be 1 "
            f"or more (processes per machine, machines)"
        )
    return args


def dist_url_for(args) -> str:
    """
    ``--dist-url``, except on one machine without an explicit one: "auto" (a free port)
    instead of Detectron2's default port, which is fixed per user, so that two runs at
    once on one machine (e.g. `make demo` and the backbone grid) do not collide.
    """
    if args.num_machines == 1 and args.dist_url == get_parser().get_default("dist_url"):
        return "auto"
    return args.dist_url


def run(args):
    """Launches :func:`main` in ``args.num_gpus`` processes per machine."""
    launch(
        main,
        args.num_gpus,
        num_machines=args.num_machines,
        machine_rank=args.machine_rank,
        dist_url=dist_url_for(args),
        args=(args,),
    )


def cli(argv=None):
    """
    The command line: errors that say what to do are one line on stderr, exit code 1, in
    one process and from the processes of --num-gpus alike.
    """
    args = parse_args(argv)
    print("Command Line Args:", args)
    try:
        run(args)
    except USER_ERRORS as e:
        sys.exit(f"error: {e}")
    except ProcessRaisedException as e:
        message = user_error_of_process(str(e))
        if message is None:
            raise
        sys.exit(f"error: {message}")


def user_error_of_process(traceback_text: str):
    """
    The message of a USER_ERRORS exception that ended a training process, from the
    traceback text torch.multiprocessing passes to the launching process; None for
    other errors.
    """
    names = {cls.__name__ for cls in USER_ERRORS}
    lines = traceback_text.rstrip().splitlines()
    for index in range(len(lines) - 1, -1, -1):
        match = re.match(r"^([\w.]+): (.*)$", lines[index])
        if match and match.group(1).rsplit(".", 1)[-1] in names:
            return " ".join([match.group(2)] + [line.strip() for line in lines[index + 1 :]])
    return None


if __name__ == "__main__":
    cli()
