"""
:class:`ExportedModel` runs an export folder of :func:`~.export.export_model` (or
:mod:`.quantize`) with the engines of its format (:data:`~.export_info.FORMAT_ENGINES`):
TorchScript with torch.jit; ONNX with onnxruntime or with OpenVINO's CPU plugin, which
reads the same ``model.onnx``; and the OpenVINO IR (``model.xml``) that :mod:`.quantize`
writes for NNCF's INT8 model, with OpenVINO. :func:`compare_outputs` and
:func:`outputs_match` check its outputs against the PyTorch model's.
"""

import os
from typing import Dict, Optional, Tuple

import torch
from torch import Tensor

from detectron2.export.flatten import flatten_to_tuple
from detectron2.structures import Boxes, Instances

from .export_info import (
    EXPORT_METHODS,
    FORMAT_ENGINES,
    INFO_FILE,
    MODEL_FILES,
    _output_names,
    load_outputs_schema,
    read_export_info,
)

__all__ = ["ExportedModel", "openvino_config", "compare_outputs", "outputs_match"]


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

        from atto_detectron.modeling import detector_postprocess  # the faster mask paste

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
        openvino_properties: Optional[Dict[str, str]] = None,
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
            openvino_properties: compile properties added to :func:`openvino_config`'s
                for OpenVINO, e.g. ``{"PERF_COUNT": "YES"}`` for per-node performance
                counters (:attr:`openvino_request`'s ``get_profiling_info()``).
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
            properties = {**openvino_config(num_threads), **(openvino_properties or {})}
            compiled = core.compile_model(core.read_model(path), "CPU", properties)
            self._compiled = compiled
            self._request = compiled.create_infer_request()
            self._ov_outputs = compiled.outputs
            self._run = self._run_openvino

    @property
    def openvino_compiled_model(self):
        """The OpenVINO ``CompiledModel`` (OpenVINO engine only), e.g. for its runtime graph."""
        self._require_openvino()
        return self._compiled

    @property
    def openvino_request(self):
        """The ``InferRequest`` every call runs (OpenVINO engine only)."""
        self._require_openvino()
        return self._request

    def _require_openvino(self):
        if self.engine != "openvino":
            raise AttributeError(
                f"an ExportedModel with engine {self.engine!r} has no OpenVINO model"
            )

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
