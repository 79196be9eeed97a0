"""design_exploration beyond the cells: depths per stage and the detector's neck."""

import dataclasses
import os

import numpy as np
import pytest
import torch

from detectron2.modeling import build_model
from detectron2.structures import Boxes

from atto_detectron import build_attonet_classifier, save_attonet_spec
from atto_detectron.config import load_config

from design_exploration import (
    DETECTOR_FPN_LAYOUT,
    CandidateRecord,
    CellGenerator,
    CellGenome,
    DetectionEvaluator,
    DetectionSearchConfig,
    Figures,
    GeneratorSettings,
    LatencySettings,
    NeckGenome,
    apply_neck,
    genome_distance,
    inherit_weights,
    latency_front,
    neck_of,
    uniform_prototype,
)

from .helpers import CONFIGS, assert_close_to_scale
from .test_design import _randomize_norms

SYNTH_CONFIG = os.path.join(CONFIGS, "synth", "atto_maskrcnn_synth.yaml")
NECK = NeckGenome(96, ("res2", "res3", "res4", "res5"))


# Small models on a shared 2-core machine train many times faster on one thread.
pytestmark = pytest.mark.usefixtures("one_thread")


# ---------------------------------------------------------------------- depths


def test_padding_and_truncating_depths():
    genome = CellGenome.from_spec(uniform_prototype(16))
    deeper = genome.padded((4, 4, 8, 3))
    assert deeper.depths == (4, 4, 8, 3) and deeper.num_modules == 19
    # Extra modules copy the stage's last cell with an identity shortcut.
    assert deeper.compression[3] == genome.compression[2] and not deeper.projection[3]
    spec = deeper.to_spec("deeper")
    assert [len(stage) for stage in spec.stages] == [4, 4, 8, 3]
    assert deeper.truncated(genome.depths) == genome
    shallow = genome.truncated((1, 2, 3, 1))
    assert CellGenome.from_spec(shallow.to_spec("s")) == shallow
    with pytest.raises(ValueError, match="truncate"):
        genome.truncated((4, 4, 6, 3))
    with pytest.raises(ValueError, match="at least one module"):
        dataclasses.replace(genome.truncated((1, 1, 1, 1)), depths=(0, 1, 1, 1))
    # Each missing module counts 1; equal genomes are 0 apart.
    assert genome_distance(genome, genome) == 0
    assert genome_distance(genome, deeper) == pytest.approx(3.0)


def test_generator_explores_depths_and_learns_them_from_the_elite():
    prototype = CellGenome.from_spec(uniform_prototype(16))
    settings = GeneratorSettings(depth_change=2, spread_rate=0.5)
    generator = CellGenerator.from_prototype(prototype, settings)
    assert generator.template.depths == (5, 6, 8, 5)
    rng = np.random.default_rng(0)
    samples = [generator.sample(rng) for _ in range(200)]
    for s, depth in enumerate(prototype.depths):
        seen = [g.depths[s] for g in samples]
        assert set(seen) <= set(range(max(1, depth - 2), depth + 3))
        # G_0 keeps the prototype's depth most often (initial_keep), and explores others.
        assert max(set(seen), key=seen.count) == depth and len(set(seen)) > 1
    for g in samples:  # every sample is a valid network
        g.to_spec("x")
    # The elite is shallow in res4: the generator moves towards it; the slots that no
    # elite member has keep their distribution.
    elite = [prototype.truncated((3, 4, 4, 3)), prototype.truncated((3, 4, 4, 3))]
    updated = generator.updated(elite, settings)
    choices, probs = updated.structure.depths[2], updated.structure.depth_probs[2]
    assert probs[choices.index(4)] > generator.structure.depth_probs[2][choices.index(4)]
    last_slot = generator.template.num_modules - 5 - 1  # res4's last slot
    assert np.allclose(updated.multiplier_probs[last_slot], generator.multiplier_probs[last_slot])
    assert generator.center().depths == (3, 4, 6, 3) and updated.center().depths[2] == 4
    # The state form restores the same generator.
    restored = CellGenerator.from_dict(updated.to_dict(), prototype)
    a, b = np.random.default_rng(3), np.random.default_rng(3)
    assert [restored.sample(a) for _ in range(5)] == [updated.sample(b) for _ in range(5)]


