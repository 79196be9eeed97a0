"""The design explorer's latency objective, requirements relative to peers, and latency engines."""

import dataclasses
import json
import math
import os
import zlib

import pytest
import torch

from atto_detectron.analysis import count_parameters
from atto_detectron.modeling import build_attonet_classifier

from design_exploration import (
    CLASSIFIER_LAYOUT,
    PEER_NAMES,
    CandidateEvaluator,
    CandidateRecord,
    CandidateResult,
    DesignExplorer,
    DesignRequirements,
    DetectionEvaluator,
    DetectionSearchConfig,
    ExplorerSettings,
    Figures,
    LatencySettings,
    PeerRecord,
    PeerReference,
    SearchBudget,
    family_summary,
    format_family_table,
    get_prototype,
    latency_front,
    latency_score,
    load_requirements,
    load_state,
    objective_score,
    ranking_key,
    uniform_prototype,
    write_report,
)

from .helpers import CONFIGS, SYNTH_DATASETS

PROJECT_CONFIGS = os.path.join(os.path.dirname(CONFIGS), "projects", "DesignExploration", "configs")
SYNTH_CONFIG = os.path.join(CONFIGS, "synth", "atto_maskrcnn_synth.yaml")


# ---------------------------------------------------------------- requirements of peers


def test_requirements_relative_to_peers(tmp_path):
    path = tmp_path / "cpu.yaml"
    path.write_text(
        "objective: latency\n"
        "max_latency_ms: {of: ShuffleNetV2-FPN}\n"
        "min_accuracy: {of: MobileNetV2-FPN, times: 0.98}\n"
        "max_params: 6M\n"
    )
    req = load_requirements(str(path))
    assert req.max_latency_ms == PeerReference("ShuffleNetV2-FPN")
    assert req.min_accuracy == PeerReference("MobileNetV2-FPN", 0.98)
    assert req.max_params == 6e6 and req.objective == "latency" and req.needs_latency
    assert req.peer_names() == ["ShuffleNetV2-FPN", "MobileNetV2-FPN"]
    assert req.peer_figures("ShuffleNetV2-FPN") == ["latency_ms"]
    assert req.peer_figures("MobileNetV2-FPN") == ["accuracy"]
    # The JSON form keeps the references (a resumed search compares it) and reads back.
    data = req.to_dict()
    assert data["max_latency_ms"] == {"of": "ShuffleNetV2-FPN"}
    assert data["min_accuracy"] == {"of": "MobileNetV2-FPN", "times": 0.98}
    assert DesignRequirements.from_dict(data) == req
    # Unresolved, they judge nothing; resolved, they are numbers.
    with pytest.raises(ValueError, match="resolved"):
        req.check({"accuracy": 50.0, "params": 1, "mult_adds": 1, "latency_ms": 1.0})
    peers = {
        "ShuffleNetV2-FPN": {"latency_ms": 40.0, "accuracy": None},
        "MobileNetV2-FPN": {"latency_ms": None, "accuracy": 50.0},
    }
    resolved = req.resolved(peers)
    assert resolved.max_latency_ms == 40.0 and resolved.min_accuracy == pytest.approx(49.0)
    assert resolved.max_params == 6e6 and resolved.objective == "latency"
    record = {"accuracy": 49.5, "params": 5e6, "mult_adds": 1, "latency_ms": 41.0}
    assert resolved.check(record) == {
        "min_accuracy": True,
        "max_params": True,
        "max_latency_ms": False,
    }
    with pytest.raises(ValueError, match="MobileNetV2-FPN.*accuracy.*not measured"):
        req.resolved({"ShuffleNetV2-FPN": {"latency_ms": 40.0}})

    # The shipped CPU requirements, and plain numbers as before.
    cpu = load_requirements(os.path.join(PROJECT_CONFIGS, "cpu_detection.yaml"))
    assert cpu.objective == "latency"
    assert cpu.max_latency_ms == PeerReference("ShuffleNetV2-FPN")
    assert cpu.min_accuracy == PeerReference("MobileNetV2-FPN")
    plain = DesignRequirements(max_latency_ms=5)
    assert plain.objective == "netscore" and plain.to_dict()["max_latency_ms"] == 5.0
    assert not DesignRequirements(max_params=1).needs_latency


