"""
Where an INT8 model's quantizers are, and how close its detections are to fp32's: the
diagnostics of :mod:`.quantize`'s recipe (tests and tools/export_model.py read them).
"""

import re
from collections import defaultdict
from typing import Dict, Optional

from .quantize import FP32_LAYERS, OPENVINO_QUANTIZED_OPS, ORT_INT8_OPS, ORT_QUANTIZED_OPS

__all__ = ["quantization_placement", "int8_agreement"]

# A module of the bottom-up network: AttoNet's AttoModule, ResNet's bottleneck block
# ("/model/bottom_up/..." in a backbone-only export).
_BLOCK = re.compile(r"^/(backbone|model)/bottom_up/(res\d)/(res\d\.\d+)/")


_BLOCK_KEYS = {
    "convs": 0,
    "int8_convs": 0,
    "conv_input_quantizers": 0,
    "quantized_elementwise_inputs": 0,
}


def _block(name: str) -> Optional[str]:
    match = _BLOCK.match(name)
    return match.group(3) if match else None


def _onnx_placement(path: str) -> Dict:
    import onnx

    graph = onnx.load(path).graph
    producers = {out: node for node in graph.node for out in node.output}
    readers = defaultdict(list)
    for node in graph.node:
        for name in node.input:
            readers[name].append(node)
    initializers = {i.name: i for i in graph.initializer}

    def dequantized(name):
        # The QuantizeLinear behind a DequantizeLinear output of an activation, or None.
        dq = producers.get(name)
        if dq is None or dq.op_type != "DequantizeLinear" or dq.input[0] in initializers:
            return None
        return producers.get(dq.input[0])

    def int8_weight(name):
        dq = producers.get(name)
        return dq is not None and dq.op_type == "DequantizeLinear" and dq.input[0] in initializers

    blocks = defaultdict(lambda: defaultdict(int))
    quantizers = defaultdict(set)
    report = {"fp32_layers": [], "fp32_post_processing": True}
    for node in graph.node:
        block = _block(node.name)
        if node.op_type in ORT_QUANTIZED_OPS:
            q = dequantized(node.input[0])
            if FP32_LAYERS.match(node.name) and int8_weight(node.input[1]):
                report["fp32_layers"].append(f"{node.name} has int8 weights")
            if block:
                blocks[block]["convs"] += 1
                blocks[block]["int8_convs"] += int(q is not None and int8_weight(node.input[1]))
                if q is not None:
                    quantizers[block].add(q.name)
        elif node.op_type in ("RoiAlign", "NonMaxSuppression"):
            report["fp32_post_processing"] &= dequantized(node.input[0]) is None
        elif block and node.op_type in ("Add", "BatchNormalization", "Mul"):
            # An fp32 op may read a conv's dequantized output, never a tensor quantized
            # for it.
            for name in node.input:
                q = dequantized(name)
                if q is not None and producers.get(q.input[0]) is not None:
                    if producers[q.input[0]].op_type not in ORT_INT8_OPS:
                        blocks[block]["quantized_elementwise_inputs"] += 1
        elif node.op_type == "QuantizeLinear" and block:
            # Of a tensor made and read in the block (not a stage output that FPN reads).
            producer = producers.get(node.input[0])
            dq_readers = [n for dq in readers[node.output[0]] for n in readers[dq.output[0]]]
            if (
                producer is not None
                and _block(producer.name) == block
                and any(_block(n.name) == block for n in dq_readers)
            ):
                blocks[block]["quantize_ops"] += 1
    for block, names in quantizers.items():
        blocks[block]["conv_input_quantizers"] = len(names)
    report["blocks"] = {k: {**_BLOCK_KEYS, "quantize_ops": 0, **v} for k, v in blocks.items()}
    return report


