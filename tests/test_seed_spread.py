"""The seed-spread study (backbone_grid.spread_study): runs per recipe and seed, spread, table."""

import json
import math
import os
import statistics
import subprocess

import pytest

from backbone_grid import spread_study as study
from backbone_grid.seed_spread import format_seed_spread


def _fake_run(command, **kwargs):
    option = {command[i]: command[i + 1] for i in range(len(command) - 1)}
    seed = int(option["SEED"])
    average = option.get("MODEL_EMA.ENABLED") == "True" and "--eval-only" not in command
    folder = option["OUTPUT_DIR"]
    if "--eval-only" in command:
        folder = os.path.join(folder, "eval_model_final")
    summary = {}
    for index, dataset in enumerate(study.VAL_SETS):
        # The last weights on 200 images scatter most; the average on 2,000 least.
        scatter = (4.0 if not average else 2.0) / (1 + 2 * index)
        box = 60 + scatter * (seed % 2 * 2 - 1)
        summary[dataset] = {
            "APd": {"AP": 30.0, "AP50": box, "AP75": 30.0},
            "APm": {"AP": 25.0, "AP50": box - 3, "AP75": 25.0},
        }
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "results.json"), "w") as f:
        json.dump({"summary": summary, "provenance": {"commit": "abc"}}, f)
    return subprocess.CompletedProcess(command, 0)


def test_each_run_gives_its_last_weights_and_its_average_on_both_validation_sets(
    tmp_path, monkeypatch
):
    monkeypatch.setattr(subprocess, "run", _fake_run)
    monkeypatch.setattr(study, "ensure_data", lambda: None)
    monkeypatch.setattr(study, "COMMITTED", str(tmp_path / "committed.json"))
    report = study.main(
        ["--output-dir", str(tmp_path), "--recipes", "demo", "--seeds", "0", "1", "2", "3"]
    )
    saved = json.loads((tmp_path / "seed_spread.json").read_text())
    assert saved["variants"] == report["variants"]
    spreads = {(v["weights"], v["dataset"]): v["box"]["std"] for v in report["variants"]}
    assert len(spreads) == 4 and all(len(v["seeds"]) == 4 for v in report["variants"])
    values = [56.0, 64.0, 56.0, 64.0]  # last weights, 200 images: 60 -+ 4
    assert spreads[("last", "voc_synth_val")] == pytest.approx(statistics.stdev(values))
    assert spreads[("ema", "voc_synth_grid_val")] < spreads[("last", "voc_synth_val")]
    assert report["runs"]["demo"][0]["provenance"] == {"commit": "abc"}
    assert set(report["runs"]) == {"demo"}  # recipes without runs are not reported
    table = format_seed_spread(report)
    assert "| demo recipe, last weights, 200 val images | 4 | 4.62 [2.62, 17.22] |" in table
    # Finished runs are not run again.
    calls = []
    monkeypatch.setattr(subprocess, "run", lambda c, **k: calls.append(c))
    study.main(["--output-dir", str(tmp_path), "--recipes", "demo", "--seeds", "0", "1", "2", "3"])
    assert calls == []


def test_runs_recorded_in_the_committed_report_count_while_their_recipe_holds(
    tmp_path, monkeypatch
):
    monkeypatch.setattr(subprocess, "run", _fake_run)
    monkeypatch.setattr(study, "ensure_data", lambda: None)
    committed = tmp_path / "committed.json"
    monkeypatch.setattr(study, "COMMITTED", str(committed))
    argv = ["--output-dir", str(tmp_path / "a"), "--recipes", "demo", "--seeds", "0", "1"]
    study.main(argv + ["--update-docs"])
    assert len(json.loads(committed.read_text())["runs"]["demo"]) == 2
    # Another machine: only the committed report. Seeds 0 and 1 are done, 2 trains.
    calls = []

    def record(command, **kwargs):
        calls.append(command)
        return _fake_run(command, **kwargs)

    monkeypatch.setattr(subprocess, "run", record)
    argv = ["--output-dir", str(tmp_path / "b"), "--recipes", "demo", "--seeds", "0", "1", "2"]
    report = study.main(argv + ["--update-docs"])
    assert {c[c.index("SEED") + 1] for c in calls} == {"2"}
    assert [run["seed"] for run in report["runs"]["demo"]] == [0, 1, 2]
    # A changed recipe does not count.
    stale = json.loads(committed.read_text())
    stale["recipes"]["demo"]["opts"] = ["SOLVER.BASE_LR", "0.01"]
    committed.write_text(json.dumps(stale))
    calls.clear()
    study.main(["--output-dir", str(tmp_path / "c"), "--recipes", "demo", "--seeds", "0"])
    assert {c[c.index("SEED") + 1] for c in calls} == {"0"}