@pytest.mark.parametrize(
    "text, message",
    [
        (
            "max_latency_ms: {of: ShuffleNet}",
            r"max_latency_ms: unknown peer 'ShuffleNet'; known peers: " + ", ".join(PEER_NAMES),
        ),
        ("min_accuracy: {peer: MobileNetV2-FPN}", r"min_accuracy: .*\{of: NAME\}"),
        ("max_params: {of: MobileNetV2-FPN, times: -1}", r"max_params: times .* > 0"),
        ("max_params: {of: MobileNetV2-FPN, times: x}", r"max_params: times must be a number"),
        ("objective: speed", r"objective must be one of \('netscore', 'latency'\)"),
    ],
)
def test_bad_peer_requirements_name_the_file_and_key(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text + "\n")
    with pytest.raises(ValueError, match=str(path) + ": " + message) as info:
        load_requirements(str(path))
    assert "\n" not in str(info.value)


# ---------------------------------------------------------------- the latency objective


def _record(candidate_id, requirements, mult_adds, latency_ms):
    result = CandidateResult(70.0, 1_000_000, mult_adds, latency_ms, {}, {})
    return CandidateRecord(
        id=candidate_id,
        name=f"candidate-{candidate_id}",
        generator=0,
        parent=0,
        draws=1,
        repairs=0,
        schedule="finetune",
        spec=uniform_prototype(8),
        spec_file=f"candidates/{candidate_id}.yaml",
        weights=None,
        figures=Figures.measure(result, requirements),
        seconds=1.0,
    )


def test_latency_objective_ranks_the_faster_candidate_first():
    # Equal accuracy and parameters: candidate 1 is faster but has more mult-adds.
    for objective, first in (("latency", 1), ("netscore", 2)):
        requirements = DesignRequirements(max_latency_ms=100, objective=objective)
        records = [
            _record(1, requirements, mult_adds=2e9, latency_ms=10.0),
            _record(2, requirements, mult_adds=1e9, latency_ms=20.0),
        ]
        assert all(r.figures.feasible for r in records)
        assert min(records, key=ranking_key).id == first, objective
    # NetScore with the latency (ms) in place of the mult-adds (G).
    assert latency_score(70.0, 1e6, 10.0) == pytest.approx(
        20 * math.log10(70.0**2 / math.sqrt(1.0 * 10.0))
    )
    assert latency_score(70.0, 1e6, 10.0) - latency_score(70.0, 1e6, 20.0) == pytest.approx(
        10 * math.log10(2)
    )
    assert objective_score("netscore", 70.0, 1e6, 1e9) == pytest.approx(20 * math.log10(70.0**2))
    assert latency_score(0.0, 1e6, 10.0) is None and latency_score(50.0, 1e6, None) is None
    with pytest.raises(ValueError, match="objective"):
        objective_score("speed", 70.0, 1e6, 1e9)


def test_mask_ap50_floor_relative_to_a_peer():
    req = DesignRequirements(min_mask_accuracy={"of": "MobileNetV2-FPN"})
    assert req.peer_figures("MobileNetV2-FPN") == ["mask_accuracy"]
    assert req.to_dict()["min_mask_accuracy"] == {"of": "MobileNetV2-FPN"}
    peer = PeerRecord(
        "MobileNetV2-FPN", "configs/m.yaml", 1, 1, None, 60.0, {"segm": {"AP50": 55.0}}
    )
    assert peer.figures()["mask_accuracy"] == 55.0
    resolved = req.resolved({"MobileNetV2-FPN": peer.figures()})
    assert resolved.min_mask_accuracy == 55.0
    base = {"accuracy": 70.0, "params": 1, "mult_adds": 1}
    assert resolved.check(dict(base, mask_accuracy=56.0)) == {"min_mask_accuracy": True}
    assert resolved.check(dict(base, mask_accuracy=44.0)) == {"min_mask_accuracy": False}
    assert resolved.violation(dict(base, mask_accuracy=44.0)) == pytest.approx(0.2)
    # A candidate's figures read its mask AP50 from the evaluator's results.
    result = CandidateResult(70.0, 1, 1, None, {"bbox": {"AP50": 70.0}, "segm": {"AP50": 44.0}}, {})
    figures = Figures.measure(result, resolved)
    assert figures.mask_accuracy == 44.0 and not figures.feasible
    # Without masks (classification) the floor is a mistake, named as such.
    no_masks = CandidateResult(70.0, 1, 1, None, {"top1": 70.0}, {})
    with pytest.raises(ValueError, match="min_mask_accuracy needs mask AP50"):
        Figures.measure(no_masks, resolved)
    # The shipped CPU requirements set it.
    cpu = load_requirements(os.path.join(PROJECT_CONFIGS, "cpu_detection.yaml"))
    assert cpu.min_mask_accuracy == PeerReference("MobileNetV2-FPN")


