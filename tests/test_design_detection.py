"""The design explorer on Atto-MaskRCNN: inheritance through FPN, configs, a smoke search."""

import dataclasses
import os

import pytest
import torch
from torch import nn

from detectron2.config import get_cfg
from detectron2.layers import ShapeSpec
from detectron2.modeling import build_backbone, build_model

from atto_detectron import add_attonet_config, save_attonet_spec
from atto_detectron.engine import AttoTrainer

from design_exploration import (
    DETECTOR_FPN_LAYOUT,
    CellGenome,
    DesignExplorer,
    DesignRequirements,
    DetectionEvaluator,
    DetectionSearchConfig,
    ExplorerSettings,
    GeneratorSettings,
    NeckGenome,
    SearchBudget,
    inherit_weights,
    uniform_prototype,
)

from .helpers import CONFIGS, SYNTH_DATASETS, assert_close_to_scale
from .test_design import _randomize_norms

SYNTH_CONFIG = os.path.join(CONFIGS, "synth", "atto_maskrcnn_synth.yaml")


# Small models on a shared 2-core machine train many times faster on one thread.
pytestmark = pytest.mark.usefixtures("one_thread")


class _Detector(nn.Module):
    """Holds a backbone under the name GeneralizedRCNN gives it ("backbone.")."""

    def __init__(self, backbone):
        super().__init__()
        self.backbone = backbone


def _fpn_backbone(spec_path):
    cfg = get_cfg()
    add_attonet_config(cfg)
    cfg.merge_from_file(os.path.join(CONFIGS, "Base-AttoNet-FPN.yaml"))
    cfg.merge_from_list(["MODEL.ATTONET.SPEC", spec_path, "MODEL.ATTONET.NORM", "BN"])
    return _Detector(build_backbone(cfg, ShapeSpec(channels=3)))


def test_widened_backbone_keeps_the_fpn_outputs(tmp_path):
    parent_spec = uniform_prototype(16)
    genome = CellGenome.from_spec(parent_spec)
    child_spec = dataclasses.replace(
        genome.with_integer_genes(genome.integer_genes() + 2), multiplier=(4,) * 16
    ).to_spec("wider")
    torch.manual_seed(0)
    parent = _randomize_norms(
        _fpn_backbone(save_attonet_spec(parent_spec, str(tmp_path / "p.yaml")))
    )
    child = _fpn_backbone(save_attonet_spec(child_spec, str(tmp_path / "c.yaml")))
    report = inherit_weights(
        child, parent.state_dict(), parent_spec, child_spec, DETECTOR_FPN_LAYOUT
    )
    assert not report["fresh"]
    # FPN's lateral convs read the stages' (now wider) outputs.
    lateral = child.backbone.fpn_lateral3.weight
    assert lateral.shape[1] == 32 + 2 and (lateral[:, -2:] == 0).all()
    x = torch.randn(1, 3, 64, 96)
    expected, outputs = parent.eval().backbone(x), child.eval().backbone(x)
    assert list(outputs) == ["p2", "p3", "p4", "p5", "p6"]
    for name in outputs:
        assert_close_to_scale(outputs[name], expected[name], name=name)


