"""The design explorer (design_exploration.cli, DesignExplorer) on generated classification data."""

import json
import os
import re
import zlib

import numpy as np
import pytest
import torch

from detectron2.config import get_cfg
from detectron2.layers import ShapeSpec
from detectron2.modeling import build_backbone

from atto_detectron import add_attonet_config, build_attonet_classifier, load_attonet_spec
from atto_detectron.analysis import count_parameters
from atto_detectron.classification import build_classification_data, evaluate_classifier
from atto_detectron.synthetic import make_synthetic_imagefolder

from design_exploration import (
    CLASSIFIER_LAYOUT,
    STATE_FILE,
    CandidateEvaluator,
    CandidateRecord,
    CandidateResult,
    CellGenerator,
    CellGenome,
    ClassificationEvaluator,
    ClassificationSearchConfig,
    DesignExplorer,
    DesignRequirements,
    ExplorerSettings,
    GeneratorSettings,
    RetrainedRecord,
    SearchBudget,
    SearchState,
    family_summary,
    get_prototype,
    load_state,
    ranking_key,
)
from design_exploration import cli as explore_design

from .helpers import CONFIGS

# Small models on a shared 2-core machine train many times faster on one thread.
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    """4 classes of generated shapes, 32 training and 16 validation images each, 32x32."""
    root = str(tmp_path_factory.mktemp("design_shapes"))
    make_synthetic_imagefolder(
        root, num_classes=4, train_per_class=32, val_per_class=16, image_size=32, seed=0
    )
    return root


# The search of the README's demo, scaled down to run in well under a minute.
def _search_argv(data, output, requirements):
    return [
        "--task",
        "classification",
        "--data",
        data,
        "--requirements",
        requirements,
        "--budget",
        "6",
        "--population",
        "3",
        "--seed",
        "0",
        "--epochs",
        "8",
        "--lr",
        "0.1",
        "--finetune-epochs",
        "2",
        "--finetune-lr",
        "0.05",
        "--batch-size",
        "16",
        "--no-progress",
        "--output",
        output,
    ]