# ---------------------------------------------------------------- peers in a search


class _PeerEvaluator(CandidateEvaluator):
    """
    Trains nothing (a search in seconds), measures a made-up latency that grows with the
    parameters, and counts what it measures.
    """

    task = "detection"
    accuracy_name = "box AP50"
    layout = CLASSIFIER_LAYOUT
    input_size = (32, 32)
    latency_engines = ("pytorch", "openvino", "openvino-int8")

    def __init__(self, kill_at_peer=None):
        self.peers = []
        self.latency_requests = []
        self.kill_at_peer = kill_at_peer

    def settings(self):
        return {"num_classes": 4}

    def peer_config_file(self, name):
        if name not in PEER_NAMES:
            raise ValueError(f"unknown peer {name!r}")
        return f"configs/{name}.yaml"

    def measure_peer(self, name, seed, accuracy, latency):
        if name == self.kill_at_peer:
            raise KeyboardInterrupt
        self.peers.append((name, seed, accuracy, latency))
        return PeerRecord(
            name=name,
            config_file=self.peer_config_file(name),
            params=3_000_000,
            mult_adds=1_000_000_000,
            latency_ms=None if latency is None else 3.0,
            accuracy=68.0 if accuracy else None,
        )

    def evaluate(
        self, spec, spec_path, schedule, seed, initialize=None, measure_latency=False, neck=None
    ):
        self.latency_requests.append(measure_latency)
        torch.manual_seed(seed)
        model = build_attonet_classifier(spec_path, num_classes=4)
        if initialize is not None:
            initialize(model)
        params = count_parameters(model)
        # 60..80, fixed by the network (every training of a search has the same seed)
        accuracy = 60.0 + (zlib.crc32(repr(spec.stages).encode()) % 1000) / 50.0
        latency = params / 20_000 if measure_latency else None
        return CandidateResult(accuracy, params, 10 * params, latency, {}, model.state_dict())


_PEER_REQUIREMENTS = DesignRequirements(
    max_latency_ms={"of": "ShuffleNetV2-FPN"},
    min_accuracy={"of": "MobileNetV2-FPN", "times": 0.95},
    objective="latency",
)
_LATENCY = LatencySettings(engine="openvino", runs=5, warmup=2, threads=1)


def _peer_explorer(output, evaluator, resume=False, latency=_LATENCY):
    return DesignExplorer(
        evaluator,
        get_prototype("uniform", base_width=8),
        _PEER_REQUIREMENTS,
        output,
        ExplorerSettings(population=2, num_elite=2, seed=1, latency=latency),
        resume=resume,
    )


def _without_times(state):
    data = state.to_dict()
    data.pop("search_seconds")
    for record in data["candidates"] + list(data["retrained"].values()):
        record.pop("seconds")
    return data


