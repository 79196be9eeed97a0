"""Parameter and mult-add counting, NetScore, and the complexity report."""

import json
import os

import pytest
import torch

from detectron2 import model_zoo
from detectron2.config import get_cfg

from atto_detectron import ATTONET_VARIANTS
from atto_detectron.analysis import count_mult_adds, netscore
from atto_detectron.analysis.classifiers import classifier_complexity
from atto_detectron.analysis.detection import detection_complexity, r50_fpn_maskrcnn_config
from atto_detectron.analysis.paper_reference import TABLE2
from atto_detectron.analysis.report import complexity_report, format_report, parse_accuracies
from atto_detectron.config import load_config

from .helpers import CONFIGS, REPO_ROOT

# Counting runs each model once: a second thread gains little there (see one_thread).
pytestmark = pytest.mark.usefixtures("one_thread")


def _hand_count(spec, num_classes=51, size=224):
    """Mult-adds of conv and FC layers, from the spec alone."""
    side = size // 2
    total = 7 * 7 * 3 * spec.stem_channels * side * side
    side //= 2  # max-pool
    channels = spec.stem_channels
    for m in spec.modules:
        out_side = side // m.stride
        total += channels * m.compression * side * side
        total += 9 * m.depthwise * out_side * out_side  # depthwise: 9 per output value
        total += m.depthwise * m.mixing * out_side * out_side
        total += m.mixing * m.out_channels * out_side * out_side
        if m.shortcut == "projection":
            total += channels * m.out_channels * out_side * out_side
        channels, side = m.out_channels, out_side
    return total + channels * num_classes


@pytest.mark.parametrize("variant", list(ATTONET_VARIANTS))
def test_attonet_mult_adds_equal_a_count_from_the_spec(variant):
    spec = ATTONET_VARIANTS[variant]
    result = classifier_complexity(spec.name)
    assert result["mult_adds"] == _hand_count(spec)
    by_layer = result["mult_adds_by_layer"]
    assert sum(by_layer.values()) == result["mult_adds"]
    assert by_layer["FC"] == spec.out_channels * 51


def test_baseline_classifiers_match_table2():
    for name in ["MobileNet-V1", "MobileNet-V2"]:
        result = classifier_complexity(name)
        assert round(result["params"] / 1e6, 2) == TABLE2[name]["params"] / 1e6
        assert abs(result["mult_adds"] / TABLE2[name]["mult_adds"] - 1) < 0.002


def test_netscore_reproduces_table2_from_its_own_figures():
    # Table 2 prints parameters and mult-adds rounded, so NetScores computed from the
    # printed figures agree with the printed NetScores to their last digit (0.01).
    for name, row in TABLE2.items():
        value = netscore(row["top1"], row["params"], row["mult_adds"])
        assert abs(value - row["netscore"]) <= 0.0100001, name
    assert netscore(66.3, 0.32e6, 57.5e6) == pytest.approx(90.2124, abs=1e-4)


def test_netscore_rejects_nonpositive_inputs():
    with pytest.raises(ValueError):
        netscore(0.0, 1e6, 1e9)


def test_parse_accuracies():
    parsed = parse_accuracies("A=73.0, attonet-b=71.1,mobilenet-v1=64.52")
    assert parsed == {"AttoNet-A": 73.0, "AttoNet-B": 71.1, "MobileNet-V1": 64.52}
    with pytest.raises(ValueError, match="NAME=TOP1"):
        parse_accuracies("A73")
    with pytest.raises(ValueError, match="Valid variants"):
        parse_accuracies("Q=50")
    with pytest.raises(ValueError, match="percent"):
        parse_accuracies("A=high")
    with pytest.raises(ValueError, match="'A=150': top-1 is in percent, 0 to 100"):
        parse_accuracies("A=150")


def test_an_image_size_too_small_to_run_is_refused(capsys):
    from atto_detectron.tools import analyze_complexity

    with pytest.raises(SystemExit):
        analyze_complexity.main(["--image-size", "0", "0"])
    assert "--image-size 0 0: H and W are >= 32" in capsys.readouterr().err


@pytest.mark.slow
def test_r50_faster_rcnn_matches_detectron2_reference_counts():
    # Detectron2's tests/test_model_analysis.py: Faster R-CNN R50-FPN, random weights,
    # 800x800 input: 117 G conv mult-adds, 41,699,936 parameters (26,799,296 backbone).
    cfg = get_cfg()
    cfg.merge_from_file(model_zoo.get_config_file("COCO-Detection/faster_rcnn_R_50_FPN_1x.yaml"))
    cfg.MODEL.DEVICE = "cpu"
    from fvcore.nn import parameter_count

    from detectron2.modeling import build_model

    model = build_model(cfg)
    inputs = [{"image": torch.rand(3, 800, 800)}]
    counts = parameter_count(model)
    assert counts[""] == 41_699_936 and counts["backbone"] == 26_799_296
    assert int(count_mult_adds(model, inputs) / 1e9) == 117


