"""
Post-training static INT8 quantization of an ONNX export (tools/export_model.py --format
onnx --int8), for two engines, from the same calibration images:

* "onnxruntime-int8": onnxruntime's ``quantize_static`` (QDQ format) after
  ``quant_pre_process``; written as ``<export>/onnxruntime-int8/model.onnx``;
* "openvino-int8": NNCF's ``nncf.quantize`` on the model OpenVINO reads from the same
  ``model.onnx``; written as OpenVINO IR, ``<export>/openvino-int8/model.xml``.

Each INT8 folder is a complete export folder (``export_info.json`` records the recipe and
the calibration) that :class:`~atto_detectron.deploy.export.ExportedModel` runs.

Where the quantizers go (one recipe for every backbone: AttoNet, ResNet-50; see
:func:`~.int8_placement.quantization_placement`):

* Int8: the weighted layers, Conv (1x1, depthwise, 3x3, 7x7), Gemm/MatMul and, in
  OpenVINO only (see :data:`ORT_QUANTIZED_OPS`), ConvTranspose: weights per output
  channel (symmetric int8), activations per tensor at their inputs, one quantizer per
  edge into a conv. An AttoModule's input is quantized once, after its pre-activation BN
  and ReLU, for the compression conv and the projection shortcut; then each internal
  edge (compression -> depthwise -> mixing -> decompression) once. A ReLU after a conv
  folds into that quantizer (its range starts at 0).
* Fp32, outside the quantized domain: the element-wise ops. The pre-activation BN and
  its ReLU's input, the residual additions and the residual stream itself, which carries
  the signal from module to module (quantizing it at every module would compound the
  error, and it is no conv's input), FPN's top-down additions and GroupNorms.
* Fp32 layers: those whose outputs are scores and box or mask values
  (:data:`FP32_LAYERS`: RPN objectness and anchor deltas, the box predictor, the mask
  predictor). They cost little and their errors go straight into the detections.
* Fp32 post-processing: anchors, box decoding, NMS, ROIAlign (on fp32 FPN features),
  top-k, mask selection.

What differs per engine, and why:

* onnxruntime runs a conv in int8 only as DequantizeLinear -> Conv -> QuantizeLinear
  (QLinearConv), so each conv's output is quantized too, and the residual Add reads the
  decompression conv's dequantized output. Its quantizer hands the dequantized tensor to
  every reader of a quantized tensor: where fp32 ops also read one that exists in fp32
  (a stage output, read by FPN's lateral conv and the next module's BN; an FPN output,
  read by the RPN conv and ROIAlign), they are given the fp32 tensor back.
* NNCF puts FakeQuantize at conv inputs; OpenVINO's CPU plugin fuses it into the conv,
  whose output stays fp32 unless the next op is quantized. By default NNCF also
  quantizes both inputs of each residual Add and the input of each pre-activation BN
  (for int8 element-wise ops), i.e. the residual stream; the ignored scope (every op
  type but the weighted ones, plus :data:`FP32_LAYERS`) keeps them fp32.
  Its ``ModelType.TRANSFORMER`` is for attention models and does not apply.
* CPUs without VNNI (AVX2, AVX-512 without VNNI) can saturate the 16-bit sums of u8 x s8
  pairs; both engines give the first conv (the image's, whose inputs fill the 8-bit
  range) 7-bit weights: NNCF's ``OverflowFix.FIRST_LAYER``, an onnxruntime
  ``reduce_range`` override for that weight.
"""

import copy
import json
import logging
import os
import re
import shutil
import tempfile
from collections import defaultdict
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from .export import FORMAT_ENGINES, INFO_FILE, MODEL_FILES, read_export_info

__all__ = [
    "INT8_ENGINES",
    "FP32_LAYERS",
    "ORT_QUANTIZED_OPS",
    "OPENVINO_QUANTIZED_OPS",
    "quantize_onnxruntime",
    "quantize_openvino",
    "quantize_export",
    "int8_dir",
    "export_engines",
]