def test_peers_are_measured_once_and_restored_on_resume(tmp_path):
    budget = SearchBudget(candidates=3)
    full = _PeerEvaluator()
    uninterrupted = _peer_explorer(str(tmp_path / "full"), full).run(budget, progress=False)
    seed = ExplorerSettings(seed=1).seed_for(0)  # the prototype's
    assert full.peers == [
        ("ShuffleNetV2-FPN", seed, False, _LATENCY),
        ("MobileNetV2-FPN", seed, True, _LATENCY),
    ]
    assert full.latency_requests and all(r == _LATENCY for r in full.latency_requests)
    assert list(uninterrupted.peers) == ["ShuffleNetV2-FPN", "MobileNetV2-FPN"]
    # The requirements are resolved with the peers' figures; the state keeps them as given.
    assert uninterrupted.resolved_requirements().max_latency_ms == 3.0
    assert uninterrupted.resolved_requirements().min_accuracy == pytest.approx(0.95 * 68.0)
    assert uninterrupted.to_dict()["requirements"]["max_latency_ms"] == {"of": "ShuffleNetV2-FPN"}
    assert uninterrupted.to_dict()["settings"]["latency"] == dict(
        dataclasses.asdict(_LATENCY), check_engines=[]
    )
    for record in uninterrupted.candidates:
        figures = record.figures
        assert set(figures.met) == {"min_accuracy", "max_latency_ms"}
        assert figures.met["max_latency_ms"] == (figures.latency_ms <= 3.0)
        assert figures.score == pytest.approx(
            latency_score(figures.accuracy, figures.params, figures.latency_ms)
        )
    markdown = format_family_table(family_summary(uninterrupted))
    assert "| ShuffleNetV2-FPN | configs/ShuffleNetV2-FPN.yaml |" in markdown
    assert "latency <= 3 ms (ShuffleNetV2-FPN)" in markdown
    assert "box AP50 >= 64.6% (0.95 x MobileNetV2-FPN)" in markdown
    assert "ranked by latency score" in markdown and "latency score final" in markdown
    # The latency-accuracy front: the candidates nothing beats in both, fastest first.
    summary = family_summary(uninterrupted)
    front = latency_front(summary["candidates"])
    assert front and "Latency-accuracy front of the candidates" in markdown
    for point in front:
        assert not any(
            c["latency_ms"] <= point["latency_ms"]
            and c["accuracy"] >= point["accuracy"]
            and (c["latency_ms"], c["accuracy"]) != (point["latency_ms"], point["accuracy"])
            for c in summary["candidates"]
        )
        assert f"| {point['id']} |" in markdown
    paths = write_report(uninterrupted, str(tmp_path / "full"))
    with open(paths["json"]) as f:
        report = json.load(f)
    assert report["objective"] == "latency" and list(report["peers"]) == list(PEER_NAMES[:2])
    assert report["requirements"]["max_latency_ms"] == 3.0
    assert report["requirements_given"]["max_latency_ms"] == {"of": "ShuffleNetV2-FPN"}

    # Killed while measuring the second peer: the first is in the state.
    output = str(tmp_path / "killed")
    killed = _PeerEvaluator(kill_at_peer="MobileNetV2-FPN")
    with pytest.raises(KeyboardInterrupt):
        _peer_explorer(output, killed).run(budget, progress=False)
    assert list(load_state(output).peers) == ["ShuffleNetV2-FPN"]
    assert not load_state(output).candidates

    # Resumed: only the second peer is measured; killed again after candidate 1.
    second = _PeerEvaluator()

    def kill_after_candidate_1(record):
        if record.id == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _peer_explorer(output, second, resume=True).run(
            budget, progress=False, on_candidate=kill_after_candidate_1
        )
    assert [p[0] for p in second.peers] == ["MobileNetV2-FPN"]

    # Resumed again: no peer is measured; the result is the uninterrupted search's.
    third = _PeerEvaluator()
    resumed = _peer_explorer(output, third, resume=True).run(budget, progress=False)
    assert third.peers == []
    assert _without_times(resumed)["peers"] == _without_times(uninterrupted)["peers"]
    assert _without_times(resumed) == _without_times(uninterrupted)

    # Other latency settings are another search.
    with pytest.raises(ValueError, match="settings.*latency"):
        _peer_explorer(
            output, _PeerEvaluator(), resume=True, latency=dataclasses.replace(_LATENCY, threads=2)
        )