def test_fixed_depths_sample_as_before():
    """Without depth or neck choices, a generator draws exactly the cells it drew before."""
    prototype = CellGenome.from_spec(uniform_prototype(16), NECK)
    generator = CellGenerator.from_prototype(prototype, GeneratorSettings())
    assert generator.structure.depths == tuple((d,) for d in prototype.depths)
    rng = np.random.default_rng(5)
    genome = generator.sample(rng)
    assert genome.depths == prototype.depths and genome.neck == NECK
    # The next draw is the one that follows the cells' draws: nothing else was drawn.
    reference = np.random.default_rng(5)
    reference.standard_normal()
    reference.standard_normal(len(generator.mean))
    for probs in generator.multiplier_probs:
        reference.choice(len(probs), p=probs)
    reference.random(generator.template.num_modules)
    assert rng.random() == reference.random()


def test_deeper_child_starts_with_its_parents_function_and_shallower_loads():
    parent_spec = uniform_prototype(16)
    torch.manual_seed(0)
    parent = _randomize_norms(build_attonet_classifier(parent_spec, num_classes=5)).eval()
    genome = CellGenome.from_spec(parent_spec)
    deeper = genome.padded((4, 5, 7, 4))
    child_spec = deeper.with_integer_genes(deeper.integer_genes() + 2).to_spec("deeper")
    child = build_attonet_classifier(child_spec, num_classes=5)
    report = inherit_weights(child, parent.state_dict(), parent_spec, child_spec)
    assert "backbone.stages.res4.6.compression.weight" in report["fresh"]
    x = torch.randn(2, 3, 32, 32)
    assert_close_to_scale(child.eval()(x), parent(x))
    # The new modules are trainable: only their last conv starts at zero.
    new = child.backbone.stages["res4"][6]
    assert (new.decompression.weight == 0).all() and (new.compression.weight != 0).any()

    shallow_spec = genome.truncated((1, 2, 3, 1)).to_spec("shallow")
    shallow = build_attonet_classifier(shallow_spec, num_classes=5)
    report = inherit_weights(shallow, parent.state_dict(), parent_spec, shallow_spec)
    assert not report["fresh"]
    assert torch.equal(
        shallow.backbone.stages["res3"][1].mixing.weight,
        parent.backbone.stages["res3"][1].mixing.weight,
    )


# ---------------------------------------------------------------------- neck


def test_neck_rewrites_fpn_rpn_roi_and_anchor_keys():
    cfg = load_config(SYNTH_CONFIG)
    assert neck_of(cfg) == NECK
    narrow = apply_neck(cfg, NeckGenome(64, ("res3", "res4", "res5")))
    assert narrow.MODEL.FPN.OUT_CHANNELS == 64
    assert narrow.MODEL.FPN.IN_FEATURES == ["res3", "res4", "res5"]
    assert narrow.MODEL.RPN.IN_FEATURES == ["p3", "p4", "p5", "p6"]
    assert narrow.MODEL.ROI_HEADS.IN_FEATURES == ["p3", "p4", "p5"]
    # P3 takes the smallest anchor (32), so small objects keep an anchor that fits.
    assert narrow.MODEL.ANCHOR_GENERATOR.SIZES == [[32], [64], [128], [256]]
    assert cfg.MODEL.FPN.OUT_CHANNELS == 96  # the input config is unchanged
    model = build_model(narrow).eval()
    with torch.no_grad():
        (output,) = model([{"image": torch.rand(3, 96, 128) * 255}])
    assert "instances" in output
    with pytest.raises(ValueError, match="not one of"):
        NeckGenome(96, ("res4", "res5"))
    odd = cfg.clone()
    odd.defrost()
    odd.MODEL.RPN.IN_FEATURES = ["p2", "p3", "p4", "p5"]
    with pytest.raises(ValueError, match="MODEL.RPN.IN_FEATURES"):
        apply_neck(odd, NeckGenome(64, ("res3", "res4", "res5")))
    # The width choices around the prototype's 96: multiples of GroupNorm's 32 groups,
    # and the prototype's own width.
    assert NECK.width_choices() == (32, 64, 96, 128)
    assert NeckGenome(100, NECK.in_features).width_choices() == (32, 64, 96, 100, 128)
    # A config whose FPN levels the search does not vary has no neck to search.
    evaluator = DetectionEvaluator(
        DetectionSearchConfig(
            SYNTH_CONFIG,
            opts=(
                "MODEL.FPN.IN_FEATURES",
                "['res2', 'res3', 'res4']",
                "MODEL.RPN.IN_FEATURES",
                "['p2', 'p3', 'p4', 'p5']",
                "MODEL.ANCHOR_GENERATOR.SIZES",
                "[[32], [64], [128], [256]]",
            ),
        )
    )
    assert evaluator.prototype_neck is None


