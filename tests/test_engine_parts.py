import importlib
import json
import logging
import os
import statistics
from collections import OrderedDict

import pytest
import torch

from benchmarks.engines import build_benchmark_model
from benchmarks.roofline_model import POST_PROCESSING, detector_parts

from .helpers import CONFIGS

D_CONFIG = os.path.join(CONFIGS, "atto_maskrcnn_voc_D.yaml")
# AttoNet-D Mask R-CNN with few proposals and detections, on 128-pixel images.
SMALL = ["MODEL.RPN.POST_NMS_TOPK_TEST", "50", "TEST.DETECTIONS_PER_IMAGE", "10"]
STAGES = ["stem", "res2", "res3", "res4", "res5"]
PARTS = STAGES + ["FPN", "RPN", "box head", "mask head"]
# Node types of OpenVINO's CPU plugin that do the work of a part: never unattributed.
WORKING_TYPES = {
    "Convolution",
    "Deconvolution",
    "FullyConnected",
    "MVN",
    "ROIAlign",
    "NonMaxSuppression",
}


def _engine_parts():
    return importlib.import_module("benchmarks.engine_parts")


def _scopes():
    # The scopes of the detector's parts as torch.onnx names them (checked against a
    # real export in test_part_scopes_match_a_real_openvino_model).
    scopes = {f"/backbone/bottom_up/{stage}/": stage for stage in STAGES}
    scopes.update(
        {
            "/backbone/bottom_up/": "stem",
            "/backbone/": "FPN",
            "/proposal_generator/": "RPN",
            "/roi_heads/box_pooler/": "box head",
            "/roi_heads/box_head/": "box head",
            "/roi_heads/box_predictor/": "box head",
            "/roi_heads/mask_pooler/": "mask head",
            "/roi_heads/mask_head/": "mask head",
        }
    )
    return OrderedDict(sorted(scopes.items(), key=lambda item: -len(item[0])))


def test_onnx_scopes_of_the_detector_parts():
    engine_parts = _engine_parts()
    _, model = build_benchmark_model(D_CONFIG, SMALL)
    # AttoNet keeps its stages in a ModuleDict, which is never called: no scope level.
    assert "backbone.bottom_up.stages.res2" in detector_parts(model)["res2"]
    assert engine_parts.onnx_scope(model, "backbone.bottom_up.stages.res2") == (
        "/backbone/bottom_up/res2/"
    )
    # A block of a Sequential is named after it, as torch.onnx names it.
    assert engine_parts.onnx_scope(model, "backbone.bottom_up.stages.res2.0") == (
        "/backbone/bottom_up/res2/res2.0/"
    )
    assert engine_parts.part_scopes(model) == _scopes()


@pytest.mark.parametrize(
    "name, part",
    [
        # Node names of a compiled AttoNet-D export (fp32 and NNCF's INT8 model).
        ("/backbone/bottom_up/stem/conv/Conv", "stem"),
        ("/backbone/bottom_up/res2/res2.1/decompression/Conv", "res2"),
        ("/backbone/bottom_up/res3/res3.0/depthwise/Conv/fq_output_0", "res3"),
        ("/backbone/bottom_up/res2/res2.0/Relu_1/fq_output_0", "res2"),
        ("/backbone/fpn_lateral2/norm/Reshape", "FPN"),
        ("/proposal_generator/rpn_head/anchor_deltas/Conv/WithoutBiases", "RPN"),
        ("/proposal_generator/NonMaxSuppression", "RPN"),
        ("/roi_heads/box_pooler/level_poolers.0/RoiAlign", "box head"),
        ("/roi_heads/box_predictor/cls_score/Gemm/WithoutBiases", "box head"),
        ("/roi_heads/mask_head/mask_fcn1/Conv", "mask head"),
        # The detector's own code around the parts: preprocessing, the ROI heads' NMS.
        ("/Div", POST_PROCESSING),
        ("/Gather_3___Multiply_39650", POST_PROCESSING),
        ("/roi_heads/Sub_2", POST_PROCESSING),
        # Nodes OpenVINO made: no scope.
        ("MVN_1862", None),
        ("Multiply_33974", None),
        ("Gather_36161___/proposal_generator/Clip_10", None),
        ("instances.pred_masks", None),
    ],
)
def test_node_names_map_to_parts(name, part):
    assert _engine_parts().part_of_node(name, _scopes()) == part