class _MaskEvaluator(_PeerEvaluator):
    """_PeerEvaluator with masks: mask AP50 is the box AP50 minus 5."""

    def measure_peer(self, name, seed, accuracy, latency):
        record = super().measure_peer(name, seed, accuracy, latency)
        if accuracy:
            record.metrics = {"segm": {"AP50": record.accuracy - 5.0}}
        return record

    def evaluate(self, *args, **kwargs):
        result = super().evaluate(*args, **kwargs)
        result.metrics = {"segm": {"AP50": result.accuracy - 5.0}}
        return result


def test_search_with_a_mask_ap50_floor(tmp_path):
    requirements = DesignRequirements(
        max_latency_ms={"of": "ShuffleNetV2-FPN"},
        min_mask_accuracy={"of": "MobileNetV2-FPN", "times": 0.95},
        objective="latency",
    )
    evaluator = _MaskEvaluator()
    explorer = DesignExplorer(
        evaluator,
        get_prototype("uniform", base_width=8),
        requirements,
        str(tmp_path),
        ExplorerSettings(population=2, num_elite=2, seed=1, latency=_LATENCY),
    )
    state = explorer.run(SearchBudget(candidates=3), progress=False)
    # The peer is trained for its mask AP50 alone.
    assert [(name, accuracy) for name, _, accuracy, _ in evaluator.peers] == [
        ("ShuffleNetV2-FPN", False),
        ("MobileNetV2-FPN", True),
    ]
    floor = state.resolved_requirements().min_mask_accuracy
    assert floor == pytest.approx(0.95 * 63.0)
    for record in state.candidates:
        figures = record.figures
        assert figures.met["min_mask_accuracy"] == (figures.mask_accuracy >= floor)
    markdown = format_family_table(family_summary(state))
    assert "mask AP50 >= 59.85% (0.95 x MobileNetV2-FPN)" in markdown
    assert "| peer | config | box AP50 | mask AP50 |" in markdown
    assert "| MobileNetV2-FPN | configs/MobileNetV2-FPN.yaml | 68.00 | 63.00 |" in markdown
    assert "box AP50 final | mask AP50 final | params |" in markdown


# ---------------------------------------------------------------- a budget in two engines


def test_latency_budget_per_engine(tmp_path):
    path = tmp_path / "engines.yaml"
    path.write_text("max_latency_ms: {pytorch: 650, openvino-int8: 370}\n")
    req = load_requirements(str(path))
    assert req.max_latency_ms == {"pytorch": 650.0, "openvino-int8": 370.0}
    assert DesignRequirements.from_dict(req.to_dict()) == req
    base = {"accuracy": 50.0, "params": 1, "mult_adds": 1, "latency_ms": 600.0}
    fast = dict(base, latencies_ms={"pytorch": 600.0, "openvino-int8": 300.0})
    slow_int8 = dict(base, latencies_ms={"pytorch": 600.0, "openvino-int8": 407.0})
    assert req.check(fast) == {"max_latency_ms": True} and req.violation(fast) == 0
    assert req.check(slow_int8) == {"max_latency_ms": False}
    assert req.violation(slow_int8) == pytest.approx(0.1)
    with pytest.raises(ValueError, match="budget in openvino-int8, where no latency"):
        req.check(dict(base, latencies_ms={"pytorch": 600.0}))
    # One number holds in every engine measured.
    assert not DesignRequirements(max_latency_ms=400).check(slow_int8)["max_latency_ms"]
    assert DesignRequirements(max_latency_ms=610).check(fast)["max_latency_ms"]
    # Relative to a peer measured in two engines: its latency in each.
    peer = PeerRecord(
        "ShuffleNetV2-FPN",
        "s.yaml",
        1,
        1,
        660.0,
        None,
        latencies_ms={"pytorch": 660.0, "openvino-int8": 370.0},
    )
    relative = DesignRequirements(max_latency_ms={"of": "ShuffleNetV2-FPN", "times": 0.5})
    resolved = relative.resolved({"ShuffleNetV2-FPN": peer.figures()})
    assert resolved.max_latency_ms == {"pytorch": 330.0, "openvino-int8": 185.0}
    for text, message in (
        (
            "max_latency_ms: {tensorrt: 5}",
            r"max_latency_ms: a budget per engine maps engines \(pytorch",
        ),
        ("max_latency_ms: {pytorch: fast}", r"max_latency_ms in pytorch: expected a number"),
        ("max_params: {pytorch: 5}", r"max_params: .*\{of: NAME\}"),
    ):
        path.write_text(text + "\n")
        with pytest.raises(ValueError, match=str(path) + ": " + message):
            load_requirements(str(path))