INT8_ENGINES = ("onnxruntime-int8", "openvino-int8")

# Layers kept in fp32 by name (Detectron2's RPN and StandardROIHeads, any backbone): the
# ones whose outputs are objectness, box deltas, class scores and mask logits. ONNX node
# names are module scopes ("/roi_heads/box_predictor/cls_score/Gemm"); OpenVINO keeps
# them ("/roi_heads/box_predictor/cls_score/Gemm/WithoutBiases"). RPN's head runs once
# per level: "objectness_logits", "objectness_logits_1", ...
FP32_LAYERS = re.compile(
    r"^/(proposal_generator/rpn_head/(objectness_logits|anchor_deltas)(_\d+)?"
    r"|roi_heads/box_predictor/(cls_score|bbox_pred)"
    r"|roi_heads/mask_head/predictor)/"
)
# Weighted ONNX ops that get int8 weights and inputs. Not ConvTranspose (the mask head's
# upsampling): onnxruntime's CPU provider has no int8 kernel it fuses QDQ into, so it
# would run in fp32 between a dequantize and a quantize. Relu folds into the quantizer of
# the conv before it (onnxruntime removes it where its input is quantized); MaxPool runs
# on int8 where its input is quantized (the stem's, exact).
ORT_QUANTIZED_OPS = ("Conv", "Gemm", "MatMul")
_ORT_OP_TYPES = ORT_QUANTIZED_OPS + ("Relu", "MaxPool")
# What runs on int8 in onnxruntime's QDQ graph: its output is not available in fp32.
ORT_INT8_OPS = ORT_QUANTIZED_OPS + ("MaxPool",)
OPENVINO_QUANTIZED_OPS = (
    "Convolution",
    "GroupConvolution",
    "ConvolutionBackpropData",
    "MatMul",
)


def _read_info(export_dir: str) -> Dict:
    path = os.path.join(export_dir, INFO_FILE)
    info = read_export_info(export_dir)
    if info.get("format") != "onnx":
        raise ValueError(
            f"{path}: format {info.get('format')!r}; INT8 quantization takes an ONNX export "
            f"(tools/export_model.py --format onnx)"
        )
    return info


def _as_arrays(inputs: Sequence) -> List[np.ndarray]:
    if not inputs:
        raise ValueError("quantization needs at least one calibration input")
    return [np.ascontiguousarray(torch.as_tensor(x).detach().cpu().numpy()) for x in inputs]


def _prepare_onnx(src: str, dst: str) -> None:
    # torch.onnx stores equal initializers once: with random or untrained weights a conv's
    # (fused) bias is often the same zeros as a BatchNorm's mean or bias. A quantized
    # conv's initializers are replaced by int8/int32 ones and a DequantizeLinear, so the
    # fp32 readers of a shared one (other ops, FP32_LAYERS) get copies of their own.
    import onnx

    model = onnx.load(src)
    graph = model.graph
    initializers = {i.name: i for i in graph.initializer}
    readers = defaultdict(list)
    for node in graph.node:
        for index, name in enumerate(node.input):
            if name in initializers:
                readers[name].append((node, index))
    for name, uses in readers.items():
        fp32_uses = [
            (n, i)
            for n, i in uses
            if n.op_type not in ORT_QUANTIZED_OPS or FP32_LAYERS.match(n.name)
        ]
        if len(fp32_uses) == len(uses) or not fp32_uses:
            continue
        copy_name = f"{name}__fp32"
        tensor = copy.deepcopy(initializers[name])
        tensor.name = copy_name
        graph.initializer.append(tensor)
        for node, index in fp32_uses:
            node.input[index] = copy_name
    onnx.save(model, dst)


def _first_convs(graph) -> List:
    # The convs that read the image (through preprocessing) rather than another conv's
    # output: their inputs use the whole 8-bit range.
    after_conv = set()
    first = []
    for node in graph.node:  # ONNX graphs are topologically sorted
        behind = any(name in after_conv for name in node.input)
        if node.op_type in ("Conv", "ConvTranspose", "Gemm", "MatMul"):
            if not behind:
                first.append(node)
            after_conv.update(node.output)
        elif behind:
            after_conv.update(node.output)
    return first