def test_nodes_without_scope_take_the_part_of_their_neighbours():
    engine_parts = _engine_parts()
    FQ = "/Unsqueeze_7/fq_output_0"
    Node = engine_parts.RuntimeNode
    graph = [
        Node("image"),
        Node("Multiply_1", fused=("Multiply_1", "/Div"), inputs=("image",)),
        # The padded image, quantized and reordered for the stem's conv (NNCF names the
        # quantizer after the node whose output it quantizes).
        Node("/Unsqueeze_7/fq_output_0", inputs=("Multiply_1",), type="FakeQuantize"),
        Node("/Unsqueeze_7/fq_output_0_abcd_acdb_", inputs=(FQ,), type="Reorder"),
        Node("/backbone/bottom_up/stem/conv/Conv", inputs=(FQ + "_abcd_acdb_",)),
        # A decomposed GroupNorm: MVN and Multiply between two FPN nodes.
        Node("/backbone/fpn_lateral2/norm/Reshape", inputs=("/backbone/bottom_up/stem/conv/Conv",)),
        Node("MVN_2", inputs=("/backbone/fpn_lateral2/norm/Reshape",)),
        Node("Multiply_3", inputs=("MVN_2",)),
        Node("/backbone/fpn_lateral2/norm/Reshape_1", inputs=("Multiply_3",)),
        # Read by two parts, written by one: the part of its inputs.
        Node("ShapeOf_4", inputs=("/backbone/fpn_lateral2/norm/Reshape_1",)),
        Node("/proposal_generator/Gather", inputs=("ShapeOf_4",)),
        Node("/roi_heads/mask_head/Gather", inputs=("ShapeOf_4",)),
        # Read by two parts, reading two parts: unattributed.
        Node("Concat_5", inputs=("/proposal_generator/Gather", "/roi_heads/mask_head/Gather")),
        Node("/roi_heads/box_head/Gather", inputs=("Concat_5",)),
        Node("/roi_heads/mask_head/Slice", inputs=("Concat_5",)),
        Node("Constant_6"),
        # A conversion read by two parts keeps the part of its name.
        Node("/roi_heads/mask_head/Relu_abcd_acdb_", inputs=("Constant_6",), type="Reorder"),
        Node("/roi_heads/box_head/Add", inputs=("/roi_heads/mask_head/Relu_abcd_acdb_",)),
        Node("/proposal_generator/Add", inputs=("/roi_heads/mask_head/Relu_abcd_acdb_",)),
    ]
    attribution = engine_parts.attribute_nodes(graph, _scopes())
    assert attribution["Multiply_1"] == (POST_PROCESSING, "fused layers")
    assert attribution["/backbone/bottom_up/stem/conv/Conv"] == ("stem", "name")
    assert attribution[FQ] == ("stem", "readers")
    assert attribution[FQ + "_abcd_acdb_"] == ("stem", "readers")
    assert attribution["/roi_heads/mask_head/Relu_abcd_acdb_"] == ("mask head", "name")
    assert attribution["MVN_2"] == ("FPN", "readers")
    assert attribution["Multiply_3"] == ("FPN", "readers")
    assert attribution["ShapeOf_4"] == ("FPN", "inputs")
    assert attribution["Concat_5"] == (None, "unattributed")
    assert attribution["Constant_6"] == (None, "unattributed")
    # The image feeds only preprocessing.
    assert attribution["image"] == (POST_PROCESSING, "readers")

    # Every profiled node's time is in one part (or unattributed) and in one rule; a
    # node missing from the runtime model is placed by its name.
    profile = [(node.name, 0.001) for node in graph]
    profile += [("/backbone/bottom_up/res2/res2.0/Relu", 0.5), ("Convert_7", 0.25)]
    by_part, by_rule, unattributed = engine_parts.profile_by_part(
        profile, attribution, _scopes(), PARTS
    )
    assert list(by_part) == PARTS + [POST_PROCESSING, engine_parts.UNATTRIBUTED]
    total = sum(seconds for _, seconds in profile)
    assert sum(by_part.values()) == pytest.approx(total)
    assert sum(by_rule.values()) == pytest.approx(total)
    expected = {
        "stem": 0.003,
        "res2": 0.5,
        "FPN": 0.005,
        "RPN": 0.002,
        "box head": 0.002,
        "mask head": 0.003,
        POST_PROCESSING: 0.002,
        engine_parts.UNATTRIBUTED: 0.252,
    }
    assert by_part == pytest.approx({part: expected.get(part, 0.0) for part in by_part})
    assert list(unattributed) == ["Convert_7", "Concat_5", "Constant_6"]
    assert by_rule["readers"] == pytest.approx(0.005)


