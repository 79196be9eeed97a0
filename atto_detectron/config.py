"""Config keys of the AttoNet backbones, and the one way this project loads a config."""

import difflib
import logging
import os
import re
from typing import Optional, Sequence

import torch
import yaml

from detectron2.config import CfgNode as CN
from detectron2.config import get_cfg

__all__ = [
    "ConfigError",
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
            e.g. one found by projects/DesignExploration; when set, it replaces VARIANT.
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


class ConfigError(ValueError):
    """A config file or override that cannot be used, named in the message with the fix."""


def _all_keys(node, prefix=""):
    for key, value in node.items():
        full = f"{prefix}{key}"
        if isinstance(value, CN):
            yield from _all_keys(value, full + ".")
        else:
            yield full


def _unknown_key_error(cfg, key: str, source: str) -> ConfigError:
    close = difflib.get_close_matches(key, list(_all_keys(cfg)), n=3, cutoff=0.6)
    hint = f" Did you mean {' or '.join(close)}?" if close else ""
    return ConfigError(
        f"{source}: {key} is not a config key of Detectron2 or atto_detectron.{hint} Check "
        f"the spelling; a project's own keys need its add_*_config call before loading."
    )


def _merge_error(cfg, error: Exception, source: str) -> Optional[ConfigError]:
    """A one-line ConfigError for yacs' unknown-key and type-mismatch errors, else None."""
    text = str(error.args[0] if error.args else error)
    unknown = re.match(r"Non-existent (?:config )?key: (\S+)", text)
    if unknown:
        return _unknown_key_error(cfg, unknown.group(1), source)
    mismatch = re.match(
        r"Type mismatch \((.+?) vs\. (.+?)\) with values \((.*) vs\. (.*)\) for config key: (\S+)",
        text,
        re.DOTALL,
    )
    if mismatch:
        wanted, given, _, value, key = mismatch.groups()
        example = f" (e.g. {value}.0)" if "float" in wanted and "int" in given else ""
        return ConfigError(
            f"{source}: {key} takes a {wanted.split(chr(39))[1]}, not the "
            f"{given.split(chr(39))[1]} {value}: write it as one{example}."
        )
    return None


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
        ConfigError (a ValueError): naming the file or override and the fix, for a yaml
            with a Python tag, a file that is not YAML (a LazyConfig ``.py``), an unknown
            key (with the closest known ones) or a value of the wrong type.
    """
    if not os.path.isfile(config_file):
        raise FileNotFoundError(f"Config file {config_file!r} does not exist.")
    if config_file.endswith(".py"):
        raise ConfigError(
            f"{config_file} is a LazyConfig (Python); this reads yacs .yaml configs. Train "
            f"LazyConfigs with Detectron2's tools/lazyconfig_train_net.py (docs/TRAINING.md)."
        )
    cfg = get_cfg()
    add_attonet_config(cfg)
    try:
        cfg.merge_from_file(config_file, allow_unsafe=False)
    except yaml.constructor.ConstructorError as e:
        raise ConfigError(
            f"{config_file} (or one of its _BASE_ files) uses a YAML tag that would run "
            f"Python code ({e.problem} {e.problem_mark}). Configs are read with "
            f"yaml.safe_load: write the value as plain YAML."
        ) from e
    except yaml.YAMLError as e:
        raise ConfigError(f"{config_file} (or one of its _BASE_ files) is not valid YAML: {e}")
    except (KeyError, ValueError, AssertionError) as e:
        raise _merge_error(cfg, e, config_file) or e
    if len(opts) % 2:
        raise ConfigError(f"the overrides must be KEY VALUE pairs; {list(opts)[-1]!r} has no value")
    try:
        cfg.merge_from_list(list(opts))
    except (KeyError, ValueError, AssertionError) as e:
        raise _merge_error(cfg, e, "override") or e
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