def test_workload_is_fixed_at_the_configs_maxima():
    cfg = load_config(os.path.join(CONFIGS, "atto_maskrcnn_voc.yaml"), device="cpu")
    cfg.MODEL.ATTONET.VARIANT = "D"
    cfg.MODEL.RPN.POST_NMS_TOPK_TEST = 300
    cfg.TEST.DETECTIONS_PER_IMAGE = 20
    few = detection_complexity(cfg, image_size=(256, 320))
    cfg.TEST.DETECTIONS_PER_IMAGE = 40
    more = detection_complexity(cfg, image_size=(256, 320))
    assert few["proposals"] == 300 and few["detections"] == 20
    # The mask head's cost is per detection: twice the detections, twice the cost.
    assert more["mult_adds"]["mask head"] == 2 * few["mult_adds"]["mask head"] > 0
    assert more["mult_adds"]["box head"] == few["mult_adds"]["box head"] > 0
    # The box head's cost is per proposal: FC layers (in x out) of 300 proposals.
    head = cfg.MODEL.ROI_BOX_HEAD
    per_roi = cfg.MODEL.FPN.OUT_CHANNELS * 7 * 7 * head.FC_DIM + head.FC_DIM * head.FC_DIM
    per_roi += head.FC_DIM * (21 + 20 * 4)
    assert few["mult_adds"]["box head"] == 300 * per_roi
    parts = few["mult_adds"]
    assert parts["total"] == sum(v for k, v in parts.items() if k != "total")


@pytest.mark.slow
def test_atto_maskrcnn_is_2x_smaller_and_5x_cheaper_than_r50():
    cfg = load_config(os.path.join(CONFIGS, "atto_maskrcnn_voc.yaml"), device="cpu")
    atto = detection_complexity(cfg, image_size=(800, 1067))
    r50 = detection_complexity(r50_fpn_maskrcnn_config(20), image_size=(800, 1067))
    assert atto["params"]["backbone"] == 2_970_339 - 952 * 51 - 51  # Table 1 without the FC
    assert r50["params"]["total"] >= 2 * atto["params"]["total"]
    assert r50["mult_adds"]["total"] >= 5 * atto["mult_adds"]["total"]


@pytest.mark.slow
def test_complexity_tool_writes_json_and_tables(tmp_path, capsys):
    import runpy
    import sys

    out = tmp_path / "report.json"
    argv = sys.argv
    sys.argv = [
        "analyze_complexity.py",
        "--image-size",
        "320",
        "416",
        "--accuracy",
        "D=66.3",
        "--json",
        str(out),
        "MODEL.ATTONET.VARIANT",
        "D",
    ]
    try:
        runpy.run_path(
            os.path.join(REPO_ROOT, "tools", "analyze_complexity.py"), run_name="__main__"
        )
    finally:
        sys.argv = argv
    printed = capsys.readouterr().out
    report = json.loads(out.read_text())
    names = [row["name"] for row in report["classifiers"]]
    assert names == ["MobileNet-V1", "MobileNet-V2", "ShuffleNet-V2"] + [
        f"AttoNet-{v}" for v in "ABCD"
    ]
    row_d = report["classifiers"][-1]
    assert row_d["top1"] == 66.3
    assert row_d["netscore"] == pytest.approx(netscore(66.3, row_d["params"], row_d["mult_adds"]))
    detection = report["detection"]
    assert detection["model"]["image_size"] == [320, 416]
    ratio = detection["ratios"]["mult_adds"]["total"]
    assert ratio == pytest.approx(
        detection["baseline"]["mult_adds"]["total"] / detection["model"]["mult_adds"]["total"]
    )
    assert "| AttoNet-D" in printed and "mask head" in printed and f"{ratio:.1f}x" in printed


@pytest.mark.slow
def test_format_report_mentions_paper_figures():
    report = complexity_report(
        os.path.join(CONFIGS, "atto_maskrcnn_voc.yaml"),
        image_size=(256, 320),
        classifiers=["AttoNet-D"],
    )
    text = format_report(report)
    assert "57.50" in text  # the paper's mult-adds for AttoNet-D, beside the measured 100.09
    assert "18.3M" in text and "195G" in text