def _fp32_readers_read_fp32(model) -> int:
    # onnxruntime's quantizer gives every reader of a quantized tensor its dequantized
    # copy; readers that run in fp32 get the fp32 tensor back where one exists, i.e.
    # where the quantized tensor's producer is an fp32 op (not a conv, whose output
    # exists only in int8 once onnxruntime fuses DQ -> Conv -> Q).
    graph = model.graph
    producers = {out: node for node in graph.node for out in node.output}
    readers = defaultdict(list)
    for node in graph.node:
        for name in node.input:
            readers[name].append(node)
    initializers = {i.name for i in graph.initializer}
    rewired = 0
    for q in graph.node:
        if q.op_type != "QuantizeLinear" or q.input[0] in initializers:
            continue
        source = q.input[0]
        producer = producers.get(source)
        if producer is not None and producer.op_type in ORT_INT8_OPS:
            continue
        for dq in readers[q.output[0]]:
            if dq.op_type != "DequantizeLinear":
                continue
            for reader in readers[dq.output[0]]:
                if reader.op_type in ORT_INT8_OPS and not FP32_LAYERS.match(reader.name):
                    continue
                for index, name in enumerate(reader.input):
                    if name == dq.output[0]:
                        reader.input[index] = source
                        rewired += 1
    return rewired


def _write_info(output_dir: str, info: Dict, export_format: str, quantization: Dict) -> None:
    record = dict(info, format=export_format, quantization=quantization)
    with open(os.path.join(output_dir, INFO_FILE), "w") as f:
        json.dump(record, f, indent=2)


def int8_dir(export_dir: str, engine: str) -> str:
    """The folder of the ``engine`` ("onnxruntime-int8", "openvino-int8") model of an export."""
    if engine not in INT8_ENGINES:
        raise ValueError(f"INT8 engine must be one of {INT8_ENGINES}, got {engine!r}")
    return os.path.join(export_dir, engine)


