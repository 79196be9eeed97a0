"""
Where a result comes from: the code (commit, fingerprints), the machine, the data's
generator arguments and the time a run took, recorded in every ``results.json``.
"""

import hashlib
import json
import os
import platform
import statistics
import subprocess
from typing import Dict, Iterable, Optional

import torch

__all__ = [
    "config_fingerprint",
    "dataset_generators",
    "machine_description",
    "model_fingerprint",
    "run_provenance",
    "source_commit",
    "source_fingerprint",
    "training_speed",
]

PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# x86 feature flags of /proc/cpuinfo that change which float32 / int8 kernels run.
_CPU_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_int8", "amx_bf16")


def _cpuinfo() -> Dict[str, str]:
    info = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key in ("model name", "flags") and key not in info:
                    info[key] = value.strip()
    except OSError:
        pass
    return info


def machine_description(threads: Optional[int] = None) -> Dict:
    """
    The CPU (model name, torch's kernel capability such as AVX2 or AVX512, the vector
    and matrix extensions it has), thread count, and software versions.
    """
    import detectron2

    cpuinfo = _cpuinfo()
    flags = set(cpuinfo.get("flags", "").split())
    return {
        "cpu": cpuinfo.get("model name") or platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        # The widest vector instructions torch's CPU kernels use here (AVX2, AVX512, ...).
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpu_flags": [flag for flag in _CPU_FLAGS if flag in flags],
        "threads": threads if threads is not None else torch.get_num_threads(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "detectron2": detectron2.__version__,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def source_commit(root: str = PACKAGE_ROOT) -> Dict:
    """
    ``{"commit": <git HEAD of the checkout that holds the package>, "dirty": whether
    tracked files differ from it}``; both None outside a git checkout (an installed
    package).
    """
    checkout = os.path.dirname(root)

    def git(*args):
        return subprocess.run(
            ["git", "-C", checkout, *args], capture_output=True, text=True, timeout=30, check=True
        ).stdout.strip()

    try:
        if os.path.realpath(git("rev-parse", "--show-toplevel")) != os.path.realpath(checkout):
            return {"commit": None, "dirty": None}
        return {
            "commit": git("rev-parse", "HEAD"),
            "dirty": bool(git("status", "--porcelain", "-uno")),
        }
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def source_fingerprint(root: str = PACKAGE_ROOT) -> str:
    """A short hash of every Python file of the package (its code, whatever git says)."""
    digest = hashlib.sha256()
    for folder, dirs, files in sorted(os.walk(root)):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for name in sorted(files):
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                digest.update(os.path.relpath(path, root).encode())
                with open(path, "rb") as f:
                    digest.update(f.read())
    return digest.hexdigest()[:16]


def config_fingerprint(cfg) -> str:
    """
    A short hash of a merged config with the keys that differ between runs of one recipe
    (SEED, OUTPUT_DIR, MODEL.WEIGHTS) blanked: equal for two runs of the same recipe.
    """
    cfg = cfg.clone()
    cfg.defrost()
    cfg.SEED, cfg.OUTPUT_DIR, cfg.MODEL.WEIGHTS = -1, "", ""
    return hashlib.sha256(cfg.dump().encode()).hexdigest()[:16]


def model_fingerprint(model: torch.nn.Module) -> str:
    """
    A short hash of a built model's structure (its modules as printed, and every
    parameter's and buffer's name, shape and dtype): it changes when the code builds
    another network from the same config.
    """
    digest = hashlib.sha256(repr(model).encode())
    for name, value in model.state_dict().items():
        digest.update(f"{name}:{tuple(value.shape)}:{value.dtype}".encode())
    return digest.hexdigest()[:16]


def dataset_generators(dataset_names: Iterable[str]) -> Dict[str, Optional[Dict]]:
    """
    For each dataset, the arguments its generated data was written with (the
    ``generator.json`` next to its split lists, see :mod:`atto_detectron.synthetic`), or
    None for data that was not generated (the real VOC) or is not a VOC-layout folder.
    """
    from detectron2.data import MetadataCatalog

    from ..data.builtin import GENERATOR_FILE

    generators = {}
    for name in dataset_names:
        folder = getattr(MetadataCatalog.get(name), "dirname", None)
        path = os.path.join(folder, GENERATOR_FILE) if folder else None
        if path and os.path.isfile(path):
            with open(path) as f:
                generators[name] = json.load(f)
        else:
            generators[name] = None
    return generators


def training_speed(metrics_path: str) -> Dict[str, Optional[float]]:
    """
    Seconds per iteration of a training run, from Detectron2's ``metrics.json``: the
    median of its ``time`` records (each the median over the last 20 iterations, without
    the first few of each start), and the iterations they cover.
    """
    times, iterations = [], []
    if os.path.isfile(metrics_path):
        with open(metrics_path) as f:
            for line in f:
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                if "time" in record:
                    times.append(record["time"])
                    iterations.append(record.get("iteration", 0))
    return {
        "seconds_per_iteration": statistics.median(times) if times else None,
        "iterations": (max(iterations) + 1) if iterations else None,
    }


def run_provenance(cfg, model: Optional[torch.nn.Module] = None, processes: int = 1) -> Dict:
    """
    Everything :func:`write_results` records about where a run's results come from:
    commit, config / model / source fingerprints, the machine and the processes, the
    generated data's arguments.
    """
    from detectron2.modeling import build_model

    if model is None:
        model_cfg = cfg.clone()
        model_cfg.defrost()
        model_cfg.MODEL.DEVICE = "cpu"
        model = build_model(model_cfg)
    return {
        **source_commit(),
        "source_fingerprint": source_fingerprint(),
        "config_fingerprint": config_fingerprint(cfg),
        "model_fingerprint": model_fingerprint(model),
        "machine": {**machine_description(), "processes": processes},
        "datasets": dataset_generators(list(cfg.DATASETS.TRAIN) + list(cfg.DATASETS.TEST)),
    }
