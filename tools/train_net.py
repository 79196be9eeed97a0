#!/usr/bin/env python
"""
Trains and evaluates Atto-MaskRCNN (or any config here) with Detectron2's trainer.

    python tools/train_net.py --config-file configs/atto_maskrcnn_voc.yaml
    python tools/train_net.py --config-file configs/atto_maskrcnn_voc.yaml --num-gpus 8
    python tools/train_net.py --config-file ... --resume            # after an interruption
    python tools/train_net.py --config-file ... --eval-only MODEL.WEIGHTS out/model_final.pth

--num-gpus is the number of processes per machine: GPUs (NCCL) where CUDA is available,
CPU processes (Gloo) otherwise, which then share the machine's cores.
Multi-machine: --num-machines, --machine-rank, --dist-url.
"""

import logging

import torch

from detectron2.config import get_cfg
from detectron2.engine import default_argument_parser, default_setup, launch
from detectron2.utils import comm

import atto_detectron  # noqa: F401  (registers backbones and datasets)
from atto_detectron import add_attonet_config
from atto_detectron.checkpoint import AtomicCheckpointer
from atto_detectron.engine import AttoTrainer, format_summary, set_cpu_threads, write_results

logger = logging.getLogger("atto_detectron")


def setup(args):
    cfg = get_cfg()
    add_attonet_config(cfg)
    cfg.merge_from_file(args.config_file)
    cfg.merge_from_list(args.opts)
    if cfg.MODEL.DEVICE.startswith("cuda") and not torch.cuda.is_available():
        cfg.MODEL.DEVICE = "cpu"
    cfg.freeze()
    default_setup(cfg, args)
    return cfg


def report(cfg, results, iteration):
    if not comm.is_main_process():
        return
    record = write_results(cfg, results, iteration)
    logger.info(
        "Final results (also in %s/results.json):\n%s", cfg.OUTPUT_DIR, format_summary(record)
    )
    print(format_summary(record), flush=True)


def main(args):
    set_cpu_threads()  # CPU processes of one machine share its cores
    cfg = setup(args)
    if args.eval_only:
        model = AttoTrainer.build_model(cfg)
        checkpoint = AtomicCheckpointer(model, save_dir=cfg.OUTPUT_DIR).resume_or_load(
            cfg.MODEL.WEIGHTS, resume=args.resume
        )
        results = AttoTrainer.test(cfg, model)
        report(cfg, results, checkpoint.get("iteration", -1))
        return results

    trainer = AttoTrainer(cfg)
    trainer.resume_or_load(resume=args.resume)
    trainer.train()
    results = getattr(trainer, "_last_eval_results", None)
    if results is None:  # TEST.EVAL_PERIOD is 0: evaluate once at the end
        results = AttoTrainer.test(cfg, trainer.model)
    report(cfg, results, trainer.iter)
    return results


def get_parser():
    # Detectron2's parser: --config-file (argparse also takes --config), --resume,
    # --eval-only, --num-gpus, --num-machines, --machine-rank, --dist-url, KEY VALUE opts.
    return default_argument_parser(epilog=__doc__)


if __name__ == "__main__":
    args = get_parser().parse_args()
    print("Command Line Args:", args)
    launch(
        main,
        args.num_gpus,
        num_machines=args.num_machines,
        machine_rank=args.machine_rank,
        dist_url=args.dist_url,
        args=(args,),
    )