def quantize_onnxruntime(
    export_dir: str,
    inputs: Sequence,
    output_dir: Optional[str] = None,
    calibration: str = "",
) -> str:
    """
    onnxruntime's static QDQ quantization of ``<export_dir>/model.onnx`` (placement: see
    the module docstring): ``quant_pre_process`` (ONNX shape inference and graph
    optimization; symbolic shape inference is skipped, it fails on Detectron2's
    data-dependent shapes), then ``quantize_static`` with MinMax calibration, uint8
    activations (asymmetric, per tensor) and int8 weights (symmetric, per output
    channel).

    Args:
        export_dir: an ONNX export folder (whole detector or backbone).
        inputs: calibration inputs as the model takes them (``(3, H, W)`` images for a
            detector, sizes may differ; normalized ``(N, 3, H, W)`` batches for a backbone).
        output_dir: default ``<export_dir>/onnxruntime-int8``.
        calibration: what the inputs are, for ``export_info.json``.

    Returns:
        str: the output folder (``model.onnx`` and ``export_info.json``).
    """
    import onnx
    import onnxruntime
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quant_pre_process,
        quantize_static,
    )

    info = _read_info(export_dir)
    arrays = _as_arrays(inputs)
    output_dir = output_dir or int8_dir(export_dir, "onnxruntime-int8")
    os.makedirs(output_dir, exist_ok=True)

    class Reader(CalibrationDataReader):
        # quantize_static's "CalibStridedMinMax" calibrates one range of inputs at a time
        # (set_range) and merges the ranges: it keeps one input's intermediate tensors in
        # memory, not all of them (hundreds of MB per 800-pixel image).
        def __init__(self):
            self.set_range(0, len(arrays))

        def __len__(self):
            return len(arrays)

        def get_next(self):
            return next(self._feeds, None)

        def set_range(self, start_index: int, end_index: int):
            name = info["input_names"][0]
            self._feeds = iter([{name: a} for a in arrays[start_index:end_index]])

    with tempfile.TemporaryDirectory(prefix="atto_quant_") as tmp:
        prepared = os.path.join(tmp, "prepared.onnx")
        _prepare_onnx(os.path.join(export_dir, MODEL_FILES["onnx"]), prepared)
        preprocessed = os.path.join(tmp, "preprocessed.onnx")
        quant_pre_process(prepared, preprocessed, skip_symbolic_shape=True)
        graph = onnx.load(preprocessed).graph
        fp32_layers = [n.name for n in graph.node if FP32_LAYERS.match(n.name)]
        first_weights = [n.input[1] for n in _first_convs(graph)]
        quantized = os.path.join(tmp, "quantized.onnx")
        quantize_static(
            preprocessed,
            quantized,
            Reader(),
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=list(_ORT_OP_TYPES),
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            nodes_to_exclude=fp32_layers,
            calibrate_method=CalibrationMethod.MinMax,
            extra_options={
                "ActivationSymmetric": False,
                "WeightSymmetric": True,
                "CalibStridedMinMax": 1,
                "TensorQuantOverrides": {
                    w: [{"axis": 0, "reduce_range": True}] for w in first_weights
                },
            },
        )
        model = onnx.load(quantized)
        rewired = _fp32_readers_read_fp32(model)
        onnx.save(model, os.path.join(output_dir, MODEL_FILES["onnx"]))

    _write_info(
        output_dir,
        info,
        "onnx",
        {
            "engine": "onnxruntime-int8",
            "tool": f"onnxruntime {onnxruntime.__version__} quantize_static (QDQ)",
            "calibration": calibration or f"{len(arrays)} inputs",
            "calibration_inputs": len(arrays),
            "calibrate_method": "MinMax",
            "activations": "uint8, asymmetric, per tensor",
            "weights": "int8, symmetric, per output channel; 7 bits for the first conv",
            "op_types_to_quantize": list(_ORT_OP_TYPES),
            "fp32_layers": fp32_layers,
            "fp32_readers_rewired": rewired,
        },
    )
    return output_dir