class _TwoEngineEvaluator(_PeerEvaluator):
    """
    _PeerEvaluator whose made-up latencies differ per engine: "pytorch" grows with the
    parameters, "openvino-int8" with the stage widths' order (another ranking).
    """

    @staticmethod
    def _latencies(settings, params, key):
        made_up = {"pytorch": params / 20_000, "openvino-int8": 1.0 + (zlib.crc32(key) % 100) / 50}
        return {engine: made_up[engine] for engine in settings.engines}

    def measure_peer(self, name, seed, accuracy, latency):
        record = super().measure_peer(name, seed, accuracy, latency)
        if latency is not None:
            record.latencies_ms = {"pytorch": 3.0, "openvino-int8": 2.0}
            record.latency_ms = record.latencies_ms[latency.engine]
        return record

    def evaluate(
        self, spec, spec_path, schedule, seed, initialize=None, measure_latency=False, neck=None
    ):
        result = super().evaluate(
            spec, spec_path, schedule, seed, initialize, measure_latency, neck
        )
        if measure_latency:
            key = repr(spec.stages).encode()
            result.latencies_ms = self._latencies(measure_latency, result.params, key)
            result.latency_ms = result.latencies_ms[measure_latency.engine]
        return result


def test_search_with_a_latency_budget_in_two_engines(tmp_path):
    latency = LatencySettings(engine="pytorch", check_engines=["openvino-int8"], runs=2)
    assert latency.check_engines == ("openvino-int8",)  # as a saved state reads back
    assert latency.engines == ("pytorch", "openvino-int8")
    evaluator = _TwoEngineEvaluator()
    state = _peer_explorer(str(tmp_path), evaluator, latency=latency).run(
        SearchBudget(candidates=7), progress=False
    )
    assert state.peers["ShuffleNetV2-FPN"].latencies_ms == {"pytorch": 3.0, "openvino-int8": 2.0}
    budget = state.resolved_requirements().max_latency_ms
    assert budget == {"pytorch": 3.0, "openvino-int8": 2.0}
    verdicts = []
    for record in state.candidates:
        figures = record.figures
        assert set(figures.latencies_ms) == {"pytorch", "openvino-int8"}
        assert figures.latency_ms == figures.latencies_ms["pytorch"]  # the objective's
        assert figures.score == pytest.approx(
            latency_score(figures.accuracy, figures.params, figures.latencies_ms["pytorch"])
        )
        in_each = [figures.latencies_ms[e] <= budget[e] for e in budget]
        assert figures.met["max_latency_ms"] == all(in_each)
        verdicts.append(tuple(in_each))
    # Some candidate is fast enough in PyTorch and too slow in OpenVINO INT8: the second
    # engine decided its verdict.
    assert (True, False) in verdicts
    # The prototype is too slow in OpenVINO INT8: a member that meets the requirements is
    # kept whatever its score against the prototype's.
    summary = family_summary(state)
    assert not state.prototype_record.figures.feasible
    assert summary["family"] and summary["kept"] == [row["name"] for row in summary["family"]]
    markdown = format_family_table(summary)
    assert "latency <= 3 ms in pytorch, 2 ms in openvino-int8 (ShuffleNetV2-FPN)" in markdown
    assert "| params | mult-adds | latency pytorch | latency openvino-int8 |" in markdown
    assert "| 3.00 ms | 2.00 ms |" in markdown  # the peer's row
    assert "none is faster in pytorch and more accurate" in markdown
    write_report(state, str(tmp_path))  # the plot takes the objective engine's budget
    # A budget in an engine the search does not measure is refused before any work.
    with pytest.raises(ValueError, match="budget in openvino, but latency is measured in pytorch"):
        DesignExplorer(
            evaluator,
            get_prototype("uniform", base_width=8),
            DesignRequirements(max_latency_ms={"openvino": 5.0}),
            str(tmp_path / "other"),
            ExplorerSettings(latency=LatencySettings()),
        )