def _openvino_placement(path: str) -> Dict:
    import openvino

    model = openvino.Core().read_model(path)

    def source(output):
        return output.get_node()

    def int8_weight(node):
        # NNCF's weights: a FakeQuantize, or the int8 constant (-> Convert -> scale)
        # that saving the model turns it into.
        while node.get_type_name() != "Constant":
            if node.get_type_name() == "FakeQuantize":
                return True
            node = node.input_value(0).get_node()
        return node.get_element_type() == openvino.Type.i8

    blocks = defaultdict(lambda: defaultdict(int))
    quantizers = defaultdict(set)
    report = {"fp32_layers": [], "fp32_post_processing": True}
    for op in model.get_ordered_ops():
        name, kind = op.get_friendly_name(), op.get_type_name()
        block = _block(name)
        if kind in OPENVINO_QUANTIZED_OPS:
            activation = source(op.input_value(0))
            quantized = activation.get_type_name() == "FakeQuantize"
            weight = int8_weight(source(op.input_value(1)))
            if FP32_LAYERS.match(name) and (quantized or weight):
                report["fp32_layers"].append(f"{name} is quantized")
            if block:
                blocks[block]["convs"] += 1
                blocks[block]["int8_convs"] += int(quantized and weight)
                if quantized:
                    quantizers[block].add(activation.get_friendly_name())
        elif kind in ("ROIAlign", "NMSRotated", "NonMaxSuppression"):
            report["fp32_post_processing"] &= (
                source(op.input_value(0)).get_type_name() != "FakeQuantize"
            )
        elif block and kind in ("Add", "Multiply", "BatchNormInference"):
            for value in op.input_values():
                if source(value).get_type_name() == "FakeQuantize":
                    blocks[block]["quantized_elementwise_inputs"] += 1
    for block, names in quantizers.items():
        blocks[block]["conv_input_quantizers"] = len(names)
    report["blocks"] = {k: {**_BLOCK_KEYS, **v} for k, v in blocks.items()}
    return report


def quantization_placement(model_path: str) -> Dict:
    """
    Where a quantized model (``model.onnx`` of onnxruntime-int8, ``model.xml`` of
    openvino-int8) quantizes, block by block of the bottom-up network ("res2.0", ...:
    AttoModules, ResNet bottlenecks).

    Returns:
        dict: "blocks": block -> {"convs", "int8_convs" (int8 weights and a quantized
        input), "conv_input_quantizers" (distinct quantized tensors the block's convs
        read: 4 in an AttoModule, one for its input and one per internal edge),
        "quantize_ops" (onnxruntime: QuantizeLinear of tensors made and read in the block:
        the input's and one per conv), "quantized_elementwise_inputs" (inputs of BN, Add,
        Mul quantized for them: 0)}; "fp32_layers": problems with :data:`FP32_LAYERS`
        (none when they are fp32); "fp32_post_processing": whether ROIAlign and NMS read
        fp32 tensors.
    """
    if model_path.endswith(".onnx"):
        return _onnx_placement(model_path)
    return _openvino_placement(model_path)


def int8_agreement(reference, quantized, iou_threshold: float = 0.5) -> Dict[str, float]:
    """
    How close an INT8 model's output is to the fp32 model's for one input.

    Args:
        reference, quantized: Instances of a detector (as
            :func:`~atto_detectron.deploy.export.reference_outputs` and
            :class:`~atto_detectron.deploy.export.ExportedModel` return them), or dicts of
            backbone features.

    Returns:
        dict: for Instances, "detections" and "int8_detections" (counts), "matched" (the
        fraction of the reference detections that the INT8 model also finds: a detection
        of the same class whose box has IoU >= ``iou_threshold``; 1.0 when there are
        none) and "mean_iou" (of each reference detection's best same-class match); for
        features, each output's relative error ``||int8 - fp32|| / ||fp32||``.
    """
    from detectron2.structures import pairwise_iou

    if isinstance(reference, dict):
        return {
            name: float((quantized[name] - value).norm() / value.norm().clamp(min=1e-12))
            for name, value in reference.items()
        }
    count = len(reference)
    record = {"detections": count, "int8_detections": len(quantized)}
    if count == 0:
        return dict(record, matched=1.0, mean_iou=1.0)
    if len(quantized) == 0:
        return dict(record, matched=0.0, mean_iou=0.0)
    iou = pairwise_iou(reference.pred_boxes, quantized.pred_boxes)
    same_class = reference.pred_classes[:, None] == quantized.pred_classes[None, :]
    best = (iou * same_class).max(dim=1).values
    return dict(
        record,
        matched=float((best >= iou_threshold).float().mean()),
        mean_iou=float(best.mean()),
    )
