"""
Inference and deployment: BN fusion, export to TorchScript and ONNX (run by torch.jit,
onnxruntime or OpenVINO), INT8 post-training quantization, CPU allocator.
"""

from .allocator import ALLOCATORS, keep_freed_memory, use_allocator
from .calibration import calibration_images
from .export import (
    DEFAULT_ONNX_OPSET,
    EXPORT_FORMATS,
    EXPORT_METHODS,
    FORMAT_ENGINES,
    EmptyBatchGroupNorm,
    ExportedModel,
    backbone_input,
    compare_outputs,
    export_model,
    openvino_config,
    outputs_match,
    prepare_for_export,
    reference_outputs,
)
from .fusion import FUSABLE_NORMS, fuse_bn, fuse_conv_bn
from .inputs import detector_inputs, image_tensor, synthetic_image
from .int8_placement import int8_agreement, quantization_placement
from .predictor import ENGINES, PREDICTOR_CALIBRATION_IMAGES, Predictor, make_predictor
from .quantize import (
    INT8_ENGINES,
    export_engines,
    int8_dir,
    quantize_export,
    quantize_onnxruntime,
    quantize_openvino,
)

__all__ = [k for k in globals().keys() if not k.startswith("_")]
