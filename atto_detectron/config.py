"""Config keys of the AttoNet backbones, and the one way this project loads a config."""

import logging
import os
from typing import Optional, Sequence

import torch
import yaml

from detectron2.config import CfgNode as CN
from detectron2.config import get_cfg

__all__ = [
    "add_attonet_config",
    "add_model_ema_config",
    "cpu_norm_notes",
    "load_config",
    "use_cpu_norms",
]

logger = logging.getLogger(__name__)


def add_attonet_config(cfg):
    """
    Adds ``cfg.MODEL.ATTONET`` to a Detectron2 config. Call it before
    ``cfg.merge_from_file`` on any yaml that sets these keys.

    Keys:
        VARIANT: "A".."D" (or "AttoNet-A".."AttoNet-D"), the networks of Table 1.
        SPEC: path of a spec file (yaml/json, the format of
            :func:`atto_detectron.modeling.save_attonet_spec`) describing another AttoNet,
            e.g. one found by tools/explore_design.py; when set, it replaces VARIANT.
        OUT_FEATURES: outputs among "stem", "res2".."res5" (strides 4, 4, 8, 16, 32).
        NORM: "BN", "SyncBN", "FrozenBN", "GN" (groups adapted to AttoNet widths), "".

    Freezing is Detectron2's own ``MODEL.BACKBONE.FREEZE_AT``, as for ResNet.

    Also adds the peer backbones' keys, ``cfg.MODEL.MOBILENET_V2`` and
    ``cfg.MODEL.SHUFFLENET_V2`` (OUT_FEATURES and NORM, as above), for
    ``build_mobilenet_v2_fpn_backbone`` and ``build_shufflenet_v2_fpn_backbone``, and
    the weight average's, ``cfg.MODEL_EMA`` (see :func:`add_model_ema_config`).
    """
    cfg.MODEL.ATTONET = CN()
    cfg.MODEL.ATTONET.VARIANT = "A"
    cfg.MODEL.ATTONET.SPEC = ""
    cfg.MODEL.ATTONET.OUT_FEATURES = ["res2", "res3", "res4", "res5"]
    cfg.MODEL.ATTONET.NORM = "BN"
    cfg.register_renamed_key(
        "MODEL.ATTONET.FREEZE_AT",
        "MODEL.BACKBONE.FREEZE_AT",
        message="AttoNet reads Detectron2's MODEL.BACKBONE.FREEZE_AT, as ResNet does.",
    )
    for key in ("MOBILENET_V2", "SHUFFLENET_V2"):
        cfg.MODEL[key] = CN()
        cfg.MODEL[key].OUT_FEATURES = ["res2", "res3", "res4", "res5"]
        cfg.MODEL[key].NORM = "BN"
    add_model_ema_config(cfg)
    return cfg


def add_model_ema_config(cfg):
    """
    Adds ``cfg.MODEL_EMA``: an exponential moving average of the weights during
    training (:class:`atto_detectron.engine.ema.ModelEMA`), as d2go names it.

    Keys:
        ENABLED: keep the average, checkpoint it, and evaluate it instead of the last
            weights: at the end of training, and with ``--eval-only`` / the demo when the
            weights file holds one.
        DECAY: weight of the old average per iteration; 1 / (1 - DECAY) iterations is
            about the span it averages over.
    """
    cfg.MODEL_EMA = CN()
    cfg.MODEL_EMA.ENABLED = False
    cfg.MODEL_EMA.DECAY = 0.999
    return cfg


def load_config(
    config_file: str, opts: Sequence[str] = (), device: Optional[str] = None, freeze: bool = False
):
    """
    Loads a yacs config of this project (or any Detectron2 yaml) with the AttoNet keys.

    The yaml file and its ``_BASE_`` files are read with ``yaml.safe_load``: a Python
    tag (``!!python/...``) is an error, never executed.

    Args:
        config_file: path of the yaml file.
        opts: ``KEY VALUE`` overrides, as on Detectron2's command lines.
        device: "cpu" or "cuda" to override ``MODEL.DEVICE``; None keeps the config's,
            except that a CUDA device falls back to "cpu" where CUDA is unavailable.
            On CPU, SyncBN norms become Detectron2's naiveSyncBN (see :func:`use_cpu_norms`).
        freeze: return the config frozen.

    Raises:
        FileNotFoundError: the config file does not exist.
        ValueError: the yaml holds a Python tag, naming the file.
    """
    if not os.path.isfile(config_file):
        raise FileNotFoundError(f"Config file {config_file!r} does not exist.")
    cfg = get_cfg()
    add_attonet_config(cfg)
    try:
        cfg.merge_from_file(config_file, allow_unsafe=False)
    except yaml.constructor.ConstructorError as e:
        raise ValueError(
            f"{config_file} (or one of its _BASE_ files) uses a YAML tag that would run "
            f"Python code ({e.problem} {e.problem_mark}). Configs are read with "
            f"yaml.safe_load: write the value as plain YAML."
        ) from e
    cfg.merge_from_list(list(opts))
    if device is not None:
        cfg.MODEL.DEVICE = device
    elif cfg.MODEL.DEVICE.startswith("cuda") and not torch.cuda.is_available():
        logger.info(f"MODEL.DEVICE is {cfg.MODEL.DEVICE!r} but CUDA is unavailable: using cpu.")
        cfg.MODEL.DEVICE = "cpu"
    if cfg.MODEL.DEVICE == "cpu":
        use_cpu_norms(cfg)
    if freeze:
        cfg.freeze()
    return cfg


def cpu_norm_notes(cfg) -> list:
    """
    One line for each ``NORM`` key under ``cfg.MODEL`` that is ``naiveSyncBN`` on CPU
    (what :func:`use_cpu_norms` makes of SyncBN), for a run's log.
    """
    if cfg.MODEL.DEVICE != "cpu":
        return []
    return [
        f"{path}.NORM is naiveSyncBN: on CPU, SyncBN runs as Detectron2's naiveSyncBN (the "
        f"same statistics, all-reduced over Gloo; PyTorch's SyncBatchNorm needs GPUs)."
        for path, node in _config_nodes(cfg.MODEL, "MODEL")
        if node.get("NORM") == "naiveSyncBN"
    ]


def use_cpu_norms(cfg):
    """
    Replaces "SyncBN" in every ``NORM`` key under ``cfg.MODEL`` with "naiveSyncBN".

    PyTorch's SyncBatchNorm runs on GPUs only (DistributedDataParallel rejects it on
    CPU); Detectron2's NaiveSyncBatchNorm computes the same batch statistics over all
    processes with an all-reduce, which Gloo runs on CPU. In one process both are
    plain BatchNorm, and their parameters and buffers have the same names, so weights
    move between them unchanged.
    """
    for path, node in _config_nodes(cfg.MODEL, "MODEL"):
        if node.get("NORM") == "SyncBN":
            node.NORM = "naiveSyncBN"
            logger.info(f"{path}.NORM: SyncBN needs GPUs; on CPU it is naiveSyncBN.")
    return cfg


def _config_nodes(node, path):
    yield path, node
    for key, value in node.items():
        if isinstance(value, CN):
            yield from _config_nodes(value, f"{path}.{key}")
