"""
One image in, post-processed detections out, in any engine: the model as built, with BN
folded, channels-last, or exported and run by torch.jit, onnxruntime or OpenVINO, in
fp32 or INT8. The benchmarks and the design explorer's latency measure through it, so
that every engine does the same work: normalization and padding, the network, box and
mask post-processing with mask pasting (:func:`~atto_detectron.modeling.detector_postprocess`).
"""

import tempfile
from typing import Optional, Sequence

import torch
from torch import nn

from detectron2.structures import Instances

from ..modeling import detector_postprocess
from .export import ExportedModel, export_model, prepare_for_export
from .fusion import fuse_bn
from .inputs import detector_inputs, image_tensor, synthetic_image
from .quantize import int8_dir, quantize_export

__all__ = ["ENGINES", "PREDICTOR_CALIBRATION_IMAGES", "Predictor", "make_predictor"]

# How a model runs: PyTorch eager as built; with BN folded into the convs; also with
# channels-last tensors (NHWC, the layout oneDNN's CPU convolutions prefer); traced to
# TorchScript; exported to ONNX and run by onnxruntime or by OpenVINO's CPU plugin (all
# from the fused model); that ONNX model quantized to INT8 (post-training, static; see
# atto_detectron.deploy.quantize) for onnxruntime and, by NNCF, for OpenVINO.
ENGINES = (
    "pytorch",
    "pytorch-fused",
    "pytorch-fused-cl",
    "torchscript",
    "onnxruntime",
    "openvino",
    "onnxruntime-int8",
    "openvino-int8",
)
# Calibration images of the INT8 engines when make_predictor is given none.
PREDICTOR_CALIBRATION_IMAGES = 4


class Predictor:
    """
    ``predictor(image) -> Instances``: one ``(3, H, W)`` image (resized, 0..255) in, the
    post-processed detections (boxes, classes, scores, full-image masks) out.
    ``model`` is the PyTorch module it runs (None for exported engines).
    """

    def __init__(self, engine: str, model: Optional[nn.Module] = None, exported=None):
        self.engine = engine
        self.model = model
        self.exported = exported

    def __call__(self, image: torch.Tensor) -> Instances:
        if self.model is not None:
            with torch.no_grad():
                return self.model(detector_inputs(image))[0]["instances"]
        instances = self.exported(image)
        return detector_postprocess(instances, image.shape[-2], image.shape[-1])


def make_predictor(
    model: nn.Module,
    engine: str,
    sample_image: torch.Tensor,
    work_dir: Optional[str] = None,
    calibration: Optional[Sequence[torch.Tensor]] = None,
    calibration_source: str = "",
) -> Predictor:
    """
    A :class:`Predictor` that runs ``model`` through ``engine`` (one of :data:`ENGINES`).
    All engines do the same work: normalization and padding, the network, box and mask
    post-processing with mask pasting.

    Args:
        model: a detector in eval mode on CPU (e.g. with a fixed workload,
            :func:`~atto_detectron.analysis.detection.equalize_workload`); not modified.
        sample_image: the image the exported engines trace with (any size works after).
        work_dir: where the exported engines write their files (default: a new
            temporary folder).
        calibration: ``(3, H, W)`` images that calibrate the INT8 engines (e.g.
            :func:`~atto_detectron.deploy.quantize.calibration_images` of the config);
            default: :data:`PREDICTOR_CALIBRATION_IMAGES` synthetic images of the sample
            image's size (seeds 1, 2, ...).
        calibration_source: what ``calibration`` is, for the INT8 model's
            ``export_info.json``.
    """
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
    if engine.startswith("pytorch"):
        if engine != "pytorch":
            model = fuse_bn(model)
        if engine.endswith("-cl"):
            model = model.to(memory_format=torch.channels_last)
        return Predictor(engine, model=model)

    if model.device.type != "cpu":
        raise ValueError(f"{engine}: exported engines are measured on CPU only")
    work_dir = work_dir or tempfile.mkdtemp(prefix="atto_predictor_")
    export_format = "torchscript" if engine == "torchscript" else "onnx"
    export_model(prepare_for_export(model), sample_image, work_dir, export_format)
    if not engine.endswith("-int8"):
        exported = ExportedModel(work_dir, allow_spinning=False, engine=engine)
        return Predictor(engine, exported=exported)

    if calibration is None:
        height, width = sample_image.shape[-2:]
        calibration = [
            image_tensor(synthetic_image(height, width, seed=seed))
            for seed in range(1, 1 + PREDICTOR_CALIBRATION_IMAGES)
        ]
        calibration_source = f"{len(calibration)} synthetic {height}x{width} noise images"
    described = calibration_source or f"{len(calibration)} images"
    quantize_export(work_dir, calibration, [engine], calibration=described)
    exported = ExportedModel(int8_dir(work_dir, engine), allow_spinning=False)
    return Predictor(engine, exported=exported)
