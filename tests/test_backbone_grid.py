"""
projects/BackboneGrid/train_backbone_grid.py and its report: learning-rate check, seeds from the
measured spread, resume, intervals in every table and sentence, where reports go.
"""

import json
import os
import subprocess

import pytest

from atto_detectron.analysis.intervals import format_difference, welch_interval

from backbone_grid import train_grid as grid
from backbone_grid.report import (
    choose_learning_rate,
    findings,
    format_model_zoo,
    pair_differences,
    read_run_metrics,
    resolved_pareto,
    summarize_seeds,
)

from .helpers import REPO_ROOT

TARGET_MODELS = ["AttoNet-A", "MobileNetV2-FPN", "ShuffleNetV2-FPN", "R50-FPN"]


def _results(box_ap50, mask_ap50, dataset="voc_synth_grid_val", provenance=None):
    return {
        "iteration": 1100,
        "summary": {
            dataset: {
                "APd": {"AP": box_ap50 / 2, "AP50": box_ap50, "AP75": box_ap50 / 3},
                "APm": {"AP": mask_ap50 / 2, "AP50": mask_ap50, "AP75": mask_ap50 / 3},
            }
        },
        "provenance": provenance or {},
    }


def _fingerprints(config, opts):
    return {"config_fingerprint": f"{config}:{' '.join(opts)}", "model_fingerprint": config}


class FakeTraining:
    """subprocess.run for tools/train_net.py: writes the results.json a run would."""

    def __init__(self, ap50):
        self.ap50 = ap50  # (model, kind, value) -> (box AP50, mask AP50)
        self.runs = []  # (model, kind, value) in training order
        self.names = {config: name for name, config in grid.GRID.items()}

    def __call__(self, command, **kwargs):
        option = {command[i]: command[i + 1] for i in range(len(command) - 1)}
        model = self.names[option["--config-file"]]
        folder = option["OUTPUT_DIR"]
        lr_check = f"{os.sep}lr_check{os.sep}" in folder
        kind, value = (
            ("lr", float(option["SOLVER.BASE_LR"]))
            if lr_check
            else (
                "seed",
                int(option["SEED"]),
            )
        )
        self.runs.append((model, kind, value))
        opts = grid.lr_opts(value) if lr_check else grid.seed_opts(float(option["SOLVER.BASE_LR"]))
        provenance = dict(
            _fingerprints(option["--config-file"], opts),
            datasets={"voc_synth_grid_train": dict(grid.GRID_DATA)},
            machine={"cpu": "test"},
        )
        box, mask = self.ap50(model, kind, value)
        dataset = grid.HOLDOUT if lr_check else "voc_synth_grid_val"
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, "results.json"), "w") as f:
            json.dump(_results(box, mask, dataset, provenance), f)
        return subprocess.CompletedProcess(command, 0)


@pytest.fixture
def fake_grid(tmp_path, monkeypatch):
    """The grid tool with training, benchmarks and model building replaced by fakes."""
    monkeypatch.setattr(grid, "_current_fingerprints", _fingerprints)
    monkeypatch.setattr(grid, "_RECIPES", {})
    monkeypatch.setattr(grid, "backbone_parameters", lambda config: len(config))
    monkeypatch.setattr(grid, "ensure_data", lambda: None)
    monkeypatch.setattr(grid, "run_benchmarks", lambda args, recorded, models: None)
    monkeypatch.setattr(grid, "SPREAD_STUDY", str(tmp_path / "no_study.json"))

    def run(ap50, *argv):
        training = FakeTraining(ap50)
        monkeypatch.setattr(subprocess, "run", training)
        report = grid.main(["--output-dir", str(tmp_path / "grid"), *argv])
        return training, report

    return run


def _flat_ap50(model, kind, value):
    # The best rate is 0.02 for every model; seeds scatter by +-1.
    if kind == "lr":
        return {0.01: (55.0, 52.0), 0.02: (60.0, 57.0), 0.04: (58.0, 55.0)}[value]
    return 60.0 + (value % 3) - 1, 57.0 + (value % 2)


def test_lr_checks_of_the_target_models_come_first_then_their_seeds_round_by_round(fake_grid):
    training, report = fake_grid(_flat_ap50, "--models", *TARGET_MODELS, "--max-runs", "16")
    lr_runs = [(m, v) for m, kind, v in training.runs if kind == "lr"]
    assert lr_runs == [(m, lr) for m in TARGET_MODELS for lr in grid.LR_CANDIDATES]
    seeds = [(m, v) for m, kind, v in training.runs if kind == "seed"]
    assert seeds == [(m, 0) for m in TARGET_MODELS]
    # The seeds train at the chosen rate and the report says which.
    assert all(report["models"][m]["base_lr"] == 0.02 for m in TARGET_MODELS)
    assert [c["lr"] for c in report["models"]["AttoNet-A"]["lr_check"]] == [0.01, 0.02, 0.04]


