"""
``detectron2.model_zoo`` for this project's configs: yacs configs (``"*.yaml"``, read by
:func:`atto_detectron.config.load_config`) and LazyConfigs (``"lazy/*.py"``).

No trained weights are published, so ``trained=True`` is an error that says how to
train them.
"""

import fnmatch
import glob
import os
from typing import List, Optional

import torch

import detectron2
from detectron2.config import CfgNode, LazyConfig, instantiate
from detectron2.modeling import build_model

from ..config import load_config

__all__ = ["get", "get_config", "get_config_file", "list_configs"]

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
# The configs inside the installed package: setup.py links (or copies) the
# repository's configs/ folder here at build time, as Detectron2's setup.py does.
_PACKAGE_CONFIGS = os.path.join(_PACKAGE_DIR, "configs")
# A source checkout that no setup.py has run in yet: its configs/ folder itself.
_CHECKOUT_CONFIGS = os.path.join(_PACKAGE_DIR, "..", "..", "configs")
# A file that every copy of the configs holds.
_MARKER = "Base-AttoNet-FPN.yaml"

# Files under configs/ that are not a model's config: the parts that other configs load
# (``_BASE_``, LazyConfig imports).
_NOT_MODEL_CONFIGS = ("Base-*.yaml", "lazy/common.py")


def _configs_dir() -> str:
    for folder in (_PACKAGE_CONFIGS, _CHECKOUT_CONFIGS):
        if os.path.isfile(os.path.join(folder, _MARKER)):
            return os.path.normpath(folder)
    raise RuntimeError(
        f"atto_detectron's configs are not installed (no {_PACKAGE_CONFIGS}): reinstall the "
        f"package from the repository (pip install .), whose setup.py ships configs/."
    )


def list_configs() -> List[str]:
    """
    The model configs of the zoo, as paths relative to the configs folder: the yacs
    configs (``"atto_maskrcnn_voc.yaml"``, ``"synth/atto_maskrcnn_synth.yaml"``, ...)
    and the LazyConfigs (``"lazy/atto_maskrcnn_voc.py"``, ...).
    """
    root = _configs_dir()
    found = []
    for pattern in ("**/*.yaml", "lazy/*.py"):
        for path in glob.glob(os.path.join(root, pattern), recursive=True):
            name = os.path.relpath(path, root).replace(os.sep, "/")
            if not any(fnmatch.fnmatch(name, p) for p in _NOT_MODEL_CONFIGS):
                found.append(name)
    return sorted(found)


def get_config_file(config_path: str) -> str:
    """
    Returns the path of a config of the zoo.

    Args:
        config_path: relative to the configs folder, e.g. ``"atto_maskrcnn_voc.yaml"``,
            ``"synth/atto_maskrcnn_synth.yaml"`` or ``"lazy/atto_maskrcnn_voc.py"``.

    Raises:
        RuntimeError: no such config; the message lists the available ones.
    """
    root = _configs_dir()
    path = os.path.normpath(os.path.join(root, config_path))
    if not path.startswith(root + os.sep) or not os.path.isfile(path):
        raise RuntimeError(
            f"{config_path!r} is not in atto-detectron's model zoo. Available configs: "
            f"{', '.join(list_configs())}."
        )
    return path


def _is_lazy(path: str) -> bool:
    return path.endswith(".py")


def _lazyconfig_train_net() -> str:
    # The sal-detectron2 wheel installs Detectron2's tools/ next to the package; a
    # source build of Detectron2 has them in its checkout.
    path = os.path.join(
        os.path.dirname(detectron2.__file__), "..", "tools", "lazyconfig_train_net.py"
    )
    return os.path.normpath(path) if os.path.isfile(path) else "tools/lazyconfig_train_net.py"


def _no_trained_weights(config_path: str, path: str) -> RuntimeError:
    if _is_lazy(path):
        train = f"python {_lazyconfig_train_net()} --config-file configs/{config_path}"
        load = "train.init_checkpoint=<train.output_dir>/model_final.pth"
    else:
        train = f"python -m atto_detectron.tools.train_net --config-file {path}"
        load = "MODEL.WEIGHTS <OUTPUT_DIR>/model_final.pth"
    return RuntimeError(
        f"No trained weights are published for {config_path!r}: trained=True has nothing to "
        f"load. Train them: `{train}`; then load them with {load}, or build the model with "
        f"trained=False and atto_detectron.checkpoint.AtomicCheckpointer(model)"
        f".load(<model_final.pth>)."
    )


def _load(config_path: str, trained: bool, device: Optional[str]):
    path = get_config_file(config_path)
    if trained:
        raise _no_trained_weights(config_path, path)
    if _is_lazy(path):
        return LazyConfig.load(path)
    return load_config(path, device=device)


def get_config(config_path: str, trained: bool = False):
    """
    Returns a config of the zoo.

    Args:
        config_path: as in :func:`get_config_file`.
        trained: must be False: no trained weights are published (RuntimeError that says
            how to train them).

    Returns:
        CfgNode (yacs configs, from :func:`atto_detectron.config.load_config`, so with
        the AttoNet keys and, where CUDA is unavailable, on CPU) or omegaconf.DictConfig
        (LazyConfigs).
    """
    return _load(config_path, trained, device=None)


def get(config_path: str, trained: bool = False, device: Optional[str] = None):
    """
    Builds the model of a config of the zoo (random weights), in eval mode.

    Args:
        config_path: as in :func:`get_config_file`.
        trained: must be False, see :func:`get_config`.
        device: "cpu", "cuda", ...; default: "cuda" where available, else "cpu".

    Returns:
        torch.nn.Module: Detectron2's ``build_model`` of a yacs config, or
        ``instantiate(cfg.model)`` of a LazyConfig, on ``device``.
    """
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    cfg = _load(config_path, trained, device)
    if isinstance(cfg, CfgNode):
        model = build_model(cfg)
    else:
        model = instantiate(cfg.model).to(device)
    return model.eval()