def test_the_protocol_choice_states_its_spread_with_interval_and_the_seeds_it_needs():
    from atto_detectron.analysis.intervals import seeds_needed

    from backbone_grid.seed_spread import pooled_spread, protocol_choice

    def variant(recipe, weights, values):
        entry = {"recipe": recipe, "weights": weights, "dataset": "d", "label": recipe}
        for task, shift in (("box", 0.0), ("mask", -3.0)):
            entry[task] = {"values": [v + shift for v in values], "std": statistics.stdev(values)}
        return entry

    report = {
        "variants": [
            variant("wide", "ema", [55.0, 61.0, 58.0, 64.0]),
            variant("narrow", "ema", [59.0, 60.0, 59.5, 60.5]),
        ]
    }
    lines = protocol_choice(report, {"recipe": "wide", "weights": "ema"}, 2.5, 3)
    spread = statistics.stdev([55.0, 61.0, 58.0, 64.0])
    assert lines[0].startswith(
        'The grid\'s protocol is "wide": its larger seed standard deviation (box or mask '
        f"AP50) is {spread:.2f} [95%: "
    )
    assert 'The lowest estimate is "narrow"' in lines[1]
    assert f"{seeds_needed(spread, 2.5, 3)} seeds per model" in lines[2]
    assert protocol_choice(report, {"recipe": "missing"}, 2.5, 3) == []

    # Pooled over the recipes (each about its own mean) against the target std.
    narrow = statistics.stdev([59.0, 60.0, 59.5, 60.5])
    pooled = math.sqrt((3 * spread**2 + 3 * narrow**2) / 6)
    assert pooled_spread(report, "ema", "d")["box"]["std"] == pytest.approx(pooled)
    assert pooled_spread(report, "ema", "d")["dof"] == 6
    assert pooled_spread(report, "last", "d") == {}  # no such variants
    lines = protocol_choice(report, {"recipe": "wide", "weights": "ema"}, 2.5, 3, 1.5)
    assert (
        f"Pooled over the 2 recipes' runs with these weights and validation set (6 degrees "
        f"of freedom; each recipe about its own mean), the seed standard deviation is "
        f"{pooled:.2f} [95%: " in lines[2]
    )
    assert lines[2].count("(above the target of 1.5, resolved)") == 2  # box and mask
    lines = protocol_choice(report, {"recipe": "wide", "weights": "ema"}, 2.5, 3, 2.5)
    assert lines[2].count("not resolved against the target of 2.5") == 2
    assert f"{seeds_needed(spread, 2.5, 3)} seeds per model" in lines[3]


def test_a_recipe_without_an_average_trains_and_evaluates_once_per_seed(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(subprocess, "run", lambda c, **k: calls.append(c) or _fake_run(c, **k))
    monkeypatch.setattr(study, "ensure_data", lambda: None)
    monkeypatch.setattr(study, "COMMITTED", str(tmp_path / "committed.json"))
    report = study.main(["--output-dir", str(tmp_path), "--recipes", "long", "--seeds", "0", "1"])
    assert len(calls) == 2 and not any("--eval-only" in c for c in calls)
    assert all(c[c.index("SOLVER.MAX_ITER") + 1] == "2200" for c in calls)
    assert [(v["weights"], v["dataset"]) for v in report["variants"]] == [
        ("last", "voc_synth_grid_val")
    ]
