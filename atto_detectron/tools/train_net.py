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
import logging
import multiprocessing
import os
import re
import signal
import sys
import threading
import time

from torch.multiprocessing import ProcessRaisedException

from detectron2.engine import default_argument_parser, default_setup, launch
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger

import atto_detectron  # noqa: F401  (registers backbones and datasets)
from atto_detectron.checkpoint import (
    AtomicCheckpointer,
    CheckpointError,
    CheckpointMismatchError,
)
from atto_detectron.config import ConfigError, cpu_norm_notes
from atto_detectron.data import VOCDataError
from atto_detectron.engine import (
    AttoTrainer,
    OutputDirError,
    TrainingDiverged,
    load_ema_weights_if_enabled,
    parse_args_any_order,
    set_cpu_threads,
)
from atto_detectron.engine.provenance import training_speed
from atto_detectron.engine.runs import (
    claim_output_dir,
    load_run_config,
    provenance_at_start,
    report,
)

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


@contextlib.contextmanager
def training_processes_stop_with_this_one():
    """
    While it is active, a SIGTERM to this process (``kill PID``) first terminates the
    training processes it started: Detectron2's launch (torch.multiprocessing's spawn)
    would leave them training on, orphaned, in the run's OUTPUT_DIR. They stop as after a
    kill; ``--resume`` goes on from the last checkpoint. (Ctrl-C reaches them already:
    the terminal signals the whole process group.)
    """
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread
        return

    def stop(signum, frame):
        for process in multiprocessing.active_children():
            process.terminate()
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run(args):
    """Launches :func:`main` in ``args.num_gpus`` processes per machine."""
    with training_processes_stop_with_this_one():
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
