"""
Latency of a whole detector at its config's operating point, in the engine the user names.

:func:`detector_latency_ms` builds the detector of a Detectron2 config with random
(seeded) weights and times single-image inferences:

* the image: one landscape (4:3) image after the config's test resize
  (``INPUT.MIN_SIZE_TEST`` / ``MAX_SIZE_TEST``), the size at which parameters and
  mult-adds are counted; reproducible noise (no two regions alike);
* the workload: the config's test-time maxima, ``MODEL.RPN.POST_NMS_TOPK_TEST`` proposals
  and ``TEST.DETECTIONS_PER_IMAGE`` detections with masks, whatever the weights: the
  NMS and score thresholds are switched off
  (:func:`~atto_detectron.analysis.detection.fix_test_workload`), the box regression is
  zeroed and every score is equal, so every model processes the same boxes at the same
  places (trained weights would make the latency depend on what a short training
  happened to score);
* the engines (:data:`~design_exploration.settings.LATENCY_ENGINES`): "pytorch" (eager,
  as built); "openvino": the plugin's ONNX export
  (:func:`~atto_detectron.deploy.export_model` of
  :func:`~atto_detectron.deploy.prepare_for_export`, BN folded) run by OpenVINO's CPU
  plugin (:class:`~atto_detectron.deploy.ExportedModel`); "openvino-int8": that export
  quantized by :func:`~atto_detectron.deploy.quantize_export` (NNCF, calibrated on a few
  noise images: only the speed is measured here) and run by OpenVINO; each through the
  plugin's :func:`~atto_detectron.deploy.make_predictor`, as the benchmarks measure.
  Every engine does the same work: normalization and padding, the network, box and mask
  post-processing with mask pasting;
* the timing: the median of ``runs`` inferences after ``warmup`` untimed ones, on
  ``threads`` threads (:class:`~design_exploration.settings.LatencySettings`).
"""

import contextlib
import statistics
import tempfile
import time
from typing import Callable, Iterator

import torch
from torch import nn

from atto_detectron.analysis.detection import equalize_workload, fix_test_workload
from atto_detectron.deploy import image_tensor, make_predictor, synthetic_image

from .settings import LATENCY_ENGINES, LatencySettings

__all__ = ["fixed_workload_detector", "detector_latency_ms", "time_median_ms"]


@contextlib.contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """Runs the block with ``threads`` intra-op threads, then restores the count."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def fixed_workload_detector(cfg, seed: int = 0) -> nn.Module:
    """
    The detector of ``cfg`` on CPU with random weights (seeded by ``seed``), in eval mode,
    that processes the config's maxima of proposals and detections (see the module
    docstring).
    """
    from detectron2.modeling import build_model

    cfg = fix_test_workload(cfg)
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.WEIGHTS = ""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = build_model(cfg).eval()
    return equalize_workload(model)


def time_median_ms(run: Callable[[], object], runs: int, warmup: int) -> float:
    """Median wall time, in milliseconds, of ``runs`` calls of ``run`` after ``warmup``."""
    for _ in range(warmup):
        run()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return 1000.0 * statistics.median(times)


def _runner(model: nn.Module, image: torch.Tensor, engine: str, work_dir: str):
    """One inference of ``model`` on ``image`` in ``engine``, as a function."""
    if engine not in LATENCY_ENGINES:
        raise ValueError(f"unknown latency engine {engine!r}")
    predictor = make_predictor(model, engine, image, work_dir)
    return lambda: predictor(image)


def detector_latency_ms(cfg, settings: LatencySettings, seed: int = 0) -> float:
    """
    Median single-image latency, in milliseconds, of the detector of Detectron2 config
    ``cfg`` in ``settings.engine`` (see the module docstring).
    """
    from atto_detectron.engine.results import eval_image_size

    height, width = eval_image_size(cfg)
    image = image_tensor(synthetic_image(height, width, seed=0))
    with torch_threads(settings.threads), tempfile.TemporaryDirectory(
        prefix="design_latency_"
    ) as work_dir:
        model = fixed_workload_detector(cfg, seed)
        run = _runner(model, image, settings.engine, work_dir)
        return time_median_ms(run, settings.runs, settings.warmup)