def test_engines_and_peers_the_evaluator_lacks_are_refused(tmp_path):
    class _Classification(_PeerEvaluator):
        task = "classification"
        latency_engines = ("pytorch",)

        def peer_config_file(self, name):
            return CandidateEvaluator.peer_config_file(self, name)

    output = str(tmp_path / "search")
    with pytest.raises(ValueError, match="measures latency in pytorch; got .*'openvino'"):
        _peer_explorer(output, _Classification())
    with pytest.raises(ValueError, match="need --task detection"):
        _peer_explorer(output, _Classification(), latency=LatencySettings())
    with pytest.raises(ValueError, match="latency engine must be one of"):
        LatencySettings(engine="tensorrt")
    with pytest.raises(ValueError, match="latency engine must be one of"):
        LatencySettings(check_engines=("tensorrt",))
    with pytest.raises(ValueError, match="latency engines must differ"):
        LatencySettings(engine="openvino", check_engines=("openvino",))
    # Classification measures in PyTorch alone.
    with pytest.raises(ValueError, match="measures latency in pytorch; got .*'openvino-int8'"):
        _peer_explorer(
            output, _Classification(), latency=LatencySettings(check_engines=("openvino-int8",))
        )
    with pytest.raises(ValueError, match="runs"):
        LatencySettings(runs=0)


def test_peer_configs_are_paired_with_the_search():
    opts = ("SOLVER.MAX_ITER", "900", "INPUT.MIN_SIZE_TEST", "224", "INPUT.MAX_SIZE_TEST", "224")
    evaluator = DetectionEvaluator(DetectionSearchConfig(SYNTH_CONFIG, opts=opts, scratch_iters=30))
    prototype = evaluator.candidate_cfg("p.yaml", "scratch", 7, "out")
    peer = evaluator.peer_cfg("ShuffleNetV2-FPN", 7, "out")
    assert evaluator.peer_config_file("ShuffleNetV2-FPN").endswith(
        os.path.join("configs", "synth", "mask_rcnn_shufflenet_v2_FPN_synth.yaml")
    )
    assert peer.MODEL.BACKBONE.NAME == "build_shufflenet_v2_fpn_backbone"
    for key in ("SEED", "SOLVER", "DATASETS", "INPUT", "TEST", "DATALOADER"):
        assert peer[key] == prototype[key], key
    assert peer.MODEL.WEIGHTS == "" and peer.SOLVER.MAX_ITER == 30
    with pytest.raises(ValueError, match="unknown peer 'VGG'; known peers: ShuffleNetV2-FPN"):
        evaluator.peer_config_file("VGG")
    voc = DetectionEvaluator(DetectionSearchConfig(os.path.join(CONFIGS, "atto_maskrcnn_voc.yaml")))
    assert voc.peer_config_file("MobileNetV2-FPN").endswith(
        os.path.join("configs", "mask_rcnn_mobilenet_v2_FPN_voc.yaml")
    )
    # A peer at another operating point than the search's is not paired.
    evaluator.base_cfg = evaluator.base_cfg.clone()
    evaluator.base_cfg.defrost()
    evaluator.base_cfg.TEST.DETECTIONS_PER_IMAGE = 7
    with pytest.raises(ValueError, match="mask_rcnn_shufflenet_v2_FPN_synth.yaml.*DETECTIONS"):
        evaluator.peer_cfg("ShuffleNetV2-FPN", 7, "out")


# ---------------------------------------------------------------- real latencies


