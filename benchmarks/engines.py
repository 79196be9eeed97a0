"""
Latency and peak memory of Mask R-CNN models, measured side by side.

Fairness rules that every function here keeps:

* the same workload for every model: :func:`equalize_workload` makes random-weight
  models process the same number of boxes at the same places (the configs' maxima of
  proposals and detections), so that the heads' and post-processing's cost does not
  depend on what random weights happen to score;
* the same input images and thread count for every model;
* warm-up runs excluded, and the timed runs of all models interleaved round by round
  (:func:`time_interleaved`), so that a change in machine load hits all of them alike;
* peak memory of each model in a fresh process (:func:`measure_peak_memory`), where the
  operating system's high-water mark of resident memory belongs to that model alone.
"""

import json
import os
import statistics
import subprocess
import sys
import time
from collections import OrderedDict
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn

from detectron2.config import CfgNode
from detectron2.modeling import build_model
from detectron2.structures import BitMasks, Boxes, Instances
from detectron2.utils.events import EventStorage

from atto_detectron.analysis.detection import (
    equalize_workload,
    fix_test_workload,
)
from atto_detectron.config import load_config
from atto_detectron.deploy.inputs import image_tensor, synthetic_image
from atto_detectron.deploy.predictor import (
    ENGINES,
    PREDICTOR_CALIBRATION_IMAGES,
    Predictor,
    make_predictor,
)

__all__ = [
    "ENGINES",
    "equalize_workload",
    "build_benchmark_model",
    "Predictor",
    "make_predictor",
    "synthetic_training_batch",
    "make_train_step",
    "TrainingIteration",
    "time_interleaved",
    "summarize_seconds",
    "paired_ratio",
    "reset_peak_rss",
    "rss_bytes",
    "measure_peak_memory",
]

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# How a model runs (atto_detectron.deploy.predictor): ENGINES; INT8 engines calibrate on
# PREDICTOR_CALIBRATION_IMAGES synthetic images when given none.
BENCHMARK_CALIBRATION_IMAGES = PREDICTOR_CALIBRATION_IMAGES
# The phases of a training iteration (TrainingIteration), in order.
PHASES = ("forward", "backward", "optimizer step")


def build_benchmark_model(
    config_file: str,
    opts: Sequence[str] = (),
    device: str = "cpu",
    seed: int = 0,
    fixed_workload: bool = True,
) -> Tuple[CfgNode, nn.Module]:
    """
    The config's model with random weights (seeded), in eval mode. With
    ``fixed_workload`` (for inference), the config's test thresholds are switched off
    (:func:`fix_test_workload`) and the weights equalized (:func:`equalize_workload`);
    without it (for training), the config is used as it is.
    """
    cfg = load_config(config_file, opts, device="cpu")
    if fixed_workload:
        cfg = fix_test_workload(cfg)
    cfg.MODEL.DEVICE = device
    torch.manual_seed(seed)
    model = build_model(cfg).eval()
    if fixed_workload:
        equalize_workload(model)
    return cfg, model


def synthetic_training_batch(
    batch_size: int,
    image_size: Tuple[int, int],
    num_classes: int,
    instances_per_image: int = 4,
    seed: int = 0,
    device: str = "cpu",
) -> List[Dict]:
    """
    A reproducible training batch in Detectron2's format: ``batch_size`` noise images of
    ``image_size`` (H, W), each with ``instances_per_image`` boxes of random size and
    place whose masks fill the box (gt_boxes, gt_classes, gt_masks as BitMasks).
    """
    height, width = image_size
    generator = torch.Generator().manual_seed(seed)
    batch = []
    for index in range(batch_size):
        image = image_tensor(synthetic_image(height, width, seed=seed + index))
        sizes = torch.rand(instances_per_image, 2, generator=generator) * 0.5 + 0.1
        sizes = sizes * torch.tensor([width, height])
        corners = torch.rand(instances_per_image, 2, generator=generator)
        corners = corners * (torch.tensor([width, height]) - sizes)
        boxes = torch.cat([corners, corners + sizes], dim=1).floor()
        masks = torch.zeros(instances_per_image, height, width, dtype=torch.bool)
        for k, (x0, y0, x1, y1) in enumerate(boxes.long().tolist()):
            masks[k, y0:y1, x0:x1] = True
        instances = Instances(
            (height, width),
            gt_boxes=Boxes(boxes),
            gt_classes=torch.randint(num_classes, (instances_per_image,), generator=generator),
            gt_masks=BitMasks(masks),
        )
        batch.append({"image": image.to(device), "instances": instances.to(device)})
    return batch


