"""The measured tables in docs/ are exactly what their committed JSON regenerates."""

import importlib
import os
import shutil

import pytest

from .conftest import REPO_ROOT, load_tool

DOCS = os.path.join(REPO_ROOT, "docs")
RESULTS = os.path.join(DOCS, "results")

# (benchmark script, committed JSON, extra arguments) for each generated section of
# docs/BENCHMARKS.md.
BENCHMARK_SECTIONS = [
    ("roofline", "roofline_800.json", []),
    ("bench_inference", "inference_engines_800.json", ["--docs-section", "inference-engines"]),
    (
        "bench_inference",
        "inference_engines_800_avx512.json",
        ["--docs-section", "inference-engines-avx512"],
    ),
    ("train_roofline", "train_roofline.json", []),
]


@pytest.mark.parametrize("script, json_name, extra", BENCHMARK_SECTIONS)
def test_benchmark_section_matches_its_committed_json(tmp_path, script, json_name, extra):
    docs = tmp_path / "BENCHMARKS.md"
    shutil.copy(os.path.join(DOCS, "BENCHMARKS.md"), docs)
    module = importlib.import_module(f"benchmarks.{script}")
    module.main(["--from-json", os.path.join(RESULTS, json_name), "--docs", str(docs)] + extra)
    with open(os.path.join(DOCS, "BENCHMARKS.md")) as f:
        assert docs.read_text() == f.read(), f"regenerate the section from {json_name}"


def test_model_zoo_matches_its_committed_json(tmp_path):
    grid = load_tool("train_backbone_grid")
    # The page names its JSON and plots relative to itself: the same layout as docs/.
    (tmp_path / "results").mkdir()
    saved = tmp_path / "results" / "backbone_grid.json"
    shutil.copy(os.path.join(RESULTS, "backbone_grid.json"), saved)
    page = tmp_path / "MODEL_ZOO.md"
    grid.main(
        ["--from-json", str(saved), "--docs", str(page), "--images", str(tmp_path / "images")]
    )
    with open(os.path.join(DOCS, "MODEL_ZOO.md")) as f:
        assert page.read_text() == f.read(), "regenerate docs/MODEL_ZOO.md from its JSON"