def test_a_difference_inside_the_spread_is_not_resolved():
    engine_parts = _engine_parts()
    assert engine_parts.difference([0.010, 0.011, 0.012], [0.005, 0.006, 0.007]) == {
        "seconds": pytest.approx(0.005),
        "resolved": True,
    }
    assert not engine_parts.difference([0.010, 0.011, 0.012], [0.0095, 0.0105, 0.0115])["resolved"]
    assert engine_parts.difference([0.004, 0.005], [0.010, 0.011])["resolved"]
    # One repeat has no spread: nothing is resolved.
    assert not engine_parts.difference([0.010], [0.005])["resolved"]
    assert engine_parts.format_difference({"seconds": 0.0051, "resolved": True}) == "+5.1 ms"
    assert (
        engine_parts.format_difference({"seconds": -0.0004, "resolved": False})
        == "not resolved (-0.4 ms)"
    )


def _entry(model, engine, seconds, openvino=False):
    rows = OrderedDict(
        (part, [s * 1e-3 for s in seconds.get(part, (1.0, 1.1, 1.2))]) for part in PARTS
    )
    rows[POST_PROCESSING] = [0.002, 0.0021, 0.0022]
    if openvino:
        rows["unattributed"] = [0.0, 0.0, 0.0]
        rows["outside the nodes"] = [0.001, 0.001, 0.001]
    rows["total"] = [sum(values) for values in zip(*rows.values())]
    entry = {
        "model": model,
        "config": f"configs/{model}.yaml",
        "engine": engine,
        "short_edge": 800,
        "image_size": [800, 1067],
        "proposals": 1000,
        "detections": 100,
        "seconds": rows,
    }
    if not openvino:
        # Mult-adds and bytes per part: res2 memory-bound (1 GB moved), the rest small.
        entry["counts"] = {
            part: {
                "mult_adds": 1e9 if part == "res2" else 1e8,
                "bytes": 1e9 if part == "res2" else 1e7,
            }
            for part in list(rows)
        }
    return entry


