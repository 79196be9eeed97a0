import importlib
import json
import os
from collections import OrderedDict

import pytest
import torch
from torch import nn

from atto_detectron.analysis.detection import detection_complexity
from atto_detectron.config import load_config
from atto_detectron.deploy import detector_inputs, image_tensor, synthetic_image
from benchmarks.engines import build_benchmark_model
from benchmarks.roofline_model import (
    POST_PROCESSING,
    BytesCounterMode,
    PartTimer,
    PartTracker,
    detector_part_counts,
    detector_parts,
    roofline_row,
    roofline_rows,
    sum_by_part,
)

from .helpers import CONFIGS

D_CONFIG = os.path.join(CONFIGS, "atto_maskrcnn_voc_D.yaml")
# AttoNet-D Mask R-CNN on a small image with few proposals and detections.
SMALL = [
    "INPUT.MIN_SIZE_TEST",
    "128",
    "INPUT.MAX_SIZE_TEST",
    "192",
    "MODEL.RPN.POST_NMS_TOPK_TEST",
    "50",
    "TEST.DETECTIONS_PER_IMAGE",
    "10",
]
SMALL_SIZE = (128, 171)
F32 = 4


def _benchmark_script(name):
    return importlib.import_module(f"benchmarks.{name}")


def _count(function):
    with torch.no_grad(), BytesCounterMode() as counter:
        function()
    return counter.read["total"], counter.written["total"]


def test_conv_moves_its_input_weights_and_output():
    conv = nn.Conv2d(8, 4, kernel_size=1)
    x = torch.rand(2, 8, 5, 5)
    read, written = _count(lambda: conv(x))
    assert read == (2 * 8 * 5 * 5 + 4 * 8 + 4) * F32
    assert written == 2 * 4 * 5 * 5 * F32


def test_in_place_views_and_broadcasts():
    x = torch.rand(2, 8, 5, 5)
    size = x.numel() * F32
    # In place: the target is read and written; out of place: read, and a fresh output.
    assert _count(lambda: torch.relu_(x)) == (size, size)
    assert _count(lambda: torch.relu(x)) == (size, size)
    assert _count(lambda: nn.ReLU(inplace=True)(x)) == (size, size)
    # Views move nothing.
    assert _count(lambda: x.view(2, -1)) == (0, 0)
    assert _count(lambda: x.transpose(1, 2)[0, :3].unsqueeze(0)) == (0, 0)
    # A reshape that has to copy reads and writes once; each storage counts once per
    # operator, a broadcast operand by the memory it spans.
    assert _count(lambda: x.transpose(1, 2).reshape(-1)) == (size, size)
    assert _count(lambda: x + x) == (size, size)
    bias = torch.rand(1, 8, 1, 1)
    assert _count(lambda: x + bias.expand_as(x)) == (size + 8 * F32, size)
    # Copying into an existing tensor writes it without reading it.
    y = torch.empty_like(x)
    assert _count(lambda: y.copy_(x)) == (size, size)
    # Indexed writes (ROIAlign's per-level outputs, mask pasting) write the indexed
    # elements only: here 3 boxes' 2 x 3 pixels of 8 channels.
    index, values = torch.tensor([0, 3, 4]), torch.rand(3, 8, 2, 3)
    boxes = torch.zeros(5, 8, 5, 5)
    written = values.numel() * F32
    expected = (index.numel() * 8 + written, written)
    region = (index, slice(None), slice(1, 3), slice(0, 3))
    assert _count(lambda: boxes.__setitem__(region, values)) == expected


class _Nested(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 4, 1)
        self.b = nn.Sequential(nn.Conv2d(4, 4, 1), nn.ReLU(), nn.Conv2d(4, 2, 1))

    def forward(self, x):
        x = self.b(self.a(x * 2))
        return x.sum()


