"""design_exploration: search space, requirements, generator, objective, inheritance."""

import dataclasses
import json

import numpy as np
import pytest
import torch
from torch import nn

from atto_detectron import ATTONET_VARIANTS, AttoNetSpec, build_attonet_classifier
from atto_detectron.analysis import count_parameters, netscore

from design_exploration import (
    MULTIPLIER_CHOICES,
    CandidateRecord,
    CellGenerator,
    CellGenome,
    DesignRequirements,
    ExplorerSettings,
    Figures,
    GeneratorRecord,
    GeneratorSettings,
    RetrainedRecord,
    SearchBudget,
    SearchState,
    candidate_netscore,
    channel_plans,
    family_summary,
    format_family_table,
    get_prototype,
    inherit_weights,
    load_requirements,
    measure_latency_ms,
    parse_budget,
    ranking_key,
    uniform_prototype,
)

from .helpers import assert_close_to_scale

# Small models on a shared 2-core machine train many times faster on one thread.
pytestmark = pytest.mark.usefixtures("one_thread")


def _randomize_norms(model: nn.Module, seed: int = 0) -> nn.Module:
    """Norm scales, shifts and statistics as after training, so channels differ."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.weight.copy_(torch.rand(n, generator=generator) * 1.3 + 0.2)
                m.bias.copy_(torch.rand(n, generator=generator) * 0.6 - 0.3)
                m.running_mean.copy_(torch.rand(n, generator=generator) - 0.5)
                m.running_var.copy_(torch.rand(n, generator=generator) * 1.5 + 0.5)
    return model


# ---------------------------------------------------------------------- search space


def test_uniform_prototype_is_the_paper_prototype_with_resnet_widths():
    spec = uniform_prototype()
    assert [len(s) for s in spec.stages] == [3, 4, 6, 3]
    assert [s[0].out_channels for s in spec.stages] == [32, 64, 128, 256]
    assert {(m.compression, m.mixing, m.multiplier) for m in spec.stages[2]} == {(32, 32, 2)}
    assert [m.shortcut for m in spec.stages[1]] == ["projection"] + ["identity"] * 3
    # The size stated in its docstring: comparable to AttoNet-D's.
    assert count_parameters(build_attonet_classifier(spec, num_classes=10)) == 246_738
    assert count_parameters(build_attonet_classifier("D", num_classes=10)) == 314_416


@pytest.mark.parametrize("name", ["uniform", "A", "B", "C", "D"])
def test_genome_round_trips_every_prototype(name):
    spec = get_prototype(name)
    genome = CellGenome.from_spec(spec)
    assert genome.to_spec(spec.name) == spec
    assert genome.with_integer_genes(genome.integer_genes()) == genome
    assert len(genome.integer_genes()) == 1 + 4 + 2 * 16


def test_spec_outside_the_search_space_is_refused():
    data = ATTONET_VARIANTS["D"].to_dict()
    data["stages"]["res3"][2].update(out_channels=200, shortcut="projection")
    data["stages"]["res3"][3].update(out_channels=200)
    spec = AttoNetSpec.from_dict(data)  # a valid AttoNet ...
    with pytest.raises(ValueError, match="one width per stage"):
        get_prototype(spec)  # ... but not one the explorer can vary
    with pytest.raises(ValueError, match="Unknown AttoNet variant"):
        get_prototype("E")


def test_genome_scaling_keeps_widths_positive():
    genome = CellGenome.from_spec(ATTONET_VARIANTS["D"]).scaled(0.1)
    assert genome.integer_genes().min() == 1
    assert genome.widths[2] == round(467 * 0.1)
    genome.to_spec("tiny")  # still a valid AttoNet


# ---------------------------------------------------------------------- generator


def test_generator_samples_are_seeded_valid_and_varied():
    prototype = CellGenome.from_spec(uniform_prototype())
    generator = CellGenerator.from_prototype(prototype, GeneratorSettings())
    samples = [generator.sample(np.random.default_rng(seed)) for seed in range(20)]
    assert generator.sample(np.random.default_rng(3)) == samples[3]
    assert len({g.integer_genes().tobytes() for g in samples}) == 20
    for genome in samples:
        genes = genome.integer_genes()
        assert genes.min() >= 1 and (genes <= generator.upper).all()
        assert all(genome.projection[i] for i in genome.first_modules)
        genome.to_spec("sample")  # a valid AttoNet
    # The common scale makes whole networks wider or narrower: average log2 widths spread
    # much more than they would with independent widths alone (sigma 0.25 / sqrt(37)).
    scales = [np.log2(g.integer_genes()).mean() for g in samples]
    assert np.std(scales) > 0.25
    # Multipliers and shortcuts are explored too, mostly as the prototype has them.
    multipliers = np.array([g.multiplier for g in samples])
    assert set(multipliers.ravel()) <= set(MULTIPLIER_CHOICES)
    assert 0.5 < (multipliers == 2).mean() < 0.9


def test_generator_update_moves_towards_the_elite():
    settings = GeneratorSettings(mean_rate=0.5, spread_rate=0.5, prob_floor=0.05)
    prototype = CellGenome.from_spec(uniform_prototype(64))
    generator = CellGenerator.from_prototype(prototype, settings)
    half = dataclasses.replace(prototype.scaled(0.5), multiplier=(4,) * 16, projection=(True,) * 16)
    updated = generator.updated([half, half], settings)
    # Halfway (rate 0.5) from the prototype's log2 widths to the elite's (one lower).
    np.testing.assert_allclose(updated.mean, generator.mean - 0.5)
    # Identical elite members: the spreads fall to halfway, never below the floor.
    np.testing.assert_allclose(updated.sigma, np.maximum(0.1, generator.sigma / 2))
    assert updated.scale_sigma == pytest.approx(0.25)
    four = MULTIPLIER_CHOICES.index(4)
    assert (updated.multiplier_probs[:, four] > generator.multiplier_probs[:, four]).all()
    assert (updated.multiplier_probs >= 0.05 - 1e-12).all()
    np.testing.assert_allclose(updated.multiplier_probs.sum(1), 1.0)
    # Shortcuts: halfway from G_0's 5% to the elite's 100% projections; stage starts stay 1.
    first = list(prototype.first_modules)
    assert (updated.projection_probs[first] == 1).all()
    np.testing.assert_allclose(np.delete(updated.projection_probs, first), 0.5 * 0.05 + 0.5)
    # The state file form is exact.
    restored = CellGenerator.from_dict(json.loads(json.dumps(updated.to_dict())), prototype)
    assert restored.to_dict() == updated.to_dict()
    assert restored.sample(np.random.default_rng(5)) == updated.sample(np.random.default_rng(5))


# ---------------------------------------------------------------------- requirements


def test_requirements_file_with_suffixes(tmp_path):
    path = tmp_path / "req.yaml"
    path.write_text(
        "requirements:\n  min_accuracy: 60\n  max_params: 250K\n  max_mult_adds: 1.2M\n"
    )
    req = load_requirements(str(path))
    assert req == DesignRequirements(min_accuracy=60, max_params=250e3, max_mult_adds=1.2e6)
    json_path = tmp_path / "req.json"
    json_path.write_text(json.dumps(req.to_dict()))
    assert load_requirements(str(json_path)) == req

    ok = {"accuracy": 61.0, "params": 200e3, "mult_adds": 1.0e6}
    assert req.check(ok) == {"min_accuracy": True, "max_params": True, "max_mult_adds": True}
    assert req.indicator(ok) and req.violation(ok) == 0
    bad = {"accuracy": 30.0, "params": 500e3, "mult_adds": 1.0e6}
    assert req.check(bad)["min_accuracy"] is False and req.check(bad)["max_params"] is False
    assert not req.indicator(bad)
    assert req.violation(bad) == pytest.approx(0.5 + 1.0)
    assert req.updated(min_accuracy=70, max_params=None).max_params == 250e3


def test_requirements_errors_name_the_file_and_key(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.yaml"):
        load_requirements(str(tmp_path / "missing.yaml"))
    bad = tmp_path / "bad.yaml"
    bad.write_text("min_accuracy: 60\nmax_flops: 3M\n")
    with pytest.raises(ValueError, match=r"bad\.yaml.*max_flops"):
        load_requirements(str(bad))
    worse = tmp_path / "worse.yaml"
    worse.write_text("max_params: lots\n")
    with pytest.raises(ValueError, match=r"worse\.yaml.*max_params.*lots"):
        load_requirements(str(worse))
    with pytest.raises(ValueError, match="latency"):
        DesignRequirements(max_latency_ms=-1)


def test_objective_ranks_feasible_candidates_by_netscore():
    assert candidate_netscore(66.3, 0.32e6, 57.5e6) == pytest.approx(90.21, abs=0.01)
    assert candidate_netscore(0.0, 1e6, 1e6) is None
    records = [
        {"id": 0, "violation": 0.0, "netscore": 100.0},
        {"id": 1, "violation": 0.0, "netscore": 105.0},
        {"id": 2, "violation": 0.1, "netscore": 120.0},
        {"id": 3, "violation": 0.05, "netscore": 90.0},
        {"id": 4, "violation": 0.0, "netscore": None},
    ]
    assert [r["id"] for r in sorted(records, key=ranking_key)] == [1, 0, 4, 3, 2]
    assert netscore(66.3, 0.32e6, 57.5e6) == candidate_netscore(66.3, 0.32e6, 57.5e6)


def test_latency_is_measured_in_eval_mode_and_restores_the_mode():
    model = build_attonet_classifier(uniform_prototype(16), num_classes=3).train()
    modes = []
    model.register_forward_pre_hook(lambda module, args: modes.append(module.training))
    latency = measure_latency_ms(model, torch.zeros(1, 3, 32, 32), runs=3, warmup=1)
    assert latency > 0 and modes == [False] * 4 and model.training
    req = DesignRequirements(max_latency_ms=2.0)
    record = {"accuracy": 50.0, "params": 1, "mult_adds": 1, "latency_ms": 3.0}
    assert req.check(record) == {"max_latency_ms": False}
    assert req.violation(record) == pytest.approx(0.5)


def test_budget_parsing():
    assert parse_budget("12") == SearchBudget(candidates=12)
    assert parse_budget("30m") == SearchBudget(minutes=30)
    assert parse_budget("1.5h") == SearchBudget(minutes=90)
    assert parse_budget("12").exhausted(12, 0) and not parse_budget("12").exhausted(11, 1e9)
    assert parse_budget("1m").exhausted(0, 60) and not parse_budget("1m").exhausted(99, 59)
    for text in ("twelve", "1.5", "-3", "5s"):
        with pytest.raises(ValueError, match="budget"):
            parse_budget(text)


# ---------------------------------------------------------------------- inheritance


def _wider(genome: CellGenome, extra: int = 3, multiplier: int = 4) -> CellGenome:
    wider = genome.with_integer_genes(genome.integer_genes() + extra)
    return dataclasses.replace(wider, multiplier=(multiplier,) * genome.num_modules)


def test_widening_child_computes_its_parents_function():
    parent_spec = uniform_prototype(16)
    torch.manual_seed(0)
    parent = _randomize_norms(build_attonet_classifier(parent_spec, num_classes=5)).eval()
    child_spec = _wider(CellGenome.from_spec(parent_spec)).to_spec("wider")
    child = build_attonet_classifier(child_spec, num_classes=5)
    report = inherit_weights(child, parent.state_dict(), parent_spec, child_spec)
    assert not report["fresh"]
    x = torch.randn(3, 3, 32, 32)
    assert_close_to_scale(child.eval()(x), parent(x))
    # The new channels are there and trainable: weights reading them start at zero.
    fc = child.fc.weight
    assert fc.shape[1] == parent.fc.weight.shape[1] + 3 and (fc[:, -3:] == 0).all()
    assert child.backbone.stages["res3"][1].depthwise.weight.shape[0] == 4 * (8 + 3)


def test_shrinking_child_keeps_the_most_important_channels():
    parent_spec = uniform_prototype(16)
    torch.manual_seed(0)
    parent = _randomize_norms(build_attonet_classifier(parent_spec, num_classes=5))
    child_genome = CellGenome.from_spec(parent_spec).scaled(0.5)
    child_spec = child_genome.to_spec("narrower")
    child = build_attonet_classifier(child_spec, num_classes=5)
    inherit_weights(child, parent.state_dict(), parent_spec, child_spec)
    state = parent.state_dict()

    # res3.1's compression: the channels with the largest |gamma| of its BN, in order.
    gamma = state["backbone.stages.res3.1.compression.norm.weight"].abs()
    keep = sorted(torch.argsort(gamma, descending=True)[: child_genome.compression[4]].tolist())
    module = child.backbone.stages["res3"][1]
    assert torch.equal(
        module.compression.norm.weight.detach(),
        state["backbone.stages.res3.1.compression.norm.weight"][keep],
    )
    # The res3 stream: ranked by the norms that read it (res3.1-3 and res4.0 pre-activation).
    readers = ["res3.1", "res3.2", "res3.3", "res4.0"]
    scale = sum(state[f"backbone.stages.{r}.preact_norm.weight"].abs() for r in readers)
    stream = sorted(torch.argsort(scale, descending=True)[: child_genome.widths[1]].tolist())
    plans = channel_plans(state, parent_spec, child_spec)
    assert plans["res3"].tolist() == stream and plans["res3.1.compression"].tolist() == keep
    expected = state["backbone.stages.res3.1.compression.weight"][keep][:, stream]
    assert torch.equal(module.compression.weight.detach(), expected)
    # Depthwise filters follow their group: filter j of group k is output k * M + j.
    depthwise = state["backbone.stages.res3.1.depthwise.weight"]
    assert torch.equal(
        module.depthwise.weight.detach()[2:4], depthwise[2 * keep[1] : 2 * keep[1] + 2]
    )


def test_inheritance_adds_a_projection_and_changes_multipliers():
    parent_spec = uniform_prototype(16)
    parent = _randomize_norms(build_attonet_classifier(parent_spec, num_classes=5))
    genome = CellGenome.from_spec(parent_spec)
    projection = list(genome.projection)
    projection[5] = True  # res3.2 gets a 1x1 projection shortcut
    multiplier = list(genome.multiplier)
    multiplier[5] = 1  # and keeps one of each group's two depthwise filters
    child_spec = dataclasses.replace(
        genome, projection=tuple(projection), multiplier=tuple(multiplier)
    ).to_spec("child")
    child = build_attonet_classifier(child_spec, num_classes=5)
    report = inherit_weights(child, parent.state_dict(), parent_spec, child_spec)
    assert report["fresh"] == ["backbone.stages.res3.2.shortcut.weight"]
    depthwise = parent.state_dict()["backbone.stages.res3.2.depthwise.weight"]
    l1 = depthwise.flatten(1).abs().sum(1).view(-1, 2)
    best = depthwise.view(-1, 2, 3, 3)[torch.arange(l1.shape[0]), l1.argmax(1)]
    assert torch.equal(child.backbone.stages["res3"][2].depthwise.weight.detach()[:, 0], best)


def _figures(accuracy, netscore, feasible):
    return Figures(
        accuracy=accuracy,
        params=1000,
        mult_adds=2000,
        latency_ms=None,
        netscore=netscore,
        score=netscore,
        met={"min_accuracy": feasible},
        violation=0.0 if feasible else 1.0,
        feasible=feasible,
    )


def _record(candidate_id, generator, accuracy, netscore, feasible):
    return CandidateRecord(
        id=candidate_id,
        name=f"candidate-{candidate_id:04d}",
        generator=generator,
        parent=0,
        draws=1,
        repairs=0,
        schedule="finetune",
        spec=uniform_prototype(),
        spec_file=f"candidates/{candidate_id}.yaml",
        weights=f"candidates/{candidate_id}.pth",
        figures=_figures(accuracy, netscore, feasible),
        seconds=1.0,
    )


def test_family_members_that_miss_the_requirements_after_retraining_are_not_kept():
    prototype = _record(0, None, 70.0, 100.0, True)
    state = SearchState(
        task="classification",
        accuracy_name="top-1",
        input_size=(32, 32),
        settings=ExplorerSettings(),
        evaluation={},
        requirements=DesignRequirements(min_accuracy=65.0),
        prototype=prototype.spec,
        generators=[GeneratorRecord(0, {}, [0], 1), GeneratorRecord(1, {}, [1], 2)],
        candidates=[prototype, _record(1, 0, 72.0, 105.0, True), _record(2, 1, 71.0, 108.0, True)],
        search_seconds=60.0,
    )
    for candidate_id, accuracy in ((1, 70.5), (2, 64.0)):  # the second misses the floor
        name = f"AttoNet-X-G{candidate_id - 1}"
        state.retrained[candidate_id] = RetrainedRecord(
            name=name,
            schedule="scratch",
            spec_file=f"family/{name}.yaml",
            weights=f"family/{name}.pth",
            figures=_figures(accuracy, 106.0, accuracy >= 65),
            seconds=1.0,
        )
    summary = family_summary(state)
    assert family_summary(json.loads(json.dumps(state.to_dict()))) == summary
    assert [row["name"] for row in summary["family"]] == ["AttoNet-X-G0", "AttoNet-X-G1"]
    assert [row["kept"] for row in summary["family"]] == [True, False]
    assert summary["kept"] == ["AttoNet-X-G0"]
    markdown = format_family_table(summary)
    assert "min_accuracy NO | NO |" in markdown and "Kept: AttoNet-X-G0." in markdown
    # Counts with 3 significant digits, figures with 2 decimals, "-" where not measured.
    assert "| uniform-32 (prototype) | human | 8 / 32-64-128-256 | 70.00 | 70.00 | 1K | 2K | - "
    "| 100.00 | min_accuracy yes | - |" in markdown
    assert "| G1 | 1 | 1 | 108.00 | yes |" in markdown and "Search time: 1.0 min." in markdown
