"""
Export of a Detectron2 Mask R-CNN (or its backbone) to TorchScript or ONNX with Detectron2's
export tools, and a runner for the exported files.

Two things can be exported from a ``GeneralizedRCNN``:

* the whole detector: input one image ``(3, H, W)`` float32 (the model's
  ``INPUT.FORMAT``, 0..255, already resized; any H, W), output the instances of
  ``model.inference(..., do_postprocess=False)``: ``pred_boxes (N, 4)`` in the input's
  coordinates, ``scores (N,)``, ``pred_classes (N,)`` and ``pred_masks (N, 1, M, M)``
  (mask probabilities in each box). Resizing to the original image and pasting the masks
  (:func:`detectron2.modeling.postprocessing.detector_postprocess`) run after it, as in
  Detectron2's own export;
* the backbone (bottom-up network and FPN): input the normalized, padded batch
  ``(N, 3, H, W)`` that ``model.preprocess_image`` makes (H, W multiples of
  ``size_divisibility``), output the feature maps ("p2".."p6").

Tracing (``TracingAdapter`` + ``torch.jit.trace``) gives TorchScript or ONNX graphs that
accept other input sizes than the sample's; scripting (``scripting_with_instances``) gives
TorchScript only.

:class:`ExportedModel` runs an export folder with the engines of its format
(:data:`FORMAT_ENGINES`): TorchScript with torch.jit; ONNX with onnxruntime or with
OpenVINO's CPU plugin, which reads the same ``model.onnx``; and the OpenVINO IR
(``model.xml``) that :mod:`.quantize` writes for NNCF's INT8 model, with OpenVINO.
"""

import contextlib
import copy
import dataclasses
import json
import os
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
import torchvision
from torch import Tensor, nn

from detectron2.config.instantiate import dump_dataclass
from detectron2.export import TracingAdapter, dump_torchscript_IR, scripting_with_instances
from detectron2.export.flatten import (
    DictSchema,
    IdentitySchema,
    InstancesSchema,
    ListSchema,
    TensorWrapSchema,
    TupleSchema,
    flatten_to_tuple,
)
from detectron2.layers import FrozenBatchNorm2d
from detectron2.modeling import GeneralizedRCNN
from detectron2.structures import BitMasks, Boxes, Instances, ROIMasks, RotatedBoxes

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

EXPORT_FORMATS = ("torchscript", "onnx")
EXPORT_METHODS = ("tracing", "scripting")
# 16 is the first opset whose RoiAlign has Detectron2's aligned (half-pixel) sampling;
# torch 2.3's exporter fails at 18 ("Unrecognized attribute: axes for operator ReduceMax").
DEFAULT_ONNX_OPSET = 16
# "openvino" is OpenVINO's IR, which export_model does not write: the INT8 model of NNCF
# (atto_detectron.deploy.quantize) is saved in it.
MODEL_FILES = {"torchscript": "model.ts", "onnx": "model.onnx", "openvino": "model.xml"}
INFO_FILE = "export_info.json"
# The engines that run each format; the first is ExportedModel's default.
FORMAT_ENGINES = {
    "torchscript": ("torchscript",),
    "onnx": ("onnxruntime", "openvino"),
    "openvino": ("openvino",),
}

# Instances fields a GeneralizedRCNN uses at inference, for scripting.
_RCNN_INSTANCE_FIELDS = {
    "proposal_boxes": Boxes,
    "objectness_logits": Tensor,
    "pred_boxes": Boxes,
    "scores": Tensor,
    "pred_classes": Tensor,
    "pred_masks": Tensor,
}


def _dotted_names(classes) -> Dict[str, type]:
    # Every name Detectron2's dump_dataclass may write for each class: its module or a
    # package above it that re-exports it, then the class name.
    names = {}
    for cls in classes:
        parts = cls.__module__.split(".")
        for k in range(1, len(parts) + 1):
            names[".".join(parts[:k] + [cls.__qualname__])] = cls
    return names


# The only classes an outputs schema of export_info.json may name: the schemas of
# detectron2.export.flatten and the tensor wrappers its TensorWrapSchema rebuilds.
# Detectron2's instantiate() would call whatever "_target_" names, e.g. builtins.open.
_SCHEMA_CLASSES = _dotted_names(
    (ListSchema, TupleSchema, IdentitySchema, DictSchema, InstancesSchema, TensorWrapSchema)
)
_WRAPPED_STRUCTURES = _dotted_names((Boxes, RotatedBoxes, BitMasks, ROIMasks))


