"""tools/train_backbone_grid.py and its report: run order, resume, seeds, Pareto front, docs."""

import json
import os
import subprocess

import pytest

from atto_detectron.analysis.backbone_grid import (
    findings,
    pareto_front,
    read_run_metrics,
    summarize_seeds,
)

from .conftest import load_tool

grid = load_tool("train_backbone_grid")


def _results(box_ap50, mask_ap50):
    return {
        "iteration": 1100,
        "summary": {
            "voc_synth_val": {
                "APd": {"AP": box_ap50 / 2, "AP50": box_ap50, "AP75": box_ap50 / 3},
                "APm": {"AP": mask_ap50 / 2, "AP50": mask_ap50, "AP75": mask_ap50 / 3},
            }
        },
    }


def test_pareto_front_keeps_only_points_nothing_beats():
    points = {
        "fast": (1, 50),
        "slow_better": (3, 60),
        "dominated": (2, 45),
        "tie_cost_worse": (1, 40),
    }
    assert pareto_front(points) == ["fast", "slow_better"]
    assert pareto_front({"a": (1, 1), "b": (1, 1)}) == ["a", "b"]


def test_seed_summary_is_mean_and_sample_spread():
    runs = [read_run_metrics(_results(60, 50)), read_run_metrics(_results(64, 54))]
    summary = summarize_seeds(runs)
    assert summary["box"]["AP50"] == {
        "mean": 62,
        "std": pytest.approx(2.828, abs=1e-3),
        "min": 60,
        "max": 64,
        "n": 2,
    }
    assert summary["mask"]["AP75"]["mean"] == pytest.approx(52 / 3)
    assert summarize_seeds(runs[:1])["box"]["AP50"]["std"] == 0.0
    with pytest.raises(ValueError, match="no evaluation"):
        read_run_metrics({"iteration": 3})


def test_findings_compare_with_r50_and_name_faster_better_peers():
    def model(latency, box, mask):
        accuracy = summarize_seeds([read_run_metrics(_results(box, mask))])
        return {"latency_ms": latency, "accuracy": accuracy}

    report = {
        "models": {
            "AttoNet-A": model(1000, 60, 55),
            "MobileNetV2-FPN": model(900, 62, 54),
            "R50-FPN": model(4000, 68, 58),
        }
    }
    lines = findings(report)
    assert (
        "AttoNet-A is 8.0 box AP50 below and 3.0 mask AP50 below R50-FPN at 4.0x its speed: "
        "not within 5 points of it." in lines
    )
    assert "At equal or lower latency, MobileNetV2-FPN beat AttoNet-A in box AP50." in lines
    assert "No model as fast as AttoNet-A or faster beats it in mask AP50." in lines
    assert not any("Between the seeds" in line for line in lines)  # one seed each
    two_seeds = [read_run_metrics(_results(box, mask)) for box, mask in ((58, 55), (62, 57))]
    spread = {"models": dict(report["models"])}
    spread["models"]["AttoNet-A"] = {"latency_ms": 1000, "accuracy": summarize_seeds(two_seeds)}
    assert (
        "Between the seeds of one model, AP50 varies by up to 2.8 points (standard "
        "deviation): differences smaller than that are not resolved by these runs."
        in findings(spread)
    )
    # A backbone that beats R50 in one task is above it there, not "-2.0 below".
    report["models"]["R50-FPN"] = model(4000, 58, 57)
    assert (
        "AttoNet-A is 2.0 box AP50 above and 2.0 mask AP50 below R50-FPN at 4.0x its speed: "
        "within 5 points of it." in findings(report)
    )


def test_runs_are_ordered_seed_by_seed_with_r50s_second_seed_last():
    runs = grid.planned_runs(["AttoNet-A", "R50-FPN", "AttoNet-D"], [0, 1])
    assert runs == [
        ("AttoNet-A", 0),
        ("R50-FPN", 0),
        ("AttoNet-D", 0),
        ("AttoNet-A", 1),
        ("AttoNet-D", 1),
        ("R50-FPN", 1),
    ]


def test_only_unfinished_runs_train_and_they_resume(tmp_path, monkeypatch):
    args = grid.get_parser().parse_args(
        ["--output-dir", str(tmp_path), "--models", "AttoNet-A", "AttoNet-D", "--max-runs", "2"]
    )
    finished = tmp_path / "runs" / "AttoNet-A" / "seed0"
    finished.mkdir(parents=True)
    (finished / "results.json").write_text(json.dumps(_results(60, 50)))
    commands = []
    monkeypatch.setattr(
        subprocess,
        "run",
        lambda command, **kw: commands.append(command) or subprocess.CompletedProcess(command, 0),
    )
    grid.train_missing_runs(args)
    assert [(c[c.index("--config-file") + 1], c[c.index("SEED") + 1]) for c in commands] == [
        (grid.GRID["AttoNet-D"], "0"),
        (grid.GRID["AttoNet-A"], "1"),
    ]
    assert all("--resume" in c for c in commands)
    assert commands[0][-1] == str(tmp_path / "runs" / "AttoNet-D" / "seed0")

    monkeypatch.setattr(
        subprocess, "run", lambda command, **kw: subprocess.CompletedProcess(command, 3)
    )
    with pytest.raises(
        SystemExit, match=r"AttoNet-D seed 0 failed.*AttoNet-D/seed0/log.txt.*continues"
    ):
        grid.train_missing_runs(args)