@pytest.mark.slow
def test_search_finds_a_family_that_beats_the_prototype(shapes, tmp_path):
    requirements = tmp_path / "requirements.yaml"
    requirements.write_text("min_accuracy: 70\n")
    output = str(tmp_path / "search")
    state = explore_design.main(_search_argv(shapes, output, str(requirements)))
    summary = family_summary(state)

    prototype = summary["prototype"]
    assert prototype["feasible"], "the prototype itself should meet the floor on this data"
    assert len(state.candidates) == 7 and len(state.generators) == 2
    family = summary["family"]
    assert family
    search_scores = [row["search"]["netscore"] for row in family]
    assert search_scores == sorted(search_scores) and search_scores[0] > prototype["netscore"]
    for row in family:
        # Retrained from scratch on the prototype's schedule, it still meets the indicator
        # and beats the prototype's NetScore, being smaller.
        final = row["final"]
        assert row["final_schedule"] == "scratch"
        assert final["feasible"] and final["accuracy"] >= 70
        assert final["netscore"] > prototype["netscore"] and row["beats_prototype"]
        assert row["kept"] and row["name"] in summary["kept"]
        assert final["params"] < prototype["params"] or final["mult_adds"] < prototype["mult_adds"]

    # Report: markdown, JSON and plot.
    markdown = open(os.path.join(output, "report.md")).read()
    assert all(f"| {row['name']} |" in markdown for row in family)
    assert "uniform-32 (prototype)" in markdown and "min_accuracy yes" in markdown
    assert f"Kept: {', '.join(summary['kept'])}." in markdown
    with open(os.path.join(output, "report.json")) as f:
        assert json.load(f)["family"][0]["name"] == family[0]["name"]
    with open(os.path.join(output, "family.png"), "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"

    # The family's spec files work wherever a built-in variant does, and its weights give
    # the reported accuracy.
    best = family[-1]
    spec_path = os.path.join(output, best["spec_file"])
    spec = load_attonet_spec(spec_path)
    assert spec.name == best["name"]
    classifier = build_attonet_classifier(spec_path, num_classes=4)
    classifier.load_state_dict(torch.load(os.path.join(output, best["weights"])))
    data = build_classification_data(shapes, image_size=32, batch_size=16, num_workers=0)
    assert evaluate_classifier(classifier, data.val)["top1"] == best["final"]["accuracy"]

    cfg = get_cfg()
    add_attonet_config(cfg)
    cfg.merge_from_file(os.path.join(CONFIGS, "Base-AttoNet-FPN.yaml"))
    cfg.merge_from_list(["MODEL.ATTONET.SPEC", spec_path, "MODEL.ATTONET.NORM", "BN"])
    backbone = build_backbone(cfg, ShapeSpec(channels=3))
    assert backbone.bottom_up.spec == spec
    assert backbone.bottom_up.output_shape()["res5"].channels == spec.out_channels


def _tiny_explorer(data, output, resume=False):
    # The prototype (66,858 parameters) is over this budget: candidates are made to fit.
    # The latency budget is generous: it only makes every candidate's latency measured.
    requirements = DesignRequirements(max_params=40_000, max_latency_ms=1000)
    config = ClassificationSearchConfig(
        data, image_size=32, batch_size=32, scratch_epochs=1, finetune_epochs=1, lr=0.1
    )
    settings = ExplorerSettings(population=2, num_elite=1, seed=3, retrain=False)
    return DesignExplorer(
        ClassificationEvaluator(config),
        get_prototype("uniform", base_width=16),
        requirements,
        output,
        settings,
        resume=resume,
    )


def _comparable(state: SearchState, latency: bool = True):
    """The state's JSON form without times (which differ between runs)."""
    state = state.to_dict()
    state.pop("search_seconds")
    for record in state["candidates"] + list(state["retrained"].values()):
        record.pop("seconds")
        if latency:
            assert record.pop("latency_ms") > 0
            assert list(record.pop("latencies_ms")) == ["pytorch"]
    return state


@pytest.mark.slow
def test_killed_search_resumes_with_the_same_result(shapes, tmp_path, monkeypatch):
    budget = SearchBudget(candidates=3)
    uninterrupted = _tiny_explorer(shapes, str(tmp_path / "full")).run(budget, progress=False)

    output = str(tmp_path / "killed")
    killed = _tiny_explorer(shapes, output)
    evaluate = killed.evaluator.evaluate

    def evaluate_until_killed(spec, spec_path, schedule, seed, initialize=None, **kwargs):
        if spec.name != "candidate-0003":
            return evaluate(spec, spec_path, schedule, seed, initialize=initialize, **kwargs)

        def initialize_then_kill(model):
            initialize(model)
            forwards = []

            def kill(module, args):
                forwards.append(1)
                if len(forwards) == 2:  # in the middle of candidate 3's training
                    raise KeyboardInterrupt  # as Ctrl-C; SIGKILL leaves the same files

            model.register_forward_pre_hook(kill)

        return evaluate(spec, spec_path, schedule, seed, initialize=initialize_then_kill, **kwargs)

    monkeypatch.setattr(killed.evaluator, "evaluate", evaluate_until_killed)
    with pytest.raises(KeyboardInterrupt):
        killed.run(budget, progress=False)
    saved = load_state(output)
    assert [c.id for c in saved.candidates] == [0, 1, 2]
    assert not [f for _, _, files in os.walk(output) for f in files if ".tmp." in f]

    resumed = _tiny_explorer(shapes, output, resume=True).run(budget, progress=False)
    assert _comparable(resumed) == _comparable(uninterrupted)
    assert _comparable(load_state(output)) == _comparable(uninterrupted)

    # Budgets: the prototype fails the parameter budget; samples over it were drawn again
    # (and, after max_draws, scaled down), so every candidate fits.
    prototype, *candidates = resumed.candidates
    assert prototype.figures.met == {"max_params": False, "max_latency_ms": True}
    assert all(c.figures.params <= 40_000 and c.figures.met["max_params"] for c in candidates)
    assert any(c.draws > 1 for c in candidates)
    # Weights are kept for the prototype, the elite, the last generator's elite (parents
    # of its candidates) and the family; the others are deleted.
    family = {row["candidate"] for row in family_summary(resumed)["family"]}
    best = min(resumed.candidates, key=ranking_key).id
    keep = {0, best} | set(resumed.generators[-1].elite) | family
    assert {c.id for c in resumed.candidates if c.weights} == keep
    assert len(keep) < len(resumed.candidates)
    on_disk = sorted(os.listdir(os.path.join(output, "candidates")))
    assert [f for f in on_disk if f.endswith(".pth")] == [f"{i:04d}.pth" for i in sorted(keep)]
    assert all(os.path.isfile(os.path.join(output, r.weights)) for r in resumed.retrained.values())


def test_resume_refuses_another_search(shapes, tmp_path):
    output = str(tmp_path / "search")
    os.makedirs(output)
    explorer = _tiny_explorer(shapes, output)
    explorer._save_state()  # an empty search with these settings
    with pytest.raises(FileExistsError, match="--resume"):
        _tiny_explorer(shapes, output)
    with open(os.path.join(output, STATE_FILE)) as f:
        state = json.load(f)
    state["settings"]["seed"] = 4
    with open(os.path.join(output, STATE_FILE), "w") as f:
        json.dump(state, f)
    with pytest.raises(ValueError, match="settings"):
        _tiny_explorer(shapes, output, resume=True)


def test_tool_reports_bad_input(shapes, tmp_path):
    missing = str(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="missing"):
        explore_design.main(["--data", missing, "--budget", "1", "--output", str(tmp_path / "o")])
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        explore_design.main(
            ["--data", shapes, "--budget", "1", "--requirements", str(tmp_path / "nope.yaml")]
        )
    with pytest.raises(ValueError, match="budget"):
        explore_design.main(["--data", shapes, "--budget", "soon"])
    with pytest.raises(ValueError, match="--data"):
        explore_design.main(["--budget", "1"])


def test_proposals_meet_the_budgets(shapes, tmp_path):
    explorer = _tiny_explorer(shapes, str(tmp_path / "search"))
    prototype = CellGenome.from_spec(explorer.prototype)
    generator = CellGenerator.from_prototype(prototype, GeneratorSettings())
    evaluator = explorer.evaluator
    # 40K of the prototype's 66,858 parameters: some draws fit, others are drawn again.
    genome, draws, repairs = explorer._propose(generator, 5, "candidate")
    assert evaluator.count_parameters(genome.to_spec("c")) <= 40_000 and repairs == 0
    # A budget no draw meets: the last draw is scaled down until it fits.
    explorer.requirements = DesignRequirements(max_params=5_000)
    genome, draws, repairs = explorer._propose(generator, 5, "candidate")
    assert draws == explorer.settings.max_draws and repairs >= 1
    assert evaluator.count_parameters(genome.to_spec("c")) <= 5_000


# ---------------------------------------------------------------- the state's records


class _QuickEvaluator(CandidateEvaluator):
    """Builds each candidate and inherits weights, but trains nothing: a search in seconds."""

    task = "classification"
    accuracy_name = "top-1"
    layout = CLASSIFIER_LAYOUT
    input_size = (32, 32)

    def settings(self):
        return {"num_classes": 4, "image_size": (32, 32)}  # a tuple: JSON has lists

    def evaluate(
        self, spec, spec_path, schedule, seed, initialize=None, measure_latency=False, neck=None
    ):
        torch.manual_seed(seed)
        model = build_attonet_classifier(spec_path, num_classes=4)
        if initialize is not None:
            initialize(model)
        params = count_parameters(model)
        # 60..80, fixed by the network (every training of a search has the same seed)
        accuracy = 60.0 + (zlib.crc32(repr(spec.stages).encode()) % 1000) / 50.0
        metrics = {"top1": accuracy, "seed": np.uint32(seed % 2**32)}  # numbers as numpy's
        return CandidateResult(accuracy, params, 10 * params, None, metrics, model.state_dict())


def _quick_explorer(output, resume=False):
    return DesignExplorer(
        _QuickEvaluator(),
        get_prototype("uniform", base_width=8),
        DesignRequirements(min_accuracy=62),
        output,
        ExplorerSettings(population=2, num_elite=2, seed=1),
        resume=resume,
    )


def test_state_round_trips_through_its_json_file(tmp_path):
    output = str(tmp_path / "search")
    state = _quick_explorer(output).run(SearchBudget(candidates=4), progress=False)
    assert state.retrained, "the test needs a family"
    with open(os.path.join(output, STATE_FILE)) as f:
        data = json.load(f)
    assert data == state.to_dict()
    assert load_state(output) == state
    assert SearchState.from_dict(json.loads(json.dumps(state.to_dict()))) == state

    # The keys of the state file (version 3).
    assert data["version"] == 3
    assert list(data) == [
        "version",
        "task",
        "accuracy_name",
        "input_size",
        "settings",
        "evaluation",
        "requirements",
        "prototype",
        "peers",
        "generators",
        "candidates",
        "retrained",
        "search_seconds",
    ]
    figures = [
        "accuracy",
        "params",
        "mult_adds",
        "latency_ms",
        "netscore",
        "score",
        "met",
        "violation",
        "feasible",
        "metrics",
        "latencies_ms",
    ]
    assert [list(c) for c in data["candidates"]] == [
        [
            "id",
            "name",
            "generator",
            "parent",
            "draws",
            "repairs",
            "schedule",
            "spec",
            "spec_file",
            "weights",
        ]
        + figures
        + ["seconds", "neck"]
    ] * 5
    assert [set(r) for r in data["retrained"].values()] == [
        {"schedule", "name", "spec_file", "weights", "seconds", *figures}
    ] * len(state.retrained)
    assert list(data["generators"][0]) == ["index", "distribution", "elite", "first_candidate"]
    assert data["evaluation"]["image_size"] == [32, 32]
    assert data["candidates"][0]["metrics"]["seed"] == state.settings.seed_for(0) % 2**32
    prototype = state.candidates[0]
    assert prototype.generator is None and prototype.parent is None and prototype.id == 0
    assert data["candidates"][0]["spec"] == state.prototype.to_dict()


def test_search_resumes_from_its_state_file(tmp_path):
    budget = SearchBudget(candidates=3)  # G_0: candidates 1 and 2; G_1: 3
    uninterrupted = _quick_explorer(str(tmp_path / "full")).run(budget, progress=False)

    output = str(tmp_path / "killed")

    def kill_after_candidate_2(record):
        assert isinstance(record, CandidateRecord)
        if record.id == 2:
            raise KeyboardInterrupt  # the state with candidate 2 is saved

    with pytest.raises(KeyboardInterrupt):
        _quick_explorer(output).run(budget, progress=False, on_candidate=kill_after_candidate_2)
    saved = load_state(output)
    assert [c.id for c in saved.candidates] == [0, 1, 2] and not saved.retrained
    assert all(isinstance(c, CandidateRecord) for c in saved.candidates)
    assert [c.parent for c in saved.candidates] == [None, 0, 0]

    explorer = _quick_explorer(output, resume=True)
    assert explorer.state == saved
    resumed = explorer.run(budget, progress=False)
    assert _comparable(resumed, latency=False) == _comparable(uninterrupted, latency=False)
    assert resumed.retrained, "the test needs a family"
    assert all(isinstance(r, RetrainedRecord) for r in resumed.retrained.values())
    assert family_summary(resumed) == family_summary(load_state(output).to_dict())


def test_invalid_state_files_are_refused_with_their_name(tmp_path):
    output = str(tmp_path / "search")
    _quick_explorer(output).run(SearchBudget(candidates=0), progress=False)
    path = os.path.join(output, STATE_FILE)
    with open(path) as f:
        data = json.load(f)
    del data["candidates"][0]["spec_file"]
    with open(path, "w") as f:
        json.dump(data, f)
    with pytest.raises(ValueError, match=re.escape(path) + " is not a search state.*new --output"):
        load_state(output)
    # A state of version 2 (before the depth and neck choices) is refused.
    data["version"] = 2
    with open(path, "w") as f:
        json.dump(data, f)
    with pytest.raises(ValueError, match="version 2 is not supported.*reads version 3"):
        _quick_explorer(output, resume=True)