def _check_schema(node, info_path: str, where: str = "outputs_schema") -> None:
    # Walks the whole schema before anything is built; see _SCHEMA_CLASSES.
    def refuse(what):
        schemas = ", ".join(sorted({c.__name__ for c in _SCHEMA_CLASSES.values()}))
        structures = ", ".join(sorted({c.__name__ for c in _WRAPPED_STRUCTURES.values()}))
        raise ValueError(
            f"{info_path}: {where} {what}. An export's schema names only Detectron2's export "
            f"schemas ({schemas}) and the structures they wrap ({structures}): this file was "
            f"not written by tools/export_model.py, or was changed. Export the model again."
        )

    if not isinstance(node, dict):
        refuse(f"is {node!r}, not a schema (a dict with '_target_')")
    target = node.get("_target_")
    if not isinstance(target, str) or target not in _SCHEMA_CLASSES:
        refuse(f"names {target!r} as '_target_', which is not allowed")
    cls = _SCHEMA_CLASSES[target]
    fields = {f.name for f in dataclasses.fields(cls)}
    if set(node) != fields | {"_target_"}:
        refuse(f"has the entries {sorted(node)}; {cls.__name__} takes {sorted(fields)}")
    class_name = node.get("class_name")
    if cls is TensorWrapSchema and not (
        isinstance(class_name, str) and class_name in _WRAPPED_STRUCTURES
    ):
        refuse(f"names {class_name!r} as 'class_name', which is not allowed")
    for key, kind in (("sizes", int), ("keys", str)):
        values = node.get(key, [])
        if not isinstance(values, list) or not all(type(v) is kind for v in values):
            refuse(f"has '{key}' {values!r}, not a list of {kind.__name__}")
    if "schemas" in node:
        if not isinstance(node["schemas"], list):
            refuse(f"has 'schemas' {node['schemas']!r}, not a list")
        for index, sub in enumerate(node["schemas"]):
            _check_schema(sub, info_path, f"{where}.schemas[{index}]")


def _build_schema(node):
    # A schema checked by _check_schema: only its allowed classes are called.
    kwargs = {k: v for k, v in node.items() if k != "_target_"}
    if "schemas" in kwargs:
        kwargs["schemas"] = [_build_schema(sub) for sub in kwargs["schemas"]]
    return _SCHEMA_CLASSES[node["_target_"]](**kwargs)