class TrainingIteration:
    """
    One training iteration of ``model`` on ``batch`` as Detectron2's SimpleTrainer runs
    it (forward with losses, zero_grad and backward, SGD step with momentum 0.9), with
    the phase that is running in :attr:`phase`.
    """

    def __init__(self, model: torch.nn.Module, batch, lr: float = 1e-3):
        self.model = model.train()
        self.batch = batch
        self.optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
        self.storage = EventStorage(0)  # the ROI heads log training statistics into one
        self.phase = PHASES[0]

    def run(self, modes=None) -> "OrderedDict[str, float]":
        """
        Runs the iteration; returns phase -> seconds. ``modes``: phase -> a context
        manager entered around that phase (e.g. a counting dispatch mode).
        """
        modes = modes or {}
        seconds = OrderedDict()

        def timed(phase, function):
            self.phase = phase
            context = modes.get(phase)
            start = time.perf_counter()
            if context is None:
                result = function()
            else:
                with context:
                    result = function()
            seconds[phase] = time.perf_counter() - start
            return result

        def forward():
            with self.storage:
                return sum(self.model(self.batch).values())

        def backward():
            self.optimizer.zero_grad()
            loss.backward()

        loss = timed("forward", forward)
        timed("backward", backward)
        timed("optimizer step", self.optimizer.step)
        return seconds


def make_train_step(model: nn.Module, batch: List[Dict], lr: float = 1e-3) -> Callable[[], None]:
    """
    ``step()``: one training iteration of ``model`` on ``batch`` (forward with losses,
    backward, SGD step with momentum 0.9), as Detectron2's SimpleTrainer runs it
    (:class:`TrainingIteration`).
    """
    return TrainingIteration(model, batch, lr).run


def _synchronize():
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def time_interleaved(
    functions: Dict[str, Callable[[], object]], warmup: int = 2, repeats: int = 5
) -> Dict[str, Dict[str, List[float]]]:
    """
    Times each function ``repeats`` times, after ``warmup`` untimed calls, in rounds:
    each round calls every function once, in the given order.

    Returns:
        dict: "wall" and "cpu" -> name -> seconds of each timed call, in round order
        (round k of every function ran at about the same time, see
        :func:`paired_ratio`). "cpu" is the process's CPU time (all threads, spin-waits
        included): unlike wall time it does not grow while other processes hold the
        cores, which makes it the steadier figure on a shared machine.
    """
    for _ in range(warmup):
        for function in functions.values():
            function()
    wall = {name: [] for name in functions}
    cpu = {name: [] for name in functions}
    for _ in range(repeats):
        for name, function in functions.items():
            _synchronize()
            start, start_cpu = time.perf_counter(), time.process_time()
            function()
            _synchronize()
            wall[name].append(time.perf_counter() - start)
            cpu[name].append(time.process_time() - start_cpu)
    return {"wall": wall, "cpu": cpu}


def summarize_seconds(seconds: Sequence[float]) -> Dict[str, float]:
    """Median, quartiles, min and max of repeated timings (in seconds)."""
    values = sorted(seconds)
    if len(values) >= 2:
        q1, _, q3 = statistics.quantiles(values, n=4, method="inclusive")
    else:
        q1 = q3 = values[0]
    return {
        "median": statistics.median(values),
        "q1": q1,
        "q3": q3,
        "min": values[0],
        "max": values[-1],
        "repeats": len(values),
    }