def _report():
    """An engine_parts.json of two models and two engines, with known differences."""
    engine_parts = _engine_parts()
    subject_pytorch = {"res2": (10.0, 11.0, 12.0), "FPN": (2.0, 2.1, 2.2)}
    peer_pytorch = {"res2": (5.0, 6.0, 7.0), "FPN": (4.0, 4.1, 4.2)}
    subject_int8 = {"res2": (3.0, 3.2, 3.4)}
    peer_int8 = {"res2": (3.1, 3.3, 3.5)}
    runs = OrderedDict(
        [
            ("AttoNet-A/pytorch/800", _entry("AttoNet-A", "pytorch", subject_pytorch)),
            (
                "AttoNet-A/openvino-int8/800",
                _entry("AttoNet-A", "openvino-int8", subject_int8, True),
            ),
            ("ShuffleNetV2-FPN/pytorch/800", _entry("ShuffleNetV2-FPN", "pytorch", peer_pytorch)),
            (
                "ShuffleNetV2-FPN/openvino-int8/800",
                _entry("ShuffleNetV2-FPN", "openvino-int8", peer_int8, True),
            ),
        ]
    )
    limits = {
        "gemm": {"flop_per_s": 100e9, "size": 4096, "seconds": [1.0]},
        "memory": {"bytes_per_s": 10e9, "copy_bytes_per_s": 10e9, "add_bytes_per_s": 9e9},
    }
    engine_parts.add_rooflines(runs, limits)
    return {
        "command": "python -m benchmarks.engine_parts --sizes 800",
        "machine": {
            "cpu": "a CPU",
            "threads": 2,
            "cpu_count": 2,
            "torch": "2.3.1",
            "openvino": "2026.4",
            "allocator": "keep-freed",
        },
        "opts": [],
        "clock": "wall",
        "repeats": 3,
        "warmup": 1,
        "subject": "AttoNet-A",
        "calibration": {"AttoNet-A": "4 images", "ShuffleNetV2-FPN": "4 images"},
        "limits": limits,
        "runs": runs,
    }


def test_section_says_where_the_subject_is_slower_and_what_is_not_resolved():
    engine_parts = _engine_parts()
    report = _report()
    roofline = report["runs"]["AttoNet-A/pytorch/800"]["roofline"]
    assert "counts" not in report["runs"]["AttoNet-A/pytorch/800"]
    assert roofline["res2"]["bound_by"] == "memory" and roofline["res2"]["bound_s"] == 0.1
    assert roofline["res2"]["x_from_roofline"] == pytest.approx(0.011 / 0.1)

    text = engine_parts.format_markdown(report)
    # Median [min, max] per part; the eager bound next to each model.
    assert "| res2 | 11.0 [10.0, 12.0] | 100.0 memory, 0.1x | 6.0 [5.0, 7.0] |" in text
    assert "| unattributed | 0.0 [0.0, 0.0] | 0.0 [0.0, 0.0] |" in text
    assert "### Shortest edge 800 (800 x 1067), openvino-int8" in text
    # res2 is slower in eager (ranges apart), not resolved in INT8 (ranges overlap); the
    # eager difference splits into work (equal bounds here) and distance from the bound.
    assert (
        "- res2: pytorch +5.0 ms, openvino-int8 not resolved (-0.1 ms); eager +5.0 = work "
        "+0.0 (100.0 memory, 100.0 memory) + distance +5.0 (0.1x, 0.1x)." in text
    )
    # FPN is faster (resolved), the others tie: none is called slower.
    assert "- FPN" not in text and "- stem" not in text
    assert "Slower in no engine: stem, res3, res4, res5, FPN, RPN, box head, mask head" in text
    assert "**AttoNet-A against ShuffleNetV2-FPN** (total: pytorch not resolved" in text

    # Without the subject among the models, tables only.
    report["subject"] = "AttoNet-B"
    text = engine_parts.format_markdown(report)
    assert "| res2 |" in text and "against" not in text


def test_section_gives_what_int8_gains_per_part():
    engine_parts = _engine_parts()
    report = _report()
    # AttoNet-A in OpenVINO fp32 too: res2 twice its INT8 time, every other part the same.
    report["runs"]["AttoNet-A/openvino/800"] = _entry(
        "AttoNet-A", "openvino", {"res2": (6.0, 6.4, 6.8)}, True
    )
    text = engine_parts.format_markdown(report)
    assert "### INT8 gain per part at shortest edge 800" in text
    # ShuffleNetV2-FPN ran no fp32 OpenVINO: no column.
    assert "| part | AttoNet-A |" in text
    assert "| res2 | 2.00x |" in text and "| FPN | 1.00x |" in text
    # Every part but res2 gained nothing: their INT8 time over the INT8 total.
    int8 = report["runs"]["AttoNet-A/openvino-int8/800"]["seconds"]
    unchanged = sum(
        statistics.median(seconds)
        for part, seconds in int8.items()
        if part not in ("res2", "unattributed", "outside the nodes", "total")
    )
    share = 100 * unchanged / statistics.median(int8["total"])
    assert f"sped up less than 1.25x: AttoNet-A {share:.0f}%." in text
    # Without an fp32 OpenVINO run, no such section.
    del report["runs"]["AttoNet-A/openvino/800"]
    assert "INT8 gain per part" not in engine_parts.format_markdown(report)