def _fake_benchmark(path, models):
    results = {}
    for index, name in enumerate(models):
        latency = 1.0 + index
        results[name] = {
            "config": f"configs/{name}.yaml",
            "params": 1e6 * (index + 1),
            "sizes": {
                "800": {
                    "latency_s": {"pytorch": {"median": latency}},
                    "mult_adds": {"total": 1e9 * (index + 1)},
                    "memory": {"pytorch": {"inference_mb": 100.0 * (index + 1)}},
                    "ratio_to_baseline": {"latency_paired": {"pytorch": 2.0}},
                }
            },
        }
    path.parent.mkdir(parents=True)
    path.write_text(
        json.dumps(
            {
                "command": "python -m benchmarks.bench_inference ...",
                "machine": {"cpu": "test", "threads": 2},
                "results": results,
            }
        )
    )


def test_report_from_runs_and_benchmark_writes_json_docs_and_plots(tmp_path):
    models = ["AttoNet-A", "MobileNetV2-FPN", "R50-FPN"]
    _fake_benchmark(tmp_path / "grid" / "benchmark" / "inference.json", models)
    for name, seed, box in [("AttoNet-A", 0, 60), ("AttoNet-A", 1, 62), ("R50-FPN", 0, 70)]:
        folder = tmp_path / "grid" / "runs" / name / f"seed{seed}"
        folder.mkdir(parents=True)
        (folder / "results.json").write_text(json.dumps(_results(box, box - 5)))
    argv = [
        "--output-dir",
        str(tmp_path / "grid"),
        "--models",
        *models,
        "--report-only",
        "--json",
        str(tmp_path / "grid.json"),
        "--docs",
        str(tmp_path / "MODEL_ZOO.md"),
        "--images",
        str(tmp_path / "images"),
    ]
    report = grid.main(argv)
    saved = json.loads((tmp_path / "grid.json").read_text())
    assert saved["models"]["AttoNet-A"]["accuracy"]["box"]["AP50"]["mean"] == 61
    assert saved["models"]["AttoNet-A"]["latency_ms"] == 1000
    assert saved["models"]["MobileNetV2-FPN"]["runs"] == []
    assert (
        saved["models"]["AttoNet-A"]["backbone_params"]
        < saved["models"]["R50-FPN"]["backbone_params"]
    )
    assert saved["pareto"]["latency_ms"]["box"] == ["AttoNet-A", "R50-FPN"]
    page = (tmp_path / "MODEL_ZOO.md").read_text()
    assert "| **AttoNet-A** |" in page and "61.0 ± 1.4" in page
    # The last column marks the Pareto front of AP50 against latency, per task.
    rows = {line.split(" | ")[0]: line for line in page.splitlines() if line.startswith("| **")}
    assert rows["| **AttoNet-A**"].endswith("| box, mask |")
    assert rows["| **MobileNetV2-FPN**"].endswith("|  |")
    assert "AttoNet-A is 9.0 box AP50 below and 9.0 mask AP50 below R50-FPN at 3.0x its" in page
    for cost in ("latency_ms", "mult_adds"):
        assert os.path.getsize(tmp_path / "images" / f"backbone_grid_{cost}.png") > 1000
    # The docs regenerate from the JSON alone.
    (tmp_path / "MODEL_ZOO.md").unlink()
    grid.main(
        [
            "--from-json",
            str(tmp_path / "grid.json"),
            "--docs",
            str(tmp_path / "MODEL_ZOO.md"),
            "--images",
            str(tmp_path / "images"),
        ]
    )
    assert (tmp_path / "MODEL_ZOO.md").read_text() == page
    assert report["models"].keys() == saved["models"].keys()


def test_runs_and_benchmark_recorded_in_the_json_count_as_done_while_the_recipe_holds(
    tmp_path, monkeypatch
):
    models = ["AttoNet-A", "AttoNet-D"]
    recipe = grid.recipe_fingerprint(grid.GRID["AttoNet-A"])
    assert recipe != grid.recipe_fingerprint(grid.GRID["AttoNet-D"])
    run = {"seed": 0, "recipe": recipe, "iteration": 1100}
    run.update(read_run_metrics(_results(60, 50)))
    stale = dict(run, recipe="0" * 16)
    recorded = {
        "benchmark": {"command": "python -m benchmarks.bench_inference ...", "machine": {}},
        "models": {
            "AttoNet-A": {"latency_ms": 900.0, "mult_adds": 3e10, "runs": [run]},
            "AttoNet-D": {"latency_ms": 800.0, "mult_adds": 2e10, "runs": [stale]},
        },
    }
    (tmp_path / "grid.json").write_text(json.dumps(recorded))
    commands = []
    monkeypatch.setattr(
        subprocess,
        "run",
        lambda command, **kw: commands.append(command) or subprocess.CompletedProcess(command, 0),
    )
    argv = [
        "--output-dir",
        str(tmp_path / "grid"),
        "--models",
        *models,
        "--seeds",
        "0",
        "--json",
        str(tmp_path / "grid.json"),
        "--docs",
        str(tmp_path / "MODEL_ZOO.md"),
        "--images",
        str(tmp_path / "images"),
    ]
    report = grid.main(argv)
    # No benchmark (recorded for both models), and only the run with a stale recipe trains.
    assert [c[c.index("--config-file") + 1] for c in commands] == [grid.GRID["AttoNet-D"]]
    assert report["models"]["AttoNet-A"]["runs"] == [run]
    assert report["models"]["AttoNet-A"]["latency_ms"] == 900.0
    assert report["models"]["AttoNet-D"]["runs"] == []
    assert report["benchmark"]["command"] == recorded["benchmark"]["command"]
    saved = json.loads((tmp_path / "grid.json").read_text())
    assert saved["models"]["AttoNet-A"]["accuracy"]["box"]["AP50"]["mean"] == 60