def paired_ratio(baseline: Sequence[float], other: Sequence[float]) -> float:
    """
    Median over rounds of ``baseline[k] / other[k]``: how many times faster ``other``
    is, from calls that ran next to each other, so that load changes cancel out.
    """
    if len(baseline) != len(other) or not baseline:
        raise ValueError("paired_ratio needs timings of the same rounds")
    return statistics.median(b / o for b, o in zip(baseline, other))


def rss_bytes(peak: bool = False) -> int:
    """
    Resident memory of this process (``peak``: its high-water mark since start or since
    :func:`reset_peak_rss`), from /proc on Linux, else ``resource.getrusage``.
    """
    key = "VmHWM:" if peak else "VmRSS:"
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource

    max_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # ru_maxrss is in kilobytes on Linux, in bytes on macOS.
    return max_rss if sys.platform == "darwin" else max_rss * 1024


def reset_peak_rss() -> bool:
    """
    Resets the high-water mark of resident memory to the current value (Linux >= 4.0,
    ``/proc/self/clear_refs``). Returns False where that is not possible; the peak then
    covers the whole process.
    """
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def measure_peak_memory(
    config_file: str,
    image_size: Tuple[int, int],
    engine: str = "pytorch",
    mode: str = "inference",
    opts: Sequence[str] = (),
    threads: Optional[int] = None,
    device: str = "cpu",
    batch_size: int = 1,
    repeats: int = 1,
    allocator: str = "default",
) -> Dict:
    """
    Peak memory of one model in a fresh Python process (``python -m
    benchmarks.memory_probe``), so that no other model's memory counts;
    ``repeats`` processes, and the median of each figure (one process to the next, the
    same run varies by up to about 20%: the allocator's layout differs).

    ``mode`` "inference": the probe builds the model and its predictor, frees the built
    model, warms up on a small image, then measures one inference at ``image_size``.
    "train": the same with training iterations on a synthetic batch (forward,
    backward, SGD step), warmed up at full size (gradients, momentum). ``allocator``
    "keep-freed" sets up the process with
    :func:`~atto_detectron.deploy.allocator.keep_freed_memory` first.

    Returns:
        dict (megabytes): "peak_mb", the process's resident high-water mark during the
        measured run; "base_mb", resident memory after imports; "weights_mb",
        parameters and buffers; "run_increase_mb", how far the measured run raised
        resident memory above where it started (activations, workspaces; inference:
        the whole of it, since the warm-up was smaller); "inference_mb" = weights +
        run increase (inference only: the memory the model itself needs);
        "peak_above_base_mb" = peak - base (everything, including the code that running
        the model loaded); on GPU also "cuda_peak_allocated_mb"; "runs", every
        process's figures.
    """
    command = [
        sys.executable,
        "-m",
        "benchmarks.memory_probe",
        "--config-file",
        config_file,
        "--height",
        str(image_size[0]),
        "--width",
        str(image_size[1]),
        "--engine",
        engine,
        "--mode",
        mode,
        "--device",
        device,
        "--batch-size",
        str(batch_size),
        "--threads",
        str(threads or torch.get_num_threads()),
        "--allocator",
        allocator,
    ]
    command += ["--opts", *opts] if opts else []
    runs = []
    for _ in range(repeats):
        # From the repository root, where `python -m benchmarks...` finds the package.
        result = subprocess.run(command, capture_output=True, text=True, cwd=REPO_ROOT)
        if result.returncode != 0:
            raise RuntimeError(
                f"memory probe failed for {config_file} {image_size} {engine} {mode}:\n"
                f"{result.stderr[-3000:]}"
            )
        runs.append(json.loads(result.stdout.strip().splitlines()[-1]))
    summary = {
        key: statistics.median(run[key] for run in runs)
        for key, value in runs[0].items()
        if isinstance(value, float)
    }
    summary["runs"] = runs
    return summary