def test_from_json_rewrites_only_its_section(tmp_path):
    engine_parts = _engine_parts()
    json_path, docs = tmp_path / "engine_parts.json", tmp_path / "BENCHMARKS.md"
    json_path.write_text(json.dumps(_report()))
    before = "# Benchmarks\n\nHand-written.\n\n<!-- engine-parts:begin -->\n"
    after = "\n<!-- engine-parts:end -->\n\n## Other\n\nkept\n"
    docs.write_text(before + "an old table" + after)
    engine_parts.main(["--from-json", str(json_path), "--docs", str(docs)])
    text = docs.read_text()
    assert text.startswith(before) and text.endswith(after)
    section = text[len(before) : -len(after)]
    assert section == engine_parts.format_markdown(json.loads(json_path.read_text()))
    engine_parts.main(["--from-json", str(json_path), "--docs", str(docs)])
    assert docs.read_text() == text
    # --docs-section names another section, appended where it is absent.
    engine_parts.main(
        ["--from-json", str(json_path), "--docs", str(docs), "--docs-section", "parts-avx512"]
    )
    assert docs.read_text().startswith(text.rstrip("\n"))
    assert "<!-- parts-avx512:begin -->\n" + section + "\n<!-- parts-avx512:end -->" in (
        docs.read_text()
    )


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """AttoNet-D at 128 pixels in PyTorch eager, OpenVINO and OpenVINO INT8, timed once."""
    engine_parts = _engine_parts()
    args = engine_parts.get_parser().parse_args(
        ["--models", "AttoNet-D", "--sizes", "128", "--repeats", "2", "--warmup", "1"]
        + ["--opts"]
        + SMALL
    )
    logger = logging.getLogger("test_engine_parts")
    work_dir = str(tmp_path_factory.mktemp("engine_parts"))
    runs, _ = engine_parts.prepare_runs(args, logger, work_dir)
    entries = engine_parts.measure_runs(args, runs, logger)
    return args, runs, entries


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["openvino", "openvino-int8"])
def test_part_scopes_match_a_real_openvino_model(prepared, engine):
    engine_parts = _engine_parts()
    _, runs, _ = prepared
    timer = runs[("AttoNet-D", engine)][1]
    graph = engine_parts.runtime_graph(timer.compiled)
    names = [node.name for node in graph]
    assert timer.scopes == _scopes()
    for scope in timer.scopes:
        assert any(name.startswith(scope) for name in names), scope
    # Some nodes carry no scope and are placed through the graph, each rule used.
    rules = {rule for _, rule in timer.attribution.values()}
    assert {"name", "fused layers", "readers"} <= rules
    assert any(not name.startswith("/") for name in names)
    # The nodes that do a part's work all have a part.
    for node in graph:
        if node.type in WORKING_TYPES:
            assert timer.attribution[node.name][0] is not None, node
    # A conversion for the stem's conv (the padded image reordered, and quantized in
    # INT8) belongs to the stem.
    stem_conv = next(n for n in graph if n.name.startswith("/backbone/bottom_up/stem/"))
    for name in stem_conv.inputs:
        node = next(n for n in graph if n.name == name)
        if node.type in engine_parts.CONVERSIONS:
            assert timer.attribution[name] == ("stem", "readers"), node
    if engine == "openvino-int8":
        # NNCF's quantizers carry the scope of the node they quantize the output of, or
        # of the node they quantize the input of; they all belong to a part.
        profiled = [info.node_name for info in timer.request.get_profiling_info()]
        assert any("/fq_output_" in name for name in profiled)
        quantizers = [node for node in graph if node.type == "FakeQuantize"]
        assert quantizers
        for node in quantizers:
            assert timer.attribution[node.name][0] not in (None, POST_PROCESSING), node


