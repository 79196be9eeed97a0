"""Classifier checkpoint -> Detectron2 backbone weights (a ``.pkl`` for MODEL.WEIGHTS).

The format is that of Detectron2's ``tools/convert-torchvision-to-d2.py``: a pickled
``{"model": {name: ndarray}, "__author__": ..., "matching_heuristics": True}``. Names are
the AttoNet backbone's own (``stem.conv1.weight``, ``stages.res2.0.compression.weight``,
...), which is what ``AttoNetClassifier.backbone`` holds under its ``backbone.`` prefix.
``DetectionCheckpointer`` matches each name to the model key that ends with it, so the
same file initializes ``backbone.bottom_up.*`` of ``build_attonet_fpn_backbone`` and
``backbone.*`` of ``build_attonet_backbone``. The classifier's final norm and FC have no
counterpart in a detector and are left out, as are BatchNorm's ``num_batches_tracked``
counters (absent from FrozenBatchNorm2d, and refilled by BatchNorm when missing).

Checkpoints are read with ``torch.load(weights_only=True)``
(:func:`atto_detectron.checkpoint.load_weights_file`): tensors and plain data only, so
that reading a file never runs code from it.
"""

import os
import pickle
from collections import OrderedDict
from typing import Dict, Mapping

import torch

from ..checkpoint import atomic_write, load_weights_file

__all__ = [
    "BACKBONE_PREFIX",
    "INPUT_FORMATS",
    "classifier_to_d2_backbone",
    "convert_classifier_checkpoint",
]

BACKBONE_PREFIX = "backbone."
STEM_CONV = "stem.conv1.weight"
INPUT_FORMATS = ("BGR", "RGB")


def classifier_to_d2_backbone(state_dict: Mapping[str, torch.Tensor], input_format: str = "BGR"):
    """
    Args:
        state_dict: an ``AttoNetClassifier`` state dict (a ``module.`` prefix, from a
            DistributedDataParallel model, is removed).
        input_format: channel order of the detector's input. The classifier is trained on
            RGB images; Detectron2's default (and this project's configs) feed BGR, for
            which the stem's input channels are reversed. "RGB" keeps them, for configs
            with ``INPUT.FORMAT: "RGB"`` and RGB-ordered ``PIXEL_MEAN``/``PIXEL_STD``.

    Returns:
        tuple: (OrderedDict name -> float ndarray of the backbone weights,
        list of the classifier keys left out).
    """
    if input_format not in INPUT_FORMATS:
        raise ValueError(f"input_format must be one of {INPUT_FORMATS}; got {input_format!r}")
    weights, dropped = OrderedDict(), []
    for key, value in state_dict.items():
        name = key[len("module.") :] if key.startswith("module.") else key
        if not name.startswith(BACKBONE_PREFIX) or name.endswith("num_batches_tracked"):
            dropped.append(key)
            continue
        name = name[len(BACKBONE_PREFIX) :]
        value = value.detach().cpu()
        if name == STEM_CONV and input_format == "BGR":
            value = value.flip(1)
        weights[name] = value.numpy()
    if STEM_CONV not in weights:
        raise ValueError(
            f"No '{BACKBONE_PREFIX}{STEM_CONV}' among the {len(state_dict)} weights: this is not "
            f"an AttoNetClassifier state dict (its backbone weights are named "
            f"'{BACKBONE_PREFIX}stem.*' and '{BACKBONE_PREFIX}stages.res*')."
        )
    return weights, dropped


def convert_classifier_checkpoint(
    checkpoint_path: str, output_path: str, input_format: str = "BGR"
) -> Dict:
    """
    Reads a classifier checkpoint (``tools/train_classifier.py``'s ``model_final.pth``,
    or a bare state dict) and writes the backbone weights to ``output_path`` (a ``.pkl``,
    so that Detectron2's checkpointer applies its name matching).

    Returns:
        dict: "converted" (the backbone names written) and "dropped" (classifier keys
        left out).

    Raises:
        CheckpointError: ``checkpoint_path`` cannot be read, or holds Python objects
            other than tensors and plain data (which are never unpickled).
        ValueError: it holds no AttoNetClassifier state dict.
    """
    if not output_path.endswith(".pkl"):
        raise ValueError(
            f"{output_path}: the output must end in .pkl: Detectron2's checkpointer matches "
            f"names by suffix (as the backbone's are prefixed differently in a detector) only "
            f"for .pkl files."
        )
    if not os.path.isfile(checkpoint_path):
        raise FileNotFoundError(f"Classifier checkpoint {checkpoint_path} does not exist.")
    checkpoint = load_weights_file(checkpoint_path)
    state_dict = checkpoint.get("model", checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state_dict, Mapping):
        raise ValueError(
            f"{checkpoint_path} holds neither a state dict nor a checkpoint with a 'model' "
            f"state dict."
        )
    try:
        weights, dropped = classifier_to_d2_backbone(state_dict, input_format)
    except ValueError as e:
        raise ValueError(f"{checkpoint_path}: {e}") from None
    record = {
        "model": weights,
        "__author__": "atto_detectron",
        "matching_heuristics": True,
        "input_format": input_format,
    }
    os.makedirs(os.path.dirname(os.path.abspath(output_path)), exist_ok=True)
    atomic_write(output_path, lambda f: pickle.dump(record, f), mode="wb")
    return {"converted": list(weights), "dropped": dropped}