def test_generator_explores_the_neck_only_with_one():
    with pytest.raises(ValueError, match="--search-neck.*--task detection"):
        CellGenerator.from_prototype(
            CellGenome.from_spec(uniform_prototype(16)), GeneratorSettings(search_neck=True)
        )
    prototype = CellGenome.from_spec(uniform_prototype(16), NECK)
    generator = CellGenerator.from_prototype(prototype, GeneratorSettings(search_neck=True))
    rng = np.random.default_rng(1)
    necks = [generator.sample(rng).neck for _ in range(100)]
    assert {n.out_channels for n in necks} == {32, 64, 96, 128}
    assert {n.in_features[0] for n in necks} == {"res2", "res3"}
    assert max(necks, key=necks.count) == NECK


def _detector(cfg, spec, neck, tmp_path, name):
    evaluator = DetectionEvaluator(DetectionSearchConfig(SYNTH_CONFIG))
    path = save_attonet_spec(spec, str(tmp_path / f"{name}.yaml"))
    cfg = evaluator.candidate_cfg(path, "scratch", 0, str(tmp_path / name), neck)
    return build_model(cfg).eval()


def test_deeper_backbone_keeps_the_detectors_function(tmp_path):
    cfg = load_config(SYNTH_CONFIG)
    parent_spec = uniform_prototype(16)
    child_spec = CellGenome.from_spec(parent_spec).padded((4, 4, 7, 3)).to_spec("child")
    torch.manual_seed(0)
    parent = _randomize_norms(_detector(cfg, parent_spec, NECK, tmp_path, "parent"))
    child = _detector(cfg, child_spec, NECK, tmp_path, "child")
    report = inherit_weights(
        child, parent.state_dict(), parent_spec, child_spec, DETECTOR_FPN_LAYOUT
    )
    assert all(".stages." in key for key in report["fresh"])  # the new modules only
    child.eval()
    x = torch.randn(1, 3, 96, 128)
    with torch.no_grad():
        parent_features, child_features = parent.backbone(x), child.backbone(x)
        for level, expected in parent_features.items():
            assert_close_to_scale(child_features[level], expected, name=level)
        boxes = [Boxes(torch.tensor([[4.0, 8.0, 60.0, 70.0], [30.0, 20.0, 120.0, 90.0]]))]
        heads = []
        for model, features in ((parent, parent_features), (child, child_features)):
            logits, deltas = model.proposal_generator.rpn_head(list(features.values()))
            roi = model.roi_heads
            inputs = [features[k] for k in roi.box_in_features]
            scores, box_deltas = roi.box_predictor(roi.box_head(roi.box_pooler(inputs, boxes)))
            masks = roi.mask_head.layers(roi.mask_pooler(inputs, boxes))
            heads.append(logits + deltas + [scores, box_deltas, masks])
        for expected, actual in zip(*heads):
            assert_close_to_scale(actual, expected, name="heads")


def test_wider_or_narrower_neck_starts_from_its_parents_weights(tmp_path):
    cfg = load_config(SYNTH_CONFIG)
    spec = uniform_prototype(16)
    torch.manual_seed(0)
    parent = _detector(cfg, spec, NECK, tmp_path, "parent")
    state = parent.state_dict()
    wide = _detector(cfg, spec, NeckGenome(128, NECK.in_features), tmp_path, "wide")
    inherit_weights(wide, state, spec, spec, DETECTOR_FPN_LAYOUT)
    # The FPN's GroupNorm regroups a wider FPN's channels, so the function changes; the
    # weights start from the parent's, and whatever reads a new channel starts at zero.
    for key in ("backbone.fpn_output3.weight", "proposal_generator.rpn_head.conv.weight"):
        weight = wide.state_dict()[key]
        assert torch.equal(weight[:96, :96], state[key]) and (weight[:96, 96:] == 0).all()
    fc1, parent_fc1 = wide.roi_heads.box_head.fc1.weight, state["roi_heads.box_head.fc1.weight"]
    assert torch.equal(fc1[:, : 96 * 49], parent_fc1) and (fc1[:, 96 * 49 :] == 0).all()
    lateral = wide.backbone.fpn_lateral2.weight
    assert torch.equal(lateral[:96], state["backbone.fpn_lateral2.weight"])

    narrow = _detector(cfg, spec, NeckGenome(64, ("res3", "res4", "res5")), tmp_path, "narrow")
    report = inherit_weights(narrow, state, spec, spec, DETECTOR_FPN_LAYOUT)
    assert not report["fresh"]  # P2's convs are gone; everything else is inherited
    fc1 = narrow.roi_heads.box_head.fc1.weight
    assert torch.equal(fc1, parent_fc1[:, : 64 * 49])
    with torch.no_grad():
        (output,) = narrow.eval()([{"image": torch.rand(3, 96, 128) * 255}])
    assert "instances" in output


