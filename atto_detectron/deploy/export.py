"""
Export of a Detectron2 Mask R-CNN (or its backbone) to TorchScript or ONNX with Detectron2's
export tools.

Two things can be exported from a ``GeneralizedRCNN``:

* the whole detector: input one image ``(3, H, W)`` float32 (the model's
  ``INPUT.FORMAT``, 0..255, already resized; any H, W), output the instances of
  ``model.inference(..., do_postprocess=False)``: ``pred_boxes (N, 4)`` in the input's
  coordinates, ``scores (N,)``, ``pred_classes (N,)`` and ``pred_masks (N, 1, M, M)``
  (mask probabilities in each box). Resizing to the original image and pasting the masks
  (:func:`atto_detectron.modeling.detector_postprocess`, Detectron2's with the faster
  paste of :mod:`atto_detectron.modeling.mask_paste`) run after it, as in Detectron2's
  own export;
* the backbone (bottom-up network and FPN): input the normalized, padded batch
  ``(N, 3, H, W)`` that ``model.preprocess_image`` makes (H, W multiples of
  ``size_divisibility``), output the feature maps ("p2".."p6").

Tracing (``TracingAdapter`` + ``torch.jit.trace``) gives TorchScript or ONNX graphs that
accept other input sizes than the sample's; scripting (``scripting_with_instances``) gives
TorchScript only.

The files of an export folder and how ``export_info.json`` is read back are in
:mod:`.export_info`; :class:`ExportedModel` (:mod:`.exported_model`) runs the folder with
the engines of its format (torch.jit, onnxruntime, OpenVINO). Their public names are
importable from here too.
"""

import contextlib
import copy
import json
import os
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
import torchvision
from torch import Tensor, nn

from detectron2.config.instantiate import dump_dataclass
from detectron2.export import TracingAdapter, dump_torchscript_IR, scripting_with_instances
from detectron2.layers import FrozenBatchNorm2d
from detectron2.modeling import GeneralizedRCNN
from detectron2.structures import Boxes

from ..modeling.meta_arch import as_generalized_rcnn
from .export_info import (
    EXPORT_FORMATS,
    EXPORT_METHODS,
    FORMAT_ENGINES,
    INFO_FILE,
    MODEL_FILES,
    _output_names,
    load_outputs_schema,
    read_export_info,
)
from .exported_model import ExportedModel, compare_outputs, openvino_config, outputs_match
from .fusion import fuse_bn

__all__ = [
    "EXPORT_FORMATS",
    "EXPORT_METHODS",
    "DEFAULT_ONNX_OPSET",
    "MODEL_FILES",
    "FORMAT_ENGINES",
    "INFO_FILE",
    "read_export_info",
    "EmptyBatchGroupNorm",
    "prepare_for_export",
    "backbone_input",
    "reference_outputs",
    "export_model",
    "ExportedModel",
    "openvino_config",
    "load_outputs_schema",
    "compare_outputs",
    "outputs_match",
]

# 16 is the first opset whose RoiAlign has Detectron2's aligned (half-pixel) sampling;
# torch 2.3's exporter fails at 18 ("Unrecognized attribute: axes for operator ReduceMax").
DEFAULT_ONNX_OPSET = 16

# Instances fields a GeneralizedRCNN uses at inference, for scripting.
_RCNN_INSTANCE_FIELDS = {
    "proposal_boxes": Boxes,
    "objectness_logits": Tensor,
    "pred_boxes": Boxes,
    "scores": Tensor,
    "pred_classes": Tensor,
    "pred_masks": Tensor,
}


class EmptyBatchGroupNorm(nn.Module):
    """
    GroupNorm computed as instance norm over a ``(N, groups, C / groups, H, W)`` view: the
    same function as ``nn.GroupNorm``, but its ONNX graph also runs on an empty batch.

    torch.onnx exports ``nn.GroupNorm`` with a Reshape to ``[0, groups, -1]``, which
    onnxruntime cannot apply to a tensor with no element ("The input tensor cannot be
    reshaped to the requested shape. Input shape:{0,96,14,14}, requested
    shape:{0,32,-1}"): the mask head of an exported Mask R-CNN then fails on every image
    without detections. This view names every dimension instead.
    """

    def __init__(self, norm: nn.GroupNorm):
        super().__init__()
        self.num_groups = norm.num_groups
        self.channels_per_group = norm.num_channels // norm.num_groups
        self.eps = norm.eps
        self.weight = norm.weight
        self.bias = norm.bias

    def forward(self, x: Tensor) -> Tensor:
        n, c, h, w = x.shape
        grouped = x.reshape(n, self.num_groups, self.channels_per_group, h, w)
        x = F.instance_norm(grouped, eps=self.eps).reshape(n, c, h, w)
        if self.weight is not None:
            x = x * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)
        return x