def test_parts_add_up_to_the_whole():
    model = _Nested()
    x = torch.rand(1, 3, 6, 6)
    parts = OrderedDict([("a", ["a"]), ("b", ["b"]), ("b.2", ["b.2"])])
    total_read, total_written = _count(lambda: model(x))
    tracker = PartTracker(model, parts, "rest")
    with torch.no_grad(), BytesCounterMode(lambda: tracker.current) as counter:
        model(x)
    tracker.remove()
    assert set(counter.read) == {"a", "b", "b.2", "rest"}
    assert sum(counter.read.values()) == total_read
    assert sum(counter.written.values()) == total_written
    # The innermost part owns an operator: b.2's conv is not b's.
    pixels = 36
    assert counter.read["b.2"] == (4 * pixels + 2 * 4 + 2) * F32
    assert counter.written["b.2"] == 2 * pixels * F32
    # "rest": x * 2 and the sum.
    assert counter.read["rest"] == (3 * pixels + 2 * pixels) * F32

    timer = PartTimer(model, parts, "rest")
    seconds = timer.run(model, x)
    assert list(seconds) == ["a", "b", "b.2", "rest", "total"]
    assert all(s >= 0 for s in seconds.values())
    assert sum(seconds[p] for p in ("a", "b", "b.2", "rest")) == pytest.approx(seconds["total"])

    # The same attribution for per-module totals that include their children.
    per_module = {"": 100, "a": 10, "b": 50, "b.0": 20, "b.2": 30}
    assert sum_by_part(per_module, parts, "rest") == {"a": 10, "b": 20, "b.2": 30, "rest": 40}


def test_roofline_bound_is_the_slower_limit():
    # 1 G mult-adds = 2 GFLOP at 100 GFLOP/s: 20 ms; 100 MB at 10 GB/s: 10 ms.
    row = roofline_row(1e9, 100e6, seconds=0.1, peak_flops=100e9, bandwidth=10e9)
    assert row["compute_bound_s"] == pytest.approx(0.02)
    assert row["memory_bound_s"] == pytest.approx(0.01)
    assert row["bound_by"] == "compute" and row["bound_s"] == pytest.approx(0.02)
    assert row["x_from_roofline"] == pytest.approx(5.0)
    assert row["flop_per_byte"] == pytest.approx(20.0)
    row = roofline_row(1e9, 1e9, seconds=None, peak_flops=100e9, bandwidth=10e9)
    assert row["bound_by"] == "memory" and row["bound_s"] == pytest.approx(0.1)
    assert row["x_from_roofline"] is None
    assert roofline_row(0, 0, 0.001, 1e9, 1e9)["bound_by"] is None
    with pytest.raises(ValueError):
        roofline_row(1, 1, 1, 0, 1e9)

    counts = {
        "conv": {"mult_adds": 1e9, "bytes": 100e6},
        "relu": {"mult_adds": 0, "bytes": 300e6},
        "total": {"mult_adds": 1e9, "bytes": 400e6},
    }
    rows = roofline_rows(counts, {"conv": 0.04, "relu": 0.03, "total": 0.07}, 100e9, 10e9)
    total = rows["total"]
    assert total["bound_s"] == pytest.approx(0.05)  # 20 ms compute + 30 ms memory
    assert total["bound_by"] == "memory" and total["memory_bound_share"] == pytest.approx(0.6)
    assert total["x_from_roofline"] == pytest.approx(1.4)


def _report(models=("AttoNet-A", "R50-FPN")):
    rooflines = OrderedDict()
    for scale, name in enumerate(models, start=1):
        counts = OrderedDict(
            [
                ("res2", {"mult_adds": scale * 1e9, "bytes": 300e6}),
                ("FPN", {"mult_adds": scale * 2e9, "bytes": 50e6}),
                (POST_PROCESSING, {"mult_adds": 0, "bytes": 20e6}),
                ("total", {"mult_adds": scale * 3e9, "bytes": 370e6}),
            ]
        )
        seconds = {"res2": 0.1, "FPN": scale * 0.05, POST_PROCESSING: 0.01}
        seconds["total"] = sum(seconds.values())
        rooflines[f"{name}/pytorch/800"] = {
            "model": name,
            "config": f"configs/{name}.yaml",
            "engine": "pytorch",
            "short_edge": 800,
            "image_size": [800, 1067],
            "proposals": 1000,
            "detections": 100,
            "parts": roofline_rows(counts, seconds, 100e9, 10e9),
        }
    return {
        "command": "python -m benchmarks.roofline --sizes 800",
        "machine": {
            "cpu": "a CPU",
            "threads": 2,
            "cpu_count": 2,
            "torch": "2.3.1",
            "allocator": "default",
        },
        "clock": "wall",
        "repeats": 3,
        "limits": {
            "gemm": {"flop_per_s": 100e9, "size": 4096, "seconds": [1.0, 1.0, 1.0]},
            "memory": {
                "bytes_per_s": 10e9,
                "copy_bytes_per_s": 10e9,
                "add_bytes_per_s": 9e9,
                "array_bytes": 256 * 1024**2,
            },
        },
        "rooflines": rooflines,
    }