@pytest.mark.slow
def test_detector_latency_in_pytorch_and_openvino():
    pytest.importorskip("openvino")
    opts = (
        "INPUT.MIN_SIZE_TEST",
        "64",
        "INPUT.MAX_SIZE_TEST",
        "64",
        "MODEL.RPN.POST_NMS_TOPK_TEST",
        "20",
        "TEST.DETECTIONS_PER_IMAGE",
        "5",
    )
    evaluator = DetectionEvaluator(DetectionSearchConfig(SYNTH_CONFIG, opts=opts))
    spec = uniform_prototype(8)
    threads = torch.get_num_threads()
    settings = LatencySettings(
        engine="pytorch", check_engines=("openvino",), runs=2, warmup=1, threads=1
    )
    latencies = evaluator._spec_latencies_ms(spec, settings)
    assert list(latencies) == ["pytorch", "openvino"]
    assert all(0 < ms < 60_000 for ms in latencies.values()), latencies
    assert evaluator._spec_latencies_ms(spec, settings) == latencies  # measured once
    assert torch.get_num_threads() == threads


@pytest.mark.slow
def test_detection_search_with_peers_resumes_without_measuring_them(
    synthetic_voc, tmp_path, monkeypatch
):
    config = DetectionSearchConfig(
        SYNTH_CONFIG,
        opts=(
            "DATASETS.TRAIN",
            f"('{SYNTH_DATASETS['train']}',)",
            "DATASETS.TEST",
            f"('{SYNTH_DATASETS['val']}',)",
            "SOLVER.IMS_PER_BATCH",
            "2",
            "INPUT.MIN_SIZE_TRAIN",
            "(96,)",
            "INPUT.MAX_SIZE_TRAIN",
            "128",
            "INPUT.MIN_SIZE_TEST",
            "96",
            "INPUT.MAX_SIZE_TEST",
            "128",
            "MODEL.RPN.POST_NMS_TOPK_TEST",
            "20",
            "TEST.DETECTIONS_PER_IMAGE",
            "5",
        ),
        scratch_iters=2,
        finetune_iters=1,
    )
    requirements = load_requirements(os.path.join(PROJECT_CONFIGS, "cpu_detection.yaml"))
    settings = ExplorerSettings(
        population=1, num_elite=1, retrain=False, latency=LatencySettings(runs=2, warmup=1)
    )
    output = str(tmp_path / "search")

    def explorer(resume):
        return DesignExplorer(
            DetectionEvaluator(config),
            uniform_prototype(8),
            requirements,
            output,
            settings,
            resume=resume,
        )

    first = explorer(False).run(SearchBudget(candidates=0), progress=False)
    shufflenet, mobilenet = first.peers["ShuffleNetV2-FPN"], first.peers["MobileNetV2-FPN"]
    assert shufflenet.latency_ms > 0 and shufflenet.accuracy is None
    assert mobilenet.accuracy is not None and "bbox" in mobilenet.metrics
    assert shufflenet.params > 1_000_000 and mobilenet.mult_adds > 0

    def measured_again(*args, **kwargs):
        raise AssertionError("a resumed search measured a peer again")

    monkeypatch.setattr(DetectionEvaluator, "measure_peer", measured_again)
    resumed = explorer(True).run(SearchBudget(candidates=1), progress=False)
    assert resumed.peers == first.peers and len(resumed.candidates) == 2
    prototype = resumed.candidates[0]
    figures = prototype.figures
    assert figures.latency_ms > 0
    # Two iterations leave the AP at 0 or near it; the score is None at 0.
    assert figures.score == latency_score(figures.accuracy, figures.params, figures.latency_ms)
    assert set(prototype.figures.met) == {"min_accuracy", "min_mask_accuracy", "max_latency_ms"}
    assert figures.met["max_latency_ms"] == (figures.latency_ms <= shufflenet.latency_ms)
    # Mask AP50 comes from Detectron2's "segm" results, the candidate's and the peer's.
    assert figures.mask_accuracy is not None and "segm" in mobilenet.metrics
    floor = mobilenet.figures()["mask_accuracy"]
    assert figures.met["min_mask_accuracy"] == (figures.mask_accuracy >= floor)
