"""Inference and deployment: BN fusion, export to TorchScript and ONNX, CPU allocator."""

from .allocator import ALLOCATORS, keep_freed_memory, use_allocator
from .export import (
    DEFAULT_ONNX_OPSET,
    EXPORT_FORMATS,
    EXPORT_METHODS,
    EmptyBatchGroupNorm,
    ExportedModel,
    backbone_input,
    export_model,
    compare_outputs,
    outputs_match,
    prepare_for_export,
    reference_outputs,
)
from .fusion import FUSABLE_NORMS, fuse_bn, fuse_conv_bn
from .inputs import detector_inputs, image_tensor, synthetic_image

__all__ = [k for k in globals().keys() if not k.startswith("_")]