def test_docs_section_is_regenerated_from_json(tmp_path):
    roofline = _benchmark_script("roofline")
    report = _report()
    json_path, docs = tmp_path / "roofline.json", tmp_path / "BENCHMARKS.md"
    json_path.write_text(json.dumps(report))

    # A new file gets the intro and the section.
    roofline.main(["--from-json", str(json_path), "--docs", str(docs)])
    created = docs.read_text()
    assert created.startswith("# Benchmarks") and "<!-- roofline:end -->" in created

    before = "# Benchmarks\n\nHand-written intro.\n\n<!-- roofline:begin -->\n"
    after = "\n<!-- roofline:end -->\n\n## Other\n\nkept | as | is\n"
    docs.write_text(before + "an old table" + after)
    roofline.main(["--from-json", str(json_path), "--docs", str(docs)])
    text = docs.read_text()
    assert text.startswith(before) and text.endswith(after)
    section = text[len(before) : -len(after)]
    assert section == roofline.format_markdown(json.loads(json_path.read_text()))
    assert "| res2 | 1.00 | 300 | 6.7 | 20.0 | 30.0 | memory | 100.0 | 3.3 |" in section
    assert "| **total** |" in section and "AttoNet-A (ms)" in section
    # Regenerating from the same JSON changes nothing.
    roofline.main(["--from-json", str(json_path), "--docs", str(docs)])
    assert docs.read_text() == text

    common = _benchmark_script("common")
    with pytest.raises(ValueError):
        common.replace_doc_section("<!-- roofline:end --> <!-- roofline:begin -->", "roofline", "")


@pytest.mark.slow
def test_small_detector_roofline_matches_its_complexity():
    _, model = build_benchmark_model(D_CONFIG, SMALL)
    inputs = detector_inputs(image_tensor(synthetic_image(*SMALL_SIZE)))
    parts = detector_parts(model)
    stages = ["stem", "res2", "res3", "res4", "res5"]
    assert list(parts) == stages + ["FPN", "RPN", "box head", "mask head"]
    counts = detector_part_counts(model, inputs)
    assert list(counts) == list(parts) + [POST_PROCESSING, "total"]
    for part, count in counts.items():
        assert count["bytes"] > 0 and count["mult_adds"] >= 0, part
        assert count["bytes"] == count["bytes_read"] + count["bytes_written"]
    # Every operator of the inference belongs to one part.
    with torch.no_grad(), BytesCounterMode() as counter:
        model(inputs)
    assert counts["total"]["bytes"] == counter.bytes("total")

    reference = detection_complexity(load_config(D_CONFIG, SMALL, device="cpu"), SMALL_SIZE)
    expected = reference["mult_adds"]
    assert sum(counts[stage]["mult_adds"] for stage in stages) == expected["backbone"]
    for part in ("FPN", "RPN", "box head", "mask head", "total"):
        assert counts[part]["mult_adds"] == expected[part], part
    assert counts[POST_PROCESSING]["mult_adds"] == 0

    rows = roofline_rows(counts, None, peak_flops=50e9, bandwidth=10e9)
    assert list(rows) == list(counts)
    assert all(rows[part]["bound_s"] > 0 for part in rows)


@pytest.mark.slow
def test_roofline_command_writes_json_and_docs(tmp_path):
    roofline = _benchmark_script("roofline")
    docs = tmp_path / "BENCHMARKS.md"
    report = roofline.main(
        [
            "--models",
            "AttoNet-D",
            "--sizes",
            "96",
            "--repeats",
            "1",
            "--warmup",
            "0",
            "--threads",
            str(torch.get_num_threads()),
            "--allocator",
            "default",
            "--gemm-size",
            "256",
            "--stream-mb",
            "8",
            "--peak-repeats",
            "1",
            "--output-dir",
            str(tmp_path),
            "--docs",
            str(docs),
            "--opts",
            "MODEL.RPN.POST_NMS_TOPK_TEST",
            "20",
            "TEST.DETECTIONS_PER_IMAGE",
            "5",
        ]
    )
    saved = json.loads((tmp_path / "roofline.json").read_text())
    entry = saved["rooflines"]["AttoNet-D/pytorch/96"]
    assert entry["proposals"] == 20 and entry["detections"] == 5
    assert saved["limits"]["gemm"]["flop_per_s"] > 0
    assert saved["limits"]["memory"]["bytes_per_s"] > 0
    for part, row in entry["parts"].items():
        assert row["measured_s"] >= 0 and row["bytes"] > 0, part
    assert "threads" in saved["machine"] and report["rooflines"]
    assert docs.read_text().count("| **total** |") == 2  # comparison and model table