def test_the_rate_range_grows_while_the_best_rate_is_at_its_edge(fake_grid):
    def rising(model, kind, value):
        return (50.0 + 10 * value, 50.0) if kind == "lr" else (60.0, 57.0)

    training, report = fake_grid(rising, "--models", "AttoNet-A", "--max-runs", "6")
    rates = [v for _, kind, v in training.runs if kind == "lr"]
    assert rates == [0.01, 0.02, 0.04, 0.08, 0.16]  # at most five values
    assert report["models"]["AttoNet-A"]["base_lr"] == 0.16
    assert choose_learning_rate([{"lr": 0.02, "box": {"AP50": 1}, "mask": {"AP50": 1}}])["lr"]


def test_seeds_per_model_follow_the_measured_spread(fake_grid, tmp_path, monkeypatch):
    def variant(box_std, mask_std, **keys):
        stats = {"values": [60.0, 61.0], "mean": 60.5, "low": 59.0, "high": 62.0}
        return dict(
            keys,
            label=str(keys),
            seeds=[0, 1],
            box=dict(stats, std=box_std),
            mask=dict(stats, std=mask_std),
        )

    study = {
        "command": "python projects/BackboneGrid/measure_seed_spread.py",
        "variants": [
            variant(1.5, 1.2, **grid.SPREAD_STUDY_VARIANT),
            variant(4.0, 3.0, recipe="demo", weights="last", dataset="voc_synth_val"),
        ],
    }
    path = tmp_path / "study.json"
    path.write_text(json.dumps(study))
    monkeypatch.setattr(grid, "SPREAD_STUDY", str(path))
    _, report = fake_grid(_flat_ap50, "--models", "AttoNet-A", "R50-FPN", "--report-only")
    # At a spread of 1.5, five seeds each give Welch half-widths under 2.5 AP50; four do not.
    assert report["spread"]["source"] == str(path)
    assert report["spread"]["seeds_planned"] == {"AttoNet-A": 5, "R50-FPN": 5}


def test_seeds_grow_with_the_spread_until_the_target_pairs_are_narrow_enough(fake_grid):
    def noisy_peer(model, kind, value):
        if kind == "lr":
            return _flat_ap50(model, kind, value)
        if model == "MobileNetV2-FPN":
            return (60.0 + 4 * (value % 2), 57.0 + (value % 2))  # 60, 64, 60, 64, ...
        return (60.0 + 0.2 * (value % 2), 57.0 + 0.1 * value)

    training, report = fake_grid(
        noisy_peer, "--models", "AttoNet-A", "MobileNetV2-FPN", "--min-seeds", "3"
    )
    seeds = {
        m: [v for n, kind, v in training.runs if n == m and kind == "seed"]
        for m in report["models"]
    }
    # Three seeds each would leave the box interval about +-5 wide: the measured spread
    # asks for more, and the noisy model gets at least as many as the quiet one.
    assert len(seeds["AttoNet-A"]) > 3
    assert len(seeds["MobileNetV2-FPN"]) >= len(seeds["AttoNet-A"])
    pair = report["pairs"]["MobileNetV2-FPN"]["box"]
    assert pair["half_width"] <= 2.5
    assert report["targets"]["pairs"]["MobileNetV2-FPN"]["box"]["met"]
    assert report["spread"]["source"] == "grid"


def test_report_only_writes_under_the_output_dir_and_leaves_committed_docs_alone(
    fake_grid, tmp_path
):
    committed = {
        path: open(os.path.join(REPO_ROOT, path), "rb").read()
        for path in ("docs/results/backbone_grid.json", "docs/MODEL_ZOO.md", "README.md")
    }
    fake_grid(_flat_ap50, "--models", "AttoNet-A", "--report-only")
    for path, content in committed.items():
        assert open(os.path.join(REPO_ROOT, path), "rb").read() == content, path
    out = tmp_path / "grid"
    assert (out / "backbone_grid.json").is_file() and (out / "MODEL_ZOO.md").is_file()
    assert (out / "images" / "backbone_grid_latency_ms.png").is_file()


def test_recorded_runs_count_as_done_while_their_recipe_holds(fake_grid, tmp_path):
    training, report = fake_grid(_flat_ap50, "--models", "AttoNet-A", "--max-runs", "4")
    recorded = tmp_path / "recorded.json"
    recorded.write_text(json.dumps(report))
    # Another machine: nothing under the output folder, only the committed JSON.
    (tmp_path / "moved").mkdir()
    os.rename(tmp_path / "grid", tmp_path / "moved" / "grid")
    training, report = fake_grid(
        _flat_ap50, "--models", "AttoNet-A", "--recorded", str(recorded), "--max-runs", "1"
    )
    assert training.runs == [("AttoNet-A", "seed", 1)]
    assert [r["seed"] for r in report["models"]["AttoNet-A"]["runs"]] == [0, 1]
    # A recorded run of another recipe does not count: it trains again.
    stale = json.loads(recorded.read_text())
    stale["models"]["AttoNet-A"]["runs"][0]["recipe"] = "0" * 16
    recorded.write_text(json.dumps(stale))
    os.rename(tmp_path / "grid", tmp_path / "moved" / "grid2")
    training, _ = fake_grid(
        _flat_ap50, "--models", "AttoNet-A", "--recorded", str(recorded), "--max-runs", "1"
    )
    assert training.runs == [("AttoNet-A", "seed", 0)]