def _replace_group_norms(module: nn.Module) -> None:
    for parent in list(module.modules()):
        for name, child in parent.named_children():
            if isinstance(child, nn.GroupNorm):
                setattr(parent, name, EmptyBatchGroupNorm(child))


def prepare_for_export(model: nn.Module, fuse: bool = True) -> nn.Module:
    """
    An eval-mode copy of ``model`` ready to export: batch norms that follow a conv folded
    into it (:func:`fuse_bn`, unless ``fuse`` is False), the other (Sync)BatchNorms
    turned into ``FrozenBatchNorm2d`` (the same in eval mode and, unlike SyncBatchNorm,
    scriptable), and the GroupNorms of the ROI heads, whose batch is the detections and
    can be empty, as :class:`EmptyBatchGroupNorm`; a subclass of GeneralizedRCNN (e.g.
    the plugin's, which differs in post-processing only, outside the export) as
    GeneralizedRCNN itself (:func:`~atto_detectron.modeling.as_generalized_rcnn`).
    """
    model = fuse_bn(model) if fuse else copy.deepcopy(model).eval()
    model = as_generalized_rcnn(model)
    model = FrozenBatchNorm2d.convert_frozen_batchnorm(model)
    if isinstance(getattr(model, "roi_heads", None), nn.Module):
        _replace_group_norms(model.roi_heads)
    return model.eval()


def backbone_input(model: GeneralizedRCNN, image: Tensor) -> Tensor:
    """
    The backbone's input for one image, as the detector makes it.

    Args:
        image: ``(3, H, W)`` float image as the detector takes it.

    Returns:
        Tensor: ``(1, 3, H', W')``, normalized and padded to ``size_divisibility``.
    """
    with torch.no_grad():
        return model.preprocess_image([{"image": image}]).tensor


def _detector_inference(model: GeneralizedRCNN, image: Tensor):
    # do_postprocess=False: boxes in the input's coordinates and M x M mask
    # probabilities; resizing and mask pasting stay outside the exported graph.
    instances = model.inference([{"image": image}], do_postprocess=False)[0]
    return [{"instances": instances}]


def reference_outputs(model: GeneralizedRCNN, image: Tensor, backbone_only: bool = False):
    """
    What the exported model should return for ``image`` (see the module docstring): the
    backbone's feature dict for the padded ``image``, or the detector's Instances.
    """
    with torch.no_grad():
        if backbone_only:
            return model.backbone(backbone_input(model, image))
        return _detector_inference(model, image)[0]["instances"]


def _batched_nms_per_index(num_indices: int):
    """
    A traceable ``batched_nms(boxes, scores, idxs, iou_threshold)`` for ``idxs`` in
    ``[0, num_indices)``: one NMS per index (class, or RPN level), unrolled, then all kept
    boxes in decreasing order of score, as torchvision's batched_nms returns them.

    It stands in for torchvision's coordinate trick (boxes of index k shifted by
    k * (max coordinate + 1), one NMS over all of them), which tracing records instead of
    the per-index loop that eager PyTorch runs on large inputs. In ONNX that is one
    NonMaxSuppression over every (box, class) above the score threshold, whose cost grows
    with the square of their number: for 1,000 proposals and 20 classes (the benchmarks'
    workload at 800 x 1067), 92 ms in OpenVINO against 6 ms for 20 NMS over 1,000 on a
    2-core AMD EPYC. The kept boxes are the same.

    It also has no ``if boxes.numel() == 0``, which tracing turns into an ONNX If:
    OpenVINO (2026.4) returns a one-element tensor of garbage from that If when no box is
    left (an image without detections then gets one made-up detection), and NNCF cannot
    build the graph of If bodies that share constants with the main graph.
    """

    def batched_nms(boxes: Tensor, scores: Tensor, idxs: Tensor, iou_threshold: float):
        kept = []
        for index in range(num_indices):
            members = torch.nonzero(idxs == index).squeeze(1)
            keep = torchvision.ops.nms(boxes[members], scores[members], iou_threshold)
            kept.append(members[keep])
        kept = torch.cat(kept)
        return kept[torch.argsort(scores[kept], descending=True)]

    return batched_nms


def _nms_index_bound(model: GeneralizedRCNN) -> int:
    # The indices batched NMS sees in ``model``: its ROI heads' classes, its RPN's levels.
    classes = getattr(model.roi_heads, "num_classes", 1)
    levels = len(getattr(model.proposal_generator, "in_features", ()))
    return max(classes, levels, 1)


@contextlib.contextmanager
def _traceable_batched_nms(num_indices: int):
    # torchvision.ops.boxes.batched_nms (which Detectron2's batched_nms calls) looks the
    # function up at each call, so replacing it for the duration of tracing suffices.
    boxes_module = torchvision.ops.boxes
    original = boxes_module._batched_nms_coordinate_trick
    boxes_module._batched_nms_coordinate_trick = _batched_nms_per_index(num_indices)
    try:
        yield
    finally:
        boxes_module._batched_nms_coordinate_trick = original


