"""The measured tables in docs/ are exactly what their committed JSON regenerates."""

import importlib
import json
import os
import re
import shutil

import pytest

from .helpers import REPO_ROOT

DOCS = os.path.join(REPO_ROOT, "docs")
RESULTS = os.path.join(DOCS, "results")

# (page in docs/, benchmark script, committed JSON, extra arguments) for each generated
# benchmark section.
BENCHMARK_SECTIONS = [
    ("ROOFLINE.md", "roofline", "roofline_800.json", []),
    ("DEPLOYMENT.md", "bench_mask_paste", "mask_paste.json", []),
    (
        "BENCHMARKS.md",
        "bench_inference",
        "inference_engines_800.json",
        ["--docs-section", "inference-engines"],
    ),
    (
        "BENCHMARKS.md",
        "bench_inference",
        "inference_engines_800_avx512.json",
        ["--docs-section", "inference-engines-avx512"],
    ),
    ("BENCHMARKS.md", "engine_parts", "engine_parts_800.json", []),
    ("ROOFLINE.md", "train_roofline", "train_roofline.json", []),
]


@pytest.mark.parametrize("page, script, json_name, extra", BENCHMARK_SECTIONS)
def test_benchmark_section_matches_its_committed_json(tmp_path, page, script, json_name, extra):
    docs = tmp_path / page
    shutil.copy(os.path.join(DOCS, page), docs)
    module = importlib.import_module(f"benchmarks.{script}")
    module.main(["--from-json", os.path.join(RESULTS, json_name), "--docs", str(docs)] + extra)
    with open(os.path.join(DOCS, page)) as f:
        assert docs.read_text() == f.read(), f"regenerate the section from {json_name}"


# Pages a reader can take in: past these sizes, details belong on a page of their own.
PAGE_LIMITS = {"BENCHMARKS.md": 20_000, "TRAINING.md": 12_000}


@pytest.mark.parametrize("page, limit", sorted(PAGE_LIMITS.items()))
def test_docs_pages_stay_within_their_size(page, limit):
    size = os.path.getsize(os.path.join(DOCS, page))
    assert size <= limit, f"docs/{page} is {size} bytes, over {limit}: move details out"


def test_model_zoo_matches_its_committed_json(tmp_path):
    from backbone_grid import train_grid as grid

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


# A difference as the grid's findings and README state it: "A − B: box AP50 +1.2
# [-1.1, +3.5], not resolved".
DIFFERENCE = re.compile(
    r"(?P<a>[\w.-]+) − (?P<b>[\w.-]+)(?:, AP50 \[95% interval, Welch\] \|)?:? "
    r"(?:\| )?(?P<rest>.*)"
)
CLAIM = re.compile(
    r"(?P<task>box|mask)(?: AP50)? (?P<diff>[+-]\d+\.\d) \[(?P<low>[+-]\d+\.\d), "
    r"(?P<high>[+-]\d+\.\d)\], (?P<verdict>not resolved|resolved)"
)
# Words that claim an order or a tie; allowed only where the interval resolves it.
VERDICT_WORDS = re.compile(
    r"\b(beats?|within|ends? (?:below|above)|outperforms?|better than|worse than|"
    r"matches|on par)\b",
    re.IGNORECASE,
)


def _grid_runs():
    with open(os.path.join(RESULTS, "backbone_grid.json")) as f:
        return {name: entry.get("runs", []) for name, entry in json.load(f)["models"].items()}


def _statements(text):
    """Table rows one by one; prose joined across its wrapped lines, sentence by sentence."""
    paragraph = []
    for line in text.splitlines() + [""]:
        if line.startswith("|"):
            yield line
        elif line.strip() and not line.startswith("```"):
            paragraph.append(line.strip())
            continue
        if paragraph:
            yield from re.split(r"(?<=[.!?])\s+", " ".join(paragraph))
            paragraph = []


@pytest.mark.parametrize("page", ["README.md", "docs/MODEL_ZOO.md"])
def test_accuracy_sentences_agree_with_their_intervals(page):
    from atto_detectron.analysis.intervals import welch_interval

    from backbone_grid.report import seed_values

    runs = _grid_runs()
    with open(os.path.join(REPO_ROOT, page)) as f:
        text = f.read()
    checked = 0
    for statement in _statements(text):
        match = DIFFERENCE.search(statement)
        if match and match["a"] in runs and match["b"] in runs:
            for claim in CLAIM.finditer(match["rest"]):
                stated = welch_interval(
                    seed_values(runs[match["a"]], claim["task"]),
                    seed_values(runs[match["b"]], claim["task"]),
                )
                assert stated is not None, statement
                for key, name in (("diff", "difference"), ("low", "low"), ("high", "high")):
                    assert claim[key] == f"{stated[name]:+.1f}", statement
                assert (claim["verdict"] == "resolved") == stated["resolved"], statement
                checked += 1
        if re.search(r"\bAP\d*\b|accura", statement) and VERDICT_WORDS.search(statement):
            assert ", resolved" in statement, f"{page}: a verdict without its interval: {statement}"
    models_with_seeds = [name for name, r in runs.items() if len(r) >= 2]
    if "AttoNet-A" in models_with_seeds and len(models_with_seeds) > 1:
        assert checked, f"{page} states no difference with its interval"
