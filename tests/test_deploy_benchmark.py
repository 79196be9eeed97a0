import importlib
import json
import mmap
import os
import subprocess
import sys

import pytest
import torch

from atto_detectron.deploy import image_tensor, synthetic_image
from benchmarks.engines import (
    build_benchmark_model,
    make_predictor,
    paired_ratio,
    reset_peak_rss,
    rss_bytes,
    summarize_seconds,
)

from .conftest import CONFIGS, REPO_ROOT

# Few proposals and detections keep the heads cheap for these checks.
SMALL_WORKLOAD = ["MODEL.RPN.POST_NMS_TOPK_TEST", "50", "TEST.DETECTIONS_PER_IMAGE", "10"]


def _benchmark_script(name):
    return importlib.import_module(f"benchmarks.{name}")


def test_equalized_workload_is_the_same_for_different_backbones():
    # Random weights decide which boxes the heads see; equalized models must see the
    # same boxes, and the configs' maximum number of them.
    image = image_tensor(synthetic_image(96, 128))
    outputs = []
    for config in ("atto_maskrcnn_voc_C.yaml", "atto_maskrcnn_voc_D.yaml"):
        _, model = build_benchmark_model(os.path.join(CONFIGS, config), SMALL_WORKLOAD)
        outputs.append(make_predictor(model, "pytorch", image)(image))
    assert len(outputs[0]) == len(outputs[1]) == 10
    torch.testing.assert_close(outputs[0].pred_boxes.tensor, outputs[1].pred_boxes.tensor)


def test_timing_statistics():
    stats = summarize_seconds([3.0, 1.0, 2.0, 10.0])
    assert stats["median"] == 2.5 and stats["min"] == 1.0 and stats["max"] == 10.0
    assert stats["q1"] <= stats["median"] <= stats["q3"]
    # Round by round: a slow round (load) slows both and cancels out.
    assert paired_ratio([4.0, 40.0, 4.0], [1.0, 10.0, 2.0]) == 4.0
    with pytest.raises(ValueError):
        paired_ratio([1.0], [1.0, 2.0])


def test_peak_rss_sees_a_temporary_allocation():
    if not reset_peak_rss():
        pytest.skip("no /proc/self/clear_refs here")
    before = rss_bytes(peak=True)
    # 64 MB of fresh pages, touched, then freed: an anonymous mapping rather than the
    # heap, where earlier tests' freed but resident memory could be reused unseen.
    block = mmap.mmap(-1, 64 * 1024 * 1024)
    block.write(b"\1" * len(block))
    block.close()
    assert rss_bytes(peak=True) - before >= 60 * 1024 * 1024
    assert reset_peak_rss() and rss_bytes(peak=True) < before + 60 * 1024 * 1024


# Allocates 64 MB (more than glibc's largest default mmap threshold, 32 MB), touches
# it, frees it; prints how much of it is still resident.
_FREED_BLOCK_SCRIPT = """
import sys, torch
from atto_detectron.deploy.allocator import keep_freed_memory
from benchmarks.engines import rss_bytes
if sys.argv[1] == "keep":
    assert keep_freed_memory()
before = rss_bytes()
block = torch.ones(16 * 1024 * 1024)
del block
print((rss_bytes() - before) / 1024 / 1024)
"""