def test_training_roofline_total_sums_the_phases():
    train_roofline = _benchmark_script("train_roofline")
    counts = OrderedDict(
        [
            ("forward", {"flop": 4e9, "bytes": 1e8, "operators": {}}),
            ("backward", {"flop": 8e9, "bytes": 2e8, "operators": {}}),
            ("optimizer step", {"flop": 0, "bytes": 5e8, "operators": {"add_": 4e8}}),
        ]
    )
    seconds = {"forward": 0.2, "backward": 0.3, "optimizer step": 0.1}
    rows = train_roofline.phase_rows(counts, seconds, peak_flops=100e9, bandwidth=10e9)
    assert rows["forward"]["bound_by"] == "compute" and rows["forward"]["bound_s"] == 0.04
    assert rows["optimizer step"]["bound_by"] == "memory"
    assert rows["optimizer step"]["bound_s"] == pytest.approx(0.05)
    total = rows["total"]
    assert total["bound_s"] == pytest.approx(0.04 + 0.08 + 0.05)
    assert total["measured_s"] == pytest.approx(0.6)
    assert total["x_from_roofline"] == pytest.approx(0.6 / 0.17)
    assert total["bound_by"] == "compute"  # 0.12 s of the 0.17 s bound is compute
    table = train_roofline.format_phase_table(rows)
    assert (
        "| optimizer step | 0.00 | 500 | 0.0 | 0.0 | 50.0 | memory | 100.0 | 2.0 | add_ 80% |"
        in table
    )


@pytest.mark.parametrize("groups", [1, 16])
def test_convolution_backward_flops_are_twice_the_forward(groups):
    train_roofline = _benchmark_script("train_roofline")
    conv = nn.Conv2d(16, 16, 3, stride=2, padding=1, groups=groups)
    x = torch.randn(2, 16, 20, 24, requires_grad=True)
    with train_roofline.flop_counter() as forward:
        y = conv(x)
    with train_roofline.flop_counter() as backward:
        y.sum().backward()
    expected = 2 * 16 * (16 // groups) * 9 * 10 * 12 * 2  # 2 FLOP per mult-add
    assert forward.get_total_flops() == expected
    assert backward.get_total_flops() == 2 * expected  # input and weight gradients


@pytest.mark.slow
def test_training_roofline_counts_forward_and_backward(tmp_path):
    train_roofline = _benchmark_script("train_roofline")
    docs = tmp_path / "BENCHMARKS.md"
    config = os.path.join(CONFIGS, "synth", "atto_maskrcnn_synth_D.yaml")
    train_roofline.main(
        ["--config-files", config, "--image-size", "96", "128", "--repeats", "1"]
        + ["--warmup", "0", "--threads", str(torch.get_num_threads()), "--gemm-size", "256"]
        + ["--stream-mb", "8", "--peak-repeats", "1", "--output-dir", str(tmp_path)]
        + ["--docs", str(docs)]
    )
    saved = json.loads((tmp_path / "train_roofline.json").read_text())
    phases = saved["models"]["atto_maskrcnn_synth_D"]["phases"]
    assert list(phases) == ["forward", "backward", "optimizer step", "total"]
    # A convolution's backward computes the gradients of its input and of its weights,
    # twice its forward's FLOPs (the first convolution's input needs none).
    assert 1.8 < phases["backward"]["flop"] / phases["forward"]["flop"] <= 2.0
    assert phases["optimizer step"]["flop"] == 0 and phases["optimizer step"]["bytes"] > 0
    for phase, row in phases.items():
        assert row["measured_s"] > 0 and row["bytes"] > 0, phase
    assert saved["limits"]["gemm"]["flop_per_s"] > 0
    assert docs.read_text().count("| **total** |") == 1
    # The docs are regenerated from the JSON alone.
    docs.unlink()
    train_roofline.main(["--from-json", str(tmp_path / "train_roofline.json"), "--docs", str(docs)])
    assert "atto_maskrcnn_synth_D" in docs.read_text()