@pytest.mark.slow
def test_parts_add_up_to_each_run(prepared):
    engine_parts = _engine_parts()
    args, runs, entries = prepared
    eager = entries["AttoNet-D/pytorch/128"]
    assert list(eager["seconds"]) == PARTS + [POST_PROCESSING, "total"]
    for engine in ("openvino", "openvino-int8"):
        entry = entries[f"AttoNet-D/{engine}/128"]
        rows = entry["seconds"]
        assert list(rows) == PARTS + [POST_PROCESSING, "unattributed", "outside the nodes", "total"]
        assert entry["profiled_nodes"] > 100
        for k in range(args.repeats):
            parts = [rows[p][k] for p in PARTS + [POST_PROCESSING, "unattributed"]]
            # The parts, unattributed included, hold every profiled node's time; with the
            # pasting after the graph and the rest of the call, the call's wall time.
            assert sum(parts) - entry["pasting_s"][k] == pytest.approx(entry["profiled_s"][k])
            rules = [entry["rules_s"][rule][k] for rule in engine_parts.RULES]
            assert sum(rules) == pytest.approx(entry["profiled_s"][k])
            assert sum(parts) + rows["outside the nodes"][k] == pytest.approx(rows["total"][k])
            for part in PARTS:
                assert rows[part][k] > 0, (engine, part)
            # One run's node times (differences of running totals, each node within a
            # few microseconds) fit in the wall time of the call that ran them; the
            # running means themselves, which include the slower first runs, do not.
            assert rows["outside the nodes"][k] > -0.002, engine
        timer = runs[("AttoNet-D", engine)][1]
        assert timer.inferences == args.warmup + args.repeats


@pytest.mark.slow
def test_engine_parts_command_writes_json_and_docs(tmp_path, one_thread):
    # The OpenVINO engines are exercised by the fixture above; here the command itself:
    # the machine's limits, the eager roofline, the JSON and the docs section.
    engine_parts = _engine_parts()
    docs = tmp_path / "BENCHMARKS.md"
    report = engine_parts.main(
        ["--models", "AttoNet-D", "ShuffleNetV2-FPN", "--subject", "AttoNet-D"]
        + ["--sizes", "96", "--engines", "pytorch", "--repeats", "2", "--warmup", "1"]
        + ["--threads", str(torch.get_num_threads()), "--allocator", "default"]
        + ["--gemm-size", "256", "--stream-mb", "8", "--peak-repeats", "1"]
        + ["--output-dir", str(tmp_path), "--docs", str(docs), "--opts"]
        + SMALL
    )
    saved = json.loads((tmp_path / "engine_parts.json").read_text())
    assert list(saved["runs"]) == ["AttoNet-D/pytorch/96", "ShuffleNetV2-FPN/pytorch/96"]
    assert saved["machine"]["openvino"] and saved["limits"]["gemm"]["flop_per_s"] > 0
    eager = saved["runs"]["AttoNet-D/pytorch/96"]
    assert eager["proposals"] == 50 and eager["detections"] == 10
    assert list(eager["roofline"]) == list(eager["seconds"])
    assert all(row["bound_s"] > 0 for row in eager["roofline"].values())
    text = docs.read_text()
    assert (
        "<!-- engine-parts:begin -->" in text and "**AttoNet-D against ShuffleNetV2-FPN**" in text
    )
    # The docs are regenerated from the JSON alone.
    again = tmp_path / "again.md"
    engine_parts.main(["--from-json", str(tmp_path / "engine_parts.json"), "--docs", str(again)])
    assert again.read_text() == text
    assert report["runs"].keys() == saved["runs"].keys()
