import importlib
import json
import mmap
import os

import pytest
import torch

import benchmarks.common
from atto_detectron.deploy import allocator, image_tensor, synthetic_image
from benchmarks.engines import (
    build_benchmark_model,
    make_predictor,
    make_train_step,
    paired_ratio,
    reset_peak_rss,
    rss_bytes,
    summarize_seconds,
    synthetic_training_batch,
)

from .helpers import CONFIGS

# Few proposals and detections keep the heads cheap for these checks.
SMALL_WORKLOAD = ["MODEL.RPN.POST_NMS_TOPK_TEST", "50", "TEST.DETECTIONS_PER_IMAGE", "10"]


def _benchmark_script(name):
    return importlib.import_module(f"benchmarks.{name}")


@pytest.mark.slow
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


class _FakeCFunction:
    """A C function of a fake C library: records its calls, returns ``result``."""

    def __init__(self, result=1):
        self.result = result
        self.calls = []

    def __call__(self, *args):
        self.calls.append(args)
        return self.result


class _FakeGlibc:
    def __init__(self, mallopt_result=1):
        self.mallopt = _FakeCFunction(mallopt_result)
        self.malloc_trim = _FakeCFunction()


def test_keep_freed_memory_raises_glibcs_mmap_and_trim_thresholds(monkeypatch):
    libc = _FakeGlibc()
    monkeypatch.setattr(allocator, "_libc", lambda: libc)
    assert allocator.keep_freed_memory(64 << 20)
    # M_MMAP_THRESHOLD (-3), then M_TRIM_THRESHOLD (-1), both to the block size.
    assert libc.mallopt.calls == [(-3, 64 << 20), (-1, 64 << 20)]
    libc.mallopt.calls.clear()
    assert allocator.use_allocator("keep-freed") == "keep-freed"
    # mallopt takes a C int: the default 1 GiB fits, larger sizes are clipped to INT_MAX.
    assert libc.mallopt.calls == [(-3, 1 << 30), (-1, 1 << 30)]
    libc.mallopt.calls.clear()
    allocator.keep_freed_memory(1 << 40)
    assert libc.mallopt.calls == [(-3, 2**31 - 1), (-1, 2**31 - 1)]
    # The default allocator changes nothing.
    libc.mallopt.calls.clear()
    assert allocator.use_allocator("default") == "default" and libc.mallopt.calls == []
    allocator.release_freed_memory()
    assert libc.malloc_trim.calls == [(0,)]
    with pytest.raises(ValueError, match="keep-freed"):
        allocator.use_allocator("jemalloc")


def test_keep_freed_memory_reports_where_it_cannot_take_effect(monkeypatch):
    refusing = _FakeGlibc(mallopt_result=0)
    monkeypatch.setattr(allocator, "_libc", lambda: refusing)
    assert not allocator.keep_freed_memory()
    assert allocator.use_allocator("keep-freed") == "default"
    # Not glibc (no mallopt, or no C library at all): nothing to set, nothing fails.
    for libc in (object(), None):
        monkeypatch.setattr(allocator, "_libc", lambda: libc)
        assert not allocator.keep_freed_memory()
        assert allocator.use_allocator("keep-freed") == "default"
        allocator.release_freed_memory()


@pytest.mark.slow
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


def _plotted_report(with_counts):
    def entry(size):
        stats = {"median": size / 1e3, "q1": size / 1e3, "q3": size / 1e3}
        record = {"latency_s": {"pytorch": stats}}
        if with_counts:
            record["mult_adds"] = {"total": size * 1e8}
            record["memory"] = {"pytorch": {"inference_mb": size / 2}}
        return record

    results = {name: {"sizes": {str(s): entry(s) for s in (320, 800)}} for name in ("A", "B")}
    accuracy = {"A": {"APm": 30.0}} if with_counts else {}
    return benchmarks.common.report_figure(
        results,
        accuracy,
        sizes=[320, 800],
        engines=["pytorch", "onnxruntime"],
        time_label="latency",
        memory_engine="pytorch",
        memory_key="inference_mb",
        memory_label="memory",
    )