def load_outputs_schema(schema, info_path: str):
    """
    The outputs schema of an ``export_info.json`` (``info_path``, for errors), rebuilt
    with Detectron2's schema classes.

    Raises:
        ValueError: when it names any other class, anywhere in it; nothing is built then.
    """
    _check_schema(schema, info_path)
    return _build_schema(schema)


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
    can be empty, as :class:`EmptyBatchGroupNorm`.
    """
    model = fuse_bn(model) if fuse else copy.deepcopy(model).eval()
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


def _batched_nms_without_if(boxes: Tensor, scores: Tensor, idxs: Tensor, iou_threshold: float):
    # torchvision's coordinate trick (boxes of class k shifted by k * (max coordinate + 1),
    # one NMS for all classes) without its `if boxes.numel() == 0`, which tracing turns
    # into an ONNX If: OpenVINO (2026.4) returns a one-element tensor of garbage from that
    # If when no box is left (an image without detections then gets one made-up
    # detection), and NNCF cannot build the graph of If bodies that share constants with
    # the main graph. The 0 appended keeps max() defined for no boxes and equal to
    # boxes.max() otherwise: Detectron2 clips the boxes to the image before every
    # batched_nms, so their coordinates are >= 0.
    max_coordinate = torch.cat([boxes.reshape(-1), boxes.new_zeros(1)]).max()
    offsets = idxs.to(boxes) * (max_coordinate + torch.tensor(1).to(boxes))
    return torchvision.ops.nms(boxes + offsets[:, None], scores, iou_threshold)


@contextlib.contextmanager
def _traceable_batched_nms():
    # torchvision.ops.boxes.batched_nms (which Detectron2's batched_nms calls) looks the
    # function up at each call, so replacing it for the duration of tracing suffices.
    boxes_module = torchvision.ops.boxes
    original = boxes_module._batched_nms_coordinate_trick
    boxes_module._batched_nms_coordinate_trick = _batched_nms_without_if
    try:
        yield
    finally:
        boxes_module._batched_nms_coordinate_trick = original


def _output_names(schema, prefix: str = "") -> List[str]:
    # Names of the flattened outputs, from the schema: dict keys joined with ".", and
    # "image_size" for the size that ends an Instances.
    if isinstance(schema, DictSchema):
        names = []
        for key, sub in zip(schema.keys, schema.schemas):
            names += _output_names(sub, f"{prefix}{key}.")
        if isinstance(schema, InstancesSchema):
            names.append(f"{prefix}image_size")
        return names
    if isinstance(schema, ListSchema):
        names = []
        for index, sub in enumerate(schema.schemas):
            names += _output_names(sub, prefix if len(schema.schemas) == 1 else f"{prefix}{index}.")
        return names
    return [prefix.rstrip(".")]


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
        with torch.no_grad(), _traceable_batched_nms():
            adapter(*inputs)  # records adapter.outputs_schema
        input_names = ["images"] if backbone_only else ["image"]
        output_names = _output_names(adapter.outputs_schema)
        record.update(
            input_names=input_names,
            output_names=output_names,
            outputs_schema=dump_dataclass(adapter.outputs_schema),
        )
        if export_format == "torchscript":
            with torch.no_grad(), _traceable_batched_nms():
                exported = torch.jit.trace(adapter, inputs, check_trace=False)
            torch.jit.save(exported, path)
            dump_torchscript_IR(exported, output_dir)
        else:
            if backbone_only:
                dynamic_axes = {"images": {0: "batch", 2: "height", 3: "width"}}
            else:
                dynamic_axes = {"image": {1: "height", 2: "width"}}
            with _traceable_batched_nms():
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


def openvino_config(num_threads: Optional[int] = None) -> Dict[str, str]:
    """
    The properties :class:`ExportedModel` compiles OpenVINO models with on "CPU": as many
    threads as torch uses (``num_threads``, default ``torch.get_num_threads()``), the
    latency hint (one request at a time, all threads on it), and f32 inference
    precision, which CPUs with bf16 support would otherwise lower f32 layers to: the
    fp32 engine then matches PyTorch, and the INT8 model runs its non-quantized layers
    (post-processing included) in fp32.
    """
    return {
        "INFERENCE_NUM_THREADS": str(num_threads or torch.get_num_threads()),
        "PERFORMANCE_HINT": "LATENCY",
        "INFERENCE_PRECISION_HINT": "f32",
    }


def read_export_info(export_dir: str) -> Dict:
    """
    The ``export_info.json`` of an export folder, as a dict.

    Raises:
        FileNotFoundError: the folder has none (it is not an export folder).
        ValueError: the file is not a JSON object; both name the file and the fix.
    """
    path = os.path.join(export_dir, INFO_FILE)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"{path} not found: {export_dir!r} is not an export folder of "
            f"tools/export_model.py (expected {INFO_FILE} and a model file)"
        )
    try:
        with open(path) as f:
            info = json.load(f)
    except (OSError, ValueError) as e:
        raise ValueError(f"{path} cannot be read ({e}); export the model again.") from None
    if not isinstance(info, dict):
        raise ValueError(f"{path} holds no JSON object; export the model again.")
    return info


class ExportedModel:
    """
    Runs what :func:`export_model` (or :mod:`.quantize`) wrote, with one of the engines of
    its format (:data:`FORMAT_ENGINES`: torch.jit for TorchScript; onnxruntime or
    OpenVINO for ONNX; OpenVINO for an OpenVINO IR), and rebuilds the PyTorch model's
    outputs: Instances for a detector (as ``model.inference(..., do_postprocess=False)``),
    the feature dict for a backbone. The outputs schema of ``export_info.json`` may name
    only Detectron2's schema classes and the structures they wrap
    (:func:`load_outputs_schema`): reading an export folder calls nothing that the file
    names.

    Example::

        exported = ExportedModel("output/export/atto_maskrcnn_onnx", engine="openvino")
        instances = exported(image)  # image: (3, H, W) float32, BGR 0..255
        instances = detector_postprocess(instances, original_height, original_width)
    """

    def __init__(
        self,
        export_dir: str,
        num_threads: Optional[int] = None,
        allow_spinning: bool = True,
        engine: Optional[str] = None,
    ):
        """
        Args:
            export_dir: the ``--output`` folder of tools/export_model.py, or an INT8
                folder in it (see :mod:`.quantize`).
            num_threads: the runtime's intra-op threads (default: torch's thread count,
                so that every engine uses the same number of cores).
            allow_spinning: let onnxruntime's idle threads spin-wait for work (its
                default, lowest latency); benchmarks that alternate runtimes turn it off
                so that idle onnxruntime threads do not take cores from the next model.
                OpenVINO has no such setting.
            engine: one of ``FORMAT_ENGINES[format]``; default: the first (onnxruntime
                for ONNX).
        """
        info_path = os.path.join(export_dir, INFO_FILE)
        self.info = read_export_info(export_dir)
        self.format = self.info.get("format")
        self.method = self.info.get("method")
        self.backbone_only = self.info.get("backbone_only")
        if self.format not in FORMAT_ENGINES or self.method not in EXPORT_METHODS:
            raise ValueError(
                f"{info_path}: format {self.format!r} and method {self.method!r}; expected "
                f"one of {tuple(FORMAT_ENGINES)} and one of {EXPORT_METHODS}. Export the "
                f"model again with tools/export_model.py."
            )
        engines = FORMAT_ENGINES[self.format]
        self.engine = engine or engines[0]
        if self.engine not in engines:
            raise ValueError(
                f"{export_dir}: a {self.format} export runs with {' or '.join(engines)}, not "
                f"engine={self.engine!r}; pick one of those (or export to the other format)."
            )
        # The model file's name is ours, never a path from the json: it stays in export_dir.
        path = os.path.join(export_dir, MODEL_FILES[self.format])
        self._schema = None
        if "outputs_schema" in self.info:
            self._schema = load_outputs_schema(self.info["outputs_schema"], info_path)
        if self.engine == "torchscript":
            self._model = torch.jit.load(path)
            self._run = self._run_torchscript
        elif self.engine == "onnxruntime":
            import onnxruntime

            options = onnxruntime.SessionOptions()
            options.intra_op_num_threads = num_threads or torch.get_num_threads()
            options.inter_op_num_threads = 1
            if not allow_spinning:
                options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            self._session = onnxruntime.InferenceSession(
                path, options, providers=["CPUExecutionProvider"]
            )
            self._run = self._run_onnx
        else:
            import openvino

            core = openvino.Core()
            compiled = core.compile_model(
                core.read_model(path), "CPU", openvino_config(num_threads)
            )
            self._request = compiled.create_infer_request()
            self._ov_outputs = compiled.outputs
            self._run = self._run_openvino

    def _run_torchscript(self, inputs: Tensor) -> Tuple[Tensor, ...]:
        with torch.no_grad():
            return self._model(inputs)

    def _run_onnx(self, inputs: Tensor) -> Tuple[Tensor, ...]:
        name = self._session.get_inputs()[0].name
        outputs = self._session.run(None, {name: inputs.detach().cpu().numpy()})
        return tuple(torch.from_numpy(o) for o in outputs)

    def _run_openvino(self, inputs: Tensor) -> Tuple[Tensor, ...]:
        # share_outputs=False: copies, since the request reuses its output buffers.
        results = self._request.infer(
            {0: inputs.detach().cpu().numpy()}, share_inputs=True, share_outputs=False
        )
        return tuple(torch.from_numpy(results[output]) for output in self._ov_outputs)

    def __call__(self, inputs: Tensor):
        """
        Args:
            inputs: for a detector, one ``(3, H, W)`` image; for a backbone, the
                ``(N, 3, H, W)`` batch of :func:`backbone_input`.

        Returns:
            Instances (detector) or dict[str, Tensor] (backbone).
        """
        if self.method == "scripting":
            if self.backbone_only:
                with torch.no_grad():
                    return self._model(inputs)
            with torch.no_grad():
                fields = self._model(({"image": inputs},))[0]
            fields = {k: Boxes(v) if k.endswith("boxes") else v for k, v in fields.items()}
            return Instances(tuple(inputs.shape[-2:]), **fields)
        outputs = self._schema(self._run(inputs))
        if self.backbone_only:
            return outputs
        instances = outputs[0]["instances"]
        # The flattened image size comes back as a tensor; Instances takes a tuple.
        return Instances(tuple(int(s) for s in instances.image_size), **instances.get_fields())


def compare_outputs(reference, exported) -> Dict[str, Tuple[float, float]]:
    """
    Compares a PyTorch output with an exported model's, output by output (Instances, or
    dicts of tensors, as :func:`reference_outputs` returns).

    Returns:
        dict: output name -> (largest absolute difference, largest absolute value of the
        reference), e.g. {"pred_boxes": (3e-05, 1066.0), ...}.

    Raises:
        ValueError: when the two do not have the same structure or shapes, e.g. when the
            exported detector finds a different number of instances.
    """
    ref_flat, ref_schema = flatten_to_tuple(reference)
    out_flat, _ = flatten_to_tuple(exported)
    names = _output_names(ref_schema)
    if len(ref_flat) != len(out_flat):
        raise ValueError(f"outputs differ in structure: {len(ref_flat)} vs {len(out_flat)} tensors")
    comparison = {}
    for name, a, b in zip(names, ref_flat, out_flat):
        a, b = torch.as_tensor(a).double(), torch.as_tensor(b).double()
        if a.shape != b.shape:
            raise ValueError(f"output {name!r}: shape {tuple(a.shape)} vs {tuple(b.shape)}")
        if a.numel() == 0:
            comparison[name] = (0.0, 0.0)
        else:
            comparison[name] = ((a - b).abs().max().item(), a.abs().max().item())
    return comparison


def outputs_match(comparison: Dict[str, Tuple[float, float]], atol=1e-4, rtol=1e-4) -> bool:
    """True when each difference of :func:`compare_outputs` is <= atol + rtol * magnitude."""
    return all(diff <= atol + rtol * value for diff, value in comparison.values())