def test_a_finished_run_of_another_recipe_is_never_overwritten(fake_grid, tmp_path):
    fake_grid(_flat_ap50, "--models", "AttoNet-A", "--max-runs", "4")
    results = tmp_path / "grid" / "runs" / "AttoNet-A" / "seed0" / "results.json"
    record = json.loads(results.read_text())
    record["provenance"]["model_fingerprint"] = "changed"
    results.write_text(json.dumps(record))
    with pytest.raises(SystemExit, match="seed0 holds a finished run of another recipe"):
        fake_grid(_flat_ap50, "--models", "AttoNet-A", "--max-runs", "1")
    assert json.loads(results.read_text()) == record


def _model(box_values, mask_values, latency):
    runs = [
        dict(seed=i, **read_run_metrics(_results(b, m)))
        for i, (b, m) in enumerate(zip(box_values, mask_values))
    ]
    return {
        "runs": runs,
        "accuracy": summarize_seeds(runs),
        "cost": {"ap": {"latency_ms": latency}},
    }


def _report(models):
    report = {"models": models, "pairs": pair_differences(models, "AttoNet-A")}
    report["pareto"] = {
        "latency_ms": {t: resolved_pareto(models, "latency_ms", t) for t in ("box", "mask")}
    }
    return report


def test_findings_give_every_difference_with_its_interval_and_verdict():
    models = {
        "AttoNet-A": _model([60, 61, 62, 61], [57, 58, 57, 58], 100),
        "MobileNetV2-FPN": _model([59, 63, 60, 62], [50, 51, 50, 51], 90),
        "R50-FPN": _model([61, 60, 64], [58, 57, 59], 400),
    }
    lines = findings(_report(models))
    box = welch_interval([60, 61, 62, 61], [59, 63, 60, 62])
    mask = welch_interval([57, 58, 57, 58], [50, 51, 50, 51])
    assert (
        f"AttoNet-A − MobileNetV2-FPN: box AP50 {format_difference(box)}; mask AP50 "
        f"{format_difference(mask)}; MobileNetV2-FPN takes 0.90x AttoNet-A's latency."
    ) in lines
    assert not box["resolved"] and mask["resolved"]
    assert (
        "Resolved at 95%: AttoNet-A against MobileNetV2-FPN in mask AP50 (AttoNet-A higher)."
        in lines
    )
    one_seed = dict(models, R50=_model([70], [70], 400))
    assert "AttoNet-A − R50: not measured yet (fewer than two seeds)." in findings(
        _report(one_seed)
    )


def test_the_pareto_front_drops_a_model_only_for_a_resolved_difference():
    models = {
        "cheap": _model([60, 61, 59], [55, 56, 54], 100),
        "noisy_better": _model([58, 66, 62], [56, 57, 55], 200),  # not resolved above cheap
        "clearly_better": _model([70, 71, 70], [60, 61, 60], 300),
        "dominated": _model([50, 51, 50], [45, 46, 45], 400),
    }
    box = resolved_pareto(models, "latency_ms", "box")
    assert box["front"] == ["cheap", "noisy_better", "clearly_better"]
    assert set(box["dominated_by"]["dominated"]) == {"cheap", "noisy_better", "clearly_better"}
    page = format_model_zoo(_report(models))
    assert "below cheap, noisy_better, clearly_better" in page


def test_update_docs_replaces_only_the_readme_results_block(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{grid.README_BEGIN}\nold table\n{grid.README_END}\noutro\n")
    models = {
        "AttoNet-A": _model([60, 61, 62], [57, 58, 57], 100),
        "R50-FPN": _model([61, 60, 64], [58, 57, 59], 400),
    }
    grid.update_readme(str(readme), _report(models))
    text = readme.read_text()
    assert text.startswith(f"intro\n{grid.README_BEGIN}\n") and text.endswith(
        f"{grid.README_END}\noutro\n"
    )
    assert "old table" not in text
    box = welch_interval([60, 61, 62], [61, 60, 64])
    assert format_difference(box) in text
    assert "61.0 [" in text and ", 3 seeds" in text
    readme.write_text("no markers\n")
    with pytest.raises(SystemExit, match="no results markers"):
        grid.update_readme(str(readme), _report(models))