def test_benchmark_plot_has_no_panel_without_data(tmp_path):
    import matplotlib.pyplot as plt

    # Latency alone (--no-mult-adds, --no-memory, no results.json): one panel.
    fig = _plotted_report(with_counts=False)
    assert [ax.get_title() for ax in fig.axes] == ["latency"]
    plt.close(fig)
    # With counts, memory and an accuracy: four panels, each with data.
    fig = _plotted_report(with_counts=True)
    assert len(fig.axes) == 4 and all(ax.has_data() for ax in fig.axes)
    plt.close(fig)
    # Nothing measured with the plotted engines: no figure, no file.
    path = tmp_path / "plot.png"
    assert not benchmarks.common.plot_report({}, {}, str(path), [800], [], "", "", "", "")
    assert not path.exists()


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
        "machine": {
            "cpu": "test",
            "threads": 2,
            "cpu_count": 2,
            "torch": "2",
            "allocator": "default",
        },
        "settings": {
            "baseline": "R50-FPN",
            "sizes": [800],
            "latency": "one image",
            "repeats": 5,
            "warmup": 1,
            "workload": "fixed",
            "memory": "fresh process",
        },
        "results": {
            "AttoNet-A": entry({"pytorch": 1.0, "openvino": 0.8, "openvino-int8": 0.5}, 300.0),
            "R50-FPN": entry({"pytorch": 4.5, "openvino": 3.0, "openvino-int8": 2.0}, 900.0),
        },
    }
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


def test_train_step_updates_the_weights_of_every_part(one_thread):
    cfg, model = build_benchmark_model(
        os.path.join(CONFIGS, "atto_maskrcnn_voc_D.yaml"), fixed_workload=False
    )
    batch = synthetic_training_batch(1, (96, 128), cfg.MODEL.ROI_HEADS.NUM_CLASSES)
    before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    make_train_step(model, batch)()
    assert model.training
    changed = [n for n, p in model.named_parameters() if n in before and not p.equal(before[n])]
    for part in (
        "backbone.bottom_up.",
        "backbone.fpn_",
        "proposal_generator.",
        "roi_heads.box_head.",
        "roi_heads.box_predictor.",
        "roi_heads.mask_head.",
    ):
        assert any(name.startswith(part) for name in changed), f"no weight of {part} changed"


@pytest.mark.slow
def test_bench_train_quick_reports_both_models_and_their_ratio(tmp_path):
    bench = _benchmark_script("bench_train")
    argv = ["--quick", "--models", "AttoNet-C", "AttoNet-D", "--baseline", "AttoNet-C"]
    argv += ["--sizes", "96", "--batch-size", "1", "--warmup", "0", "--repeats", "2"]
    argv += ["--no-memory", "--no-mult-adds", "--output-dir", str(tmp_path)]
    bench.main(argv)
    report = json.loads((tmp_path / "train.json").read_text())
    assert report["settings"]["baseline"] == "AttoNet-C" and report["settings"]["repeats"] == 2
    entries = {name: report["results"][name]["sizes"]["96"] for name in ("AttoNet-C", "AttoNet-D")}
    for entry in entries.values():
        assert entry["image_size"] == [96, 128] and len(entry["seconds"]["train"]) == 2
        median = entry["latency_s"]["train"]["median"]
        assert entry["iterations_per_s"]["train"] == pytest.approx(1 / median)
    # The baseline's ratio is 1; the other model's is the ratio of the median times.
    ratio = entries["AttoNet-D"]["ratio_to_baseline"]["latency"]["train"]
    assert entries["AttoNet-C"]["ratio_to_baseline"]["latency"]["train"] == pytest.approx(1)
    assert ratio == pytest.approx(
        entries["AttoNet-C"]["latency_s"]["train"]["median"]
        / entries["AttoNet-D"]["latency_s"]["train"]["median"]
    )
    assert report["results"]["AttoNet-C"]["params"] != report["results"]["AttoNet-D"]["params"]
    assert (tmp_path / "train.png").stat().st_size > 10_000