def quantize_openvino(
    export_dir: str,
    inputs: Sequence,
    output_dir: Optional[str] = None,
    calibration: str = "",
) -> str:
    """
    NNCF's post-training quantization of the OpenVINO model read from
    ``<export_dir>/model.onnx`` (placement: see the module docstring): preset PERFORMANCE
    (symmetric int8 weights per output channel and activations per tensor, as OpenVINO's
    CPU plugin prefers), the CNN model type, fast bias correction, the ignored scope of
    every op type but :data:`OPENVINO_QUANTIZED_OPS` and of :data:`FP32_LAYERS`. Saved as
    OpenVINO IR with fp32 constants (not compressed to fp16).

    Activation ranges are the global min and max over the inputs (NNCF's MINMAX, as
    onnxruntime's MinMax), not NNCF's default mean over inputs of each input's min and
    max: an input without detections gives the ROI heads empty tensors, and their
    statistics wreck that mean. One such image among 100 set the mask head's ranges to
    [0, 8e-5] and the mask AP of the demo model from 31 to 8.

    Args: as :func:`quantize_onnxruntime`; ``output_dir`` default
        ``<export_dir>/openvino-int8``.

    Returns:
        str: the output folder (``model.xml``, ``model.bin``, ``export_info.json``).
    """
    import nncf
    import openvino
    from nncf.quantization.advanced_parameters import (
        AdvancedQuantizationParameters,
        OverflowFix,
    )
    from nncf.quantization.range_estimator import RangeEstimatorParametersSet

    info = _read_info(export_dir)
    arrays = _as_arrays(inputs)
    output_dir = output_dir or int8_dir(export_dir, "openvino-int8")
    os.makedirs(output_dir, exist_ok=True)
    core = openvino.Core()
    with tempfile.TemporaryDirectory(prefix="atto_quant_") as tmp:
        prepared = os.path.join(tmp, "prepared.onnx")
        _prepare_onnx(os.path.join(export_dir, MODEL_FILES["onnx"]), prepared)
        model = core.read_model(prepared)
    op_types = {op.get_type_name() for op in model.get_ordered_ops()}
    fp32_types = sorted(
        op_types - set(OPENVINO_QUANTIZED_OPS) - {"Parameter", "Result", "Constant"}
    )
    ignored = nncf.IgnoredScope(
        patterns=[FP32_LAYERS.pattern + ".*"], types=fp32_types, validate=False
    )
    # NNCF logs every op it leaves out (thousands here) at INFO, to stdout.
    nncf_logger = logging.getLogger("nncf")
    level = nncf_logger.level
    nncf_logger.setLevel(logging.WARNING)
    try:
        quantized = nncf.quantize(
            model,
            nncf.Dataset(arrays),
            subset_size=len(arrays),
            preset=nncf.QuantizationPreset.PERFORMANCE,
            target_device=nncf.TargetDevice.CPU,
            model_type=None,
            fast_bias_correction=True,
            ignored_scope=ignored,
            advanced_parameters=AdvancedQuantizationParameters(
                overflow_fix=OverflowFix.FIRST_LAYER,
                activations_range_estimator_params=RangeEstimatorParametersSet.MINMAX,
            ),
        )
    finally:
        nncf_logger.setLevel(level)
    path = os.path.join(output_dir, MODEL_FILES["openvino"])
    openvino.save_model(quantized, path, compress_to_fp16=False)
    _write_info(
        output_dir,
        info,
        "openvino",
        {
            "engine": "openvino-int8",
            "tool": f"nncf {nncf.__version__}, openvino {openvino.get_version()}",
            "calibration": calibration or f"{len(arrays)} inputs",
            "calibration_inputs": len(arrays),
            "preset": "performance",
            "model_type": "CNN (None)",
            "activation_ranges": "MINMAX: global min and max over the calibration inputs",
            "overflow_fix": "first_layer_only",
            "activations": "int8/uint8, symmetric, per tensor",
            "weights": "int8, symmetric, per output channel",
            "quantized_op_types": list(OPENVINO_QUANTIZED_OPS),
            "fp32_layers": FP32_LAYERS.pattern,
        },
    )
    return output_dir


def quantize_export(
    export_dir: str,
    inputs: Sequence,
    engines: Sequence[str] = INT8_ENGINES,
    calibration: str = "",
) -> Dict[str, str]:
    """
    Writes the INT8 model of each of ``engines`` next to the export
    (:func:`int8_dir`), from the same calibration ``inputs``.

    Returns:
        dict: engine -> its folder.
    """
    quantizers = {"onnxruntime-int8": quantize_onnxruntime, "openvino-int8": quantize_openvino}
    folders = {}
    for engine in engines:
        if engine not in quantizers:
            raise ValueError(f"INT8 engine must be one of {INT8_ENGINES}, got {engine!r}")
        folder = int8_dir(export_dir, engine)
        if os.path.isdir(folder):
            shutil.rmtree(folder)
        folders[engine] = quantizers[engine](export_dir, inputs, folder, calibration)
    return folders


def export_engines(export_dir: str) -> Dict[str, Tuple[str, str]]:
    """
    Every way to run an export folder: engine name -> (folder, runtime engine for
    :class:`~atto_detectron.deploy.export.ExportedModel`). A TorchScript export:
    "torchscript"; an ONNX export: "onnxruntime", "openvino", and the INT8 engines whose
    folders exist.
    """
    export_format = read_export_info(export_dir).get("format")
    engines = {e: (export_dir, e) for e in FORMAT_ENGINES.get(export_format, ())}
    for engine in INT8_ENGINES:
        folder = int8_dir(export_dir, engine)
        if os.path.isfile(os.path.join(folder, INFO_FILE)):
            engines[engine] = (folder, engine[: -len("-int8")])
    return engines