def test_keep_freed_memory_keeps_a_freed_block_for_reuse():
    if not sys.platform.startswith("linux"):
        pytest.skip("glibc only")

    def resident_after_free(mode):
        result = subprocess.run(
            [sys.executable, "-c", _FREED_BLOCK_SCRIPT, mode],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        return float(result.stdout.split()[-1])

    assert resident_after_free("default") < 16  # unmapped on free
    assert resident_after_free("keep") > 60  # kept in the heap for the next allocation


def test_bench_inference_quick(tmp_path):
    bench = _benchmark_script("bench_inference")
    argv = ["--quick", "--models", "AttoNet-C", "AttoNet-D", "--baseline", "AttoNet-C"]
    argv += ["--sizes", "96", "--no-memory", "--no-mult-adds", "--output-dir", str(tmp_path)]
    argv += ["--opts"] + SMALL_WORKLOAD
    bench.main(argv)
    report = json.loads((tmp_path / "inference.json").read_text())
    entry = report["results"]["AttoNet-D"]["sizes"]["96"]
    assert entry["image_size"] == [96, 128]
    assert entry["latency_s"]["pytorch"]["repeats"] == 2
    assert report["settings"]["baseline"] == "AttoNet-C"
    assert entry["ratio_to_baseline"]["latency"]["pytorch"] > 0
    assert report["machine"]["threads"] == os.cpu_count()
    assert report["machine"]["allocator"] == "keep-freed"
    assert (tmp_path / "inference.png").stat().st_size > 10_000


def test_bench_inference_docs_section_states_the_targets_from_the_json(tmp_path):
    bench = _benchmark_script("bench_inference")

    def entry(latencies, memory):
        return {
            "sizes": {
                "800": {
                    "latency_s": {e: {"median": v, "q1": v, "q3": v} for e, v in latencies.items()},
                    "memory": {"pytorch": {"inference_mb": memory}},
                }
            }
        }

    report = {
        "command": "python -m benchmarks.bench_inference --sizes 800",
        "machine": {"cpu": "test", "threads": 2, "cpu_count": 2, "torch": "2", "allocator": "default"},
        "settings": {
            "baseline": "R50-FPN", "sizes": [800], "latency": "one image", "repeats": 5,
            "warmup": 1, "workload": "fixed", "memory": "fresh process",
        },
        "results": {
            "AttoNet-A": entry({"pytorch": 1.0, "openvino": 0.8, "openvino-int8": 0.5}, 300.0),
            "R50-FPN": entry({"pytorch": 4.5, "openvino": 3.0, "openvino-int8": 2.0}, 900.0),
        },
    }  # fmt: skip
    (tmp_path / "inference.json").write_text(json.dumps(report))
    docs = tmp_path / "BENCHMARKS.md"
    docs.write_text("# Benchmarks\n\nprose kept\n")
    bench.main(
        [
            "--from-json",
            str(tmp_path / "inference.json"),
            "--docs-section",
            "engines",
            "--docs",
            str(docs),
        ]
    )
    text = docs.read_text()
    assert text.startswith("# Benchmarks\n\nprose kept\n")
    assert (
        "<!-- engines:begin -->" in text
        and "python -m benchmarks.bench_inference --sizes 800" in text
    )
    assert "| eager PyTorch: R50-FPN / AttoNet-A | 4.50x | 4x | yes |" in text
    assert "R50-FPN (openvino-int8) / AttoNet-A (openvino-int8) | 4.00x | 5x | no |" in text
    assert "| INT8 in openvino: fp32 / INT8 of AttoNet-A | 1.60x | 1.5x | yes |" in text
    assert "| inference memory (pytorch): R50-FPN / AttoNet-A | 3.00x | 2.5x | yes |" in text
    with pytest.raises(SystemExit, match="--docs-section"):
        bench.main(["--from-json", str(tmp_path / "inference.json")])


def test_bench_train_quick(tmp_path):
    bench = _benchmark_script("bench_train")
    argv = ["--quick", "--models", "AttoNet-D", "--sizes", "96", "--batch-size", "1"]
    argv += ["--warmup", "0", "--repeats", "1", "--no-memory", "--no-mult-adds"]
    argv += ["--output-dir", str(tmp_path)]
    bench.main(argv)
    report = json.loads((tmp_path / "train.json").read_text())
    assert report["results"]["AttoNet-D"]["sizes"]["96"]["iterations_per_s"]["train"] > 0
    assert (tmp_path / "train.png").stat().st_size > 10_000