def test_candidate_config_scales_the_schedule():
    evaluator = DetectionEvaluator(
        DetectionSearchConfig(
            SYNTH_CONFIG,
            opts=(
                "SOLVER.BASE_LR",
                "0.04",
                "SOLVER.MAX_ITER",
                "900",
                "SOLVER.STEPS",
                "(700, 850)",
                "SOLVER.WARMUP_ITERS",
                "50",
                "INPUT.MIN_SIZE_TEST",
                "256",
                "INPUT.MAX_SIZE_TEST",
                "480",
            ),
            finetune_iters=90,
        )
    )
    finetune = evaluator.candidate_cfg("net.yaml", "finetune", 7, "out")
    assert finetune.MODEL.ATTONET.SPEC == "net.yaml" and finetune.SEED == 7
    assert finetune.SOLVER.MAX_ITER == 90 and finetune.SOLVER.STEPS == (70, 85)
    assert finetune.SOLVER.BASE_LR == pytest.approx(0.02) and finetune.SOLVER.WARMUP_ITERS == 0
    scratch = evaluator.candidate_cfg("net.yaml", "scratch", 7, "out")
    assert scratch.SOLVER.MAX_ITER == 900 and scratch.SOLVER.STEPS == (700, 850)
    assert scratch.SOLVER.BASE_LR == pytest.approx(0.04) and scratch.SOLVER.WARMUP_ITERS == 50
    assert evaluator.input_size == (256, 341)
    with pytest.raises(FileNotFoundError, match="missing.yaml"):
        DetectionEvaluator(DetectionSearchConfig("missing.yaml"))
    with pytest.raises(ValueError, match="MODEL.WEIGHTS"):
        DetectionEvaluator(DetectionSearchConfig(SYNTH_CONFIG, opts=("MODEL.WEIGHTS", "a.pkl")))
    with pytest.raises(ValueError, match="build_attonet_fpn_backbone"):
        DetectionEvaluator(
            DetectionSearchConfig(os.path.join(CONFIGS, "mask_rcnn_R_50_FPN_voc.yaml"))
        )


@pytest.mark.slow
def test_detection_search_smoke(synthetic_voc, tmp_path, monkeypatch):
    config = DetectionSearchConfig(
        SYNTH_CONFIG,
        opts=(
            "DATASETS.TRAIN",
            f"('{SYNTH_DATASETS['train']}',)",
            "DATASETS.TEST",
            f"('{SYNTH_DATASETS['val']}',)",
            "SOLVER.IMS_PER_BATCH",
            "2",
            "DATALOADER.NUM_WORKERS",
            "0",
            "INPUT.MIN_SIZE_TRAIN",
            "(160,)",
            "INPUT.MIN_SIZE_TEST",
            "160",
            "MODEL.RPN.POST_NMS_TOPK_TEST",
            "50",
            "TEST.DETECTIONS_PER_IMAGE",
            "10",
        ),
        scratch_iters=2,
        finetune_iters=1,
    )
    output = str(tmp_path / "search")
    evaluations = []
    evaluate_once = AttoTrainer.test.__func__

    def counted(cls, cfg, model, evaluators=None):
        evaluations.append(cfg.OUTPUT_DIR)
        return evaluate_once(cls, cfg, model, evaluators)

    monkeypatch.setattr(AttoTrainer, "test", classmethod(counted))
    explorer = DesignExplorer(
        DetectionEvaluator(config),
        uniform_prototype(16),
        DesignRequirements(),
        output,
        ExplorerSettings(
            population=1,
            num_elite=2,
            retrain=False,
            generator=GeneratorSettings(depth_change=1, search_neck=True),
        ),
    )
    state = explorer.run(SearchBudget(candidates=1), progress=False)
    prototype, candidate = state.candidates
    # One evaluation per candidate: the trainer's own, after its last iteration.
    assert len(evaluations) == len(set(evaluations)) == 2
    assert candidate.parent == 0 and candidate.schedule == "finetune"
    for record in (prototype, candidate):
        figures = record.figures
        assert 0 <= figures.accuracy <= 100 and "bbox" in figures.metrics
        # The whole detector's complexity, not only the backbone's.
        assert figures.params > 1_000_000 and figures.mult_adds > 0
    # Its weights load into the detector that its spec file configures.
    assert prototype.neck == NeckGenome(96, ("res2", "res3", "res4", "res5"))
    assert candidate.neck is not None and state.generators[0].distribution["depth_choices"]
    cfg = explorer.evaluator.candidate_cfg(
        os.path.join(output, candidate.spec_file),
        "finetune",
        0,
        str(tmp_path / "x"),
        candidate.neck,
    )
    model = build_model(cfg)
    model.load_state_dict(torch.load(os.path.join(output, candidate.weights)))
    assert not os.path.exists(os.path.join(output, "candidates", "0001_finetune"))