def _tracing_adapter(model: GeneralizedRCNN, image: Tensor, backbone_only: bool):
    if backbone_only:
        adapter = TracingAdapter(model.backbone, (backbone_input(model, image),))
    else:
        adapter = TracingAdapter(model, (image,), _detector_inference)
    # A new module is in training mode; torch.onnx.export restores the mode it finds.
    return adapter.eval()


class _ScriptableDetector(nn.Module):
    # Returns each image's fields as a dict rather than Instances, which cannot be
    # returned from a saved scripted model (pytorch/pytorch#46944).
    def __init__(self, model: GeneralizedRCNN):
        super().__init__()
        self.model = model
        self.eval()

    def forward(self, inputs: Tuple[Dict[str, Tensor]]) -> List[Dict[str, Tensor]]:
        instances = self.model.inference(inputs, do_postprocess=False)
        return [i.get_fields() for i in instances]


def export_model(
    model: GeneralizedRCNN,
    image: Tensor,
    output_dir: str,
    export_format: str = "torchscript",
    method: str = "tracing",
    backbone_only: bool = False,
    opset: int = DEFAULT_ONNX_OPSET,
    info: Optional[Dict] = None,
) -> str:
    """
    Exports ``model`` (or its backbone) to ``output_dir``: ``model.ts`` or ``model.onnx``
    and ``export_info.json`` (format, method, input and output names, the outputs'
    schema that :class:`ExportedModel` uses to rebuild Instances, plus ``info``).

    Args:
        model: a GeneralizedRCNN in eval mode, e.g. from :func:`prepare_for_export`.
        image: ``(3, H, W)`` sample image as the detector takes it, traced through.
        export_format: "torchscript" or "onnx".
        method: "tracing" or "scripting" (TorchScript only).
        backbone_only: export ``model.backbone`` instead of the whole detector.
        opset: ONNX opset version.
        info: more entries for ``export_info.json`` (config, preprocessing, ...).

    Returns:
        str: path of the exported model file.
    """
    if export_format not in EXPORT_FORMATS:
        raise ValueError(f"export format must be one of {EXPORT_FORMATS}, got {export_format!r}")
    if method not in EXPORT_METHODS:
        raise ValueError(f"export method must be one of {EXPORT_METHODS}, got {method!r}")
    if method == "scripting" and export_format != "torchscript":
        raise ValueError("scripting exports TorchScript only; use --export-method tracing for ONNX")
    if model.training:
        raise ValueError("export_model: call model.eval() (or prepare_for_export) first")
    os.makedirs(output_dir, exist_ok=True)
    path = os.path.join(output_dir, MODEL_FILES[export_format])
    record = {
        "format": export_format,
        "method": method,
        "backbone_only": backbone_only,
        "sample_image_size": list(image.shape[-2:]),
        "torch_version": torch.__version__,
    }

    if method == "scripting":
        if backbone_only:
            exported = torch.jit.script(model.backbone)
        else:
            exported = scripting_with_instances(_ScriptableDetector(model), _RCNN_INSTANCE_FIELDS)
        torch.jit.save(exported, path)
        dump_torchscript_IR(exported, output_dir)
    else:
        adapter = _tracing_adapter(model, image, backbone_only)
        inputs = adapter.flattened_inputs
        num_indices = _nms_index_bound(model)
        with torch.no_grad(), _traceable_batched_nms(num_indices):
            adapter(*inputs)  # records adapter.outputs_schema
        input_names = ["images"] if backbone_only else ["image"]
        output_names = _output_names(adapter.outputs_schema)
        record.update(
            input_names=input_names,
            output_names=output_names,
            outputs_schema=dump_dataclass(adapter.outputs_schema),
        )
        if export_format == "torchscript":
            with torch.no_grad(), _traceable_batched_nms(num_indices):
                exported = torch.jit.trace(adapter, inputs, check_trace=False)
            torch.jit.save(exported, path)
            dump_torchscript_IR(exported, output_dir)
        else:
            if backbone_only:
                dynamic_axes = {"images": {0: "batch", 2: "height", 3: "width"}}
            else:
                dynamic_axes = {"image": {1: "height", 2: "width"}}
            with _traceable_batched_nms(num_indices):
                torch.onnx.export(
                    adapter,
                    inputs,
                    path,
                    opset_version=opset,
                    input_names=input_names,
                    output_names=output_names,
                    dynamic_axes=dynamic_axes,
                )
            record["opset"] = opset

    record.update(info or {})
    with open(os.path.join(output_dir, INFO_FILE), "w") as f:
        json.dump(record, f, indent=2)
    return path