def test_latency_front_keeps_the_points_nothing_beats():
    points = [
        {"id": 0, "latency_ms": 10.0, "accuracy": 50.0},
        {"id": 1, "latency_ms": 8.0, "accuracy": 40.0},
        {"id": 2, "latency_ms": 12.0, "accuracy": 45.0},  # slower and less accurate than 0
        {"id": 3, "latency_ms": 15.0, "accuracy": 60.0},
        {"id": 4, "latency_ms": None, "accuracy": 99.0},  # not timed
        {"id": 5, "latency_ms": 10.0, "accuracy": 49.0},  # as fast as 0, less accurate
    ]
    assert [p["id"] for p in latency_front(points)] == [1, 0, 3]


def test_candidate_records_keep_their_neck():
    figures = Figures(1.0, 10, 20, 3.0, 1.0, 1.0, {}, 0.0, True)
    record = CandidateRecord(
        1,
        "c",
        0,
        0,
        1,
        0,
        "finetune",
        uniform_prototype(16),
        "c.yaml",
        None,
        figures,
        1.0,
        neck=NeckGenome(64, ("res3", "res4", "res5")),
    )
    restored = CandidateRecord.from_dict(record.to_dict())
    assert restored == record and restored.genome().neck.out_channels == 64


def test_family_member_config_trains_its_backbone_and_neck(tmp_path):
    evaluator = DetectionEvaluator(DetectionSearchConfig(SYNTH_CONFIG))
    spec = CellGenome.from_spec(uniform_prototype(16)).truncated((1, 2, 3, 1)).to_spec("m")
    spec_path = save_attonet_spec(spec, str(tmp_path / "AttoNet-X-G1.yaml"))
    neck = NeckGenome(64, ("res3", "res4", "res5"))
    path = tmp_path / "AttoNet-X-G1_config.yaml"
    path.write_text(evaluator.member_config(spec_path, neck))
    cfg = load_config(str(path))
    assert cfg.MODEL.ATTONET.SPEC == os.path.abspath(spec_path)
    assert neck_of(cfg) == neck and cfg.MODEL.RPN.IN_FEATURES == ["p3", "p4", "p5", "p6"]
    assert cfg.OUTPUT_DIR == os.path.join("output", "AttoNet-X-G1")
    stages = build_model(cfg).backbone.bottom_up.stages
    assert [len(stages[name]) for name in ("res2", "res3", "res4", "res5")] == [1, 2, 3, 1]


def test_latency_is_measured_at_the_named_operating_point(monkeypatch):
    from design_exploration import cli, latency

    measured = []
    monkeypatch.setattr(
        latency,
        "detector_latency_ms",
        lambda cfg, settings: measured.append((cfg, settings)) or 1.0,
    )
    evaluator = DetectionEvaluator(DetectionSearchConfig(SYNTH_CONFIG))
    args = cli.get_parser().parse_args(
        [
            "--budget",
            "1",
            "--task",
            "detection",
            "--latency-at",
            os.path.join(CONFIGS, "atto_maskrcnn_voc.yaml"),
            "--latency-engine",
            "openvino-int8",
            "pytorch",
        ]
    )
    settings = cli.latency_settings(args)
    assert (settings.min_size_test, settings.proposals, settings.detections) == (800, 1000, 100)
    # The first engine is the objective's; the budget holds in both.
    assert (settings.engine, settings.check_engines) == ("openvino-int8", ("pytorch",))
    assert evaluator.latencies_ms(evaluator.base_cfg, settings) == {
        "openvino-int8": 1.0,
        "pytorch": 1.0,
    }
    assert [s.engine for _, s in measured] == ["openvino-int8", "pytorch"]
    measured.clear()
    evaluator.latency_ms(evaluator.base_cfg, settings.in_engine("pytorch"))
    evaluator.latency_ms(evaluator.base_cfg, LatencySettings())
    (at_voc, _), (at_config, _) = measured
    assert at_voc.INPUT.MIN_SIZE_TEST == 800 and at_voc.MODEL.RPN.POST_NMS_TOPK_TEST == 1000
    assert at_voc.INPUT.MAX_SIZE_TEST == settings.max_size_test
    assert at_config.INPUT.MIN_SIZE_TEST == 256  # the search config's own
    # The accuracy side is not touched.
    assert evaluator.base_cfg.INPUT.MIN_SIZE_TEST == 256
    args = cli.get_parser().parse_args(["--budget", "1", "--latency-at", "missing.yaml"])
    with pytest.raises(ValueError, match="--task detection"):
        cli.latency_operating_point(args)
