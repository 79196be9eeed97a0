import json
import os
import warnings

import pytest
import torch
import torchvision

from detectron2.modeling import build_model

from atto_detectron.config import load_config
from atto_detectron.deploy import (
    EmptyBatchGroupNorm,
    ExportedModel,
    backbone_input,
    compare_outputs,
    export_model,
    image_tensor,
    outputs_match,
    prepare_for_export,
    reference_outputs,
    synthetic_image,
)
from atto_detectron.deploy.export import _batched_nms_per_index
from atto_detectron.tools import export_model as export_tool

from .helpers import CONFIGS, assert_close_to_scale

# These small models and inputs gain nothing from a second thread (see one_thread).
pytestmark = pytest.mark.usefixtures("one_thread")

D_CONFIG = os.path.join(CONFIGS, "atto_maskrcnn_voc_D.yaml")
# AttoNet-D Mask R-CNN on small images with few proposals and detections (the heads'
# cost does not shrink with the image) keeps exports and checks to seconds.
SMALL = [
    "INPUT.MIN_SIZE_TEST",
    "128",
    "INPUT.MAX_SIZE_TEST",
    "192",
    "MODEL.RPN.POST_NMS_TOPK_TEST",
    "50",
    "TEST.DETECTIONS_PER_IMAGE",
    "10",
]


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
    return prepare_for_export(build_model(load_config(D_CONFIG, SMALL, device="cpu")))


@pytest.fixture(scope="module")
def images():
    # The traced size and another size and aspect ratio: the export must generalize.
    return [image_tensor(synthetic_image(128, 171)), image_tensor(synthetic_image(100, 150, 1))]


def _check(model, exported_dir, images, backbone_only, engine=None):
    exported = ExportedModel(exported_dir, engine=engine)
    for image in images:
        reference = reference_outputs(model, image, backbone_only)
        inputs = backbone_input(model, image) if backbone_only else image
        comparison = compare_outputs(reference, exported(inputs))
        assert outputs_match(comparison), comparison
        if not backbone_only:
            assert len(reference) > 0, "the check needs detections to compare"
    return exported


@pytest.mark.slow
def test_backbone_onnx_export_matches_pytorch(model, images, tmp_path):
    # (TorchScript: test_export_model_cli, whose own check runs the same comparison.)
    export_model(model, images[0], str(tmp_path), "onnx", backbone_only=True)
    for engine in ("onnxruntime", "openvino"):
        exported = _check(model, str(tmp_path), images, backbone_only=True, engine=engine)
        assert exported.engine == engine
        assert exported.info["output_names"] == ["p2", "p3", "p4", "p5", "p6"]


@pytest.mark.slow
@pytest.mark.parametrize(
    "export_format, method, engine",
    [
        ("torchscript", "tracing", None),
        ("torchscript", "scripting", None),
        ("onnx", "tracing", "onnxruntime"),
        ("onnx", "tracing", "openvino"),
    ],
)
def test_mask_rcnn_export_matches_pytorch(model, images, tmp_path, export_format, method, engine):
    # OpenVINO runs the whole detector from the same model.onnx: ROIAlign, NMS, TopK and
    # the data-dependent shapes of post-processing included.
    export_model(model, images[0], str(tmp_path), export_format, method)
    _check(model, str(tmp_path), images, backbone_only=False, engine=engine)


@pytest.mark.slow
def test_onnx_export_without_detections_runs_in_every_engine(images, tmp_path):
    # No box left after the score threshold: both NMS see no boxes. The traced graph has
    # no If around NMS (OpenVINO made up one detection of garbage from that If).
    torch.manual_seed(0)
    opts = SMALL + ["MODEL.ROI_HEADS.SCORE_THRESH_TEST", "1.0"]
    empty = prepare_for_export(build_model(load_config(D_CONFIG, opts, device="cpu")))
    export_model(empty, images[0], str(tmp_path), "onnx")
    import onnx

    op_types = [node.op_type for node in onnx.load(str(tmp_path / "model.onnx")).graph.node]
    assert "If" not in op_types
    # One NMS per class (and per RPN level, up to the same bound), not one over all of
    # them: the coordinate trick's single NMS costs the square of every class's boxes.
    assert op_types.count("NonMaxSuppression") == 2 * empty.roi_heads.num_classes
    reference = reference_outputs(empty, images[0])
    assert len(reference) == 0
    for engine in ("onnxruntime", "openvino"):
        instances = ExportedModel(str(tmp_path), engine=engine)(images[0])
        assert outputs_match(compare_outputs(reference, instances)), engine
        assert instances.pred_masks.shape == (0, 1, 28, 28)


@pytest.mark.parametrize("num_boxes", [0, 1, 300])
def test_per_index_nms_keeps_what_torchvision_keeps(num_boxes):
    generator = torch.Generator().manual_seed(num_boxes)
    corners = torch.rand(num_boxes, 2, generator=generator) * 100
    sizes = torch.rand(num_boxes, 2, generator=generator) * 40 + 1
    boxes = torch.cat([corners, corners + sizes], dim=1)
    scores = torch.rand(num_boxes, generator=generator)
    # Indices 0..4 of a bound of 6: one index without boxes.
    idxs = torch.randint(0, 5, (num_boxes,), generator=generator)
    expected = torchvision.ops.batched_nms(boxes, scores, idxs, 0.5)
    kept = _batched_nms_per_index(6)(boxes, scores, idxs, 0.5)
    assert torch.equal(kept, expected)
    if num_boxes == 300:  # the check needs suppressed boxes in several classes
        assert 0 < len(kept) < num_boxes and len(set(idxs[kept].tolist())) == 5


@pytest.mark.slow
def test_exported_model_rejects_an_engine_of_another_format(model, images, tmp_path):
    export_model(model, images[0], str(tmp_path), "torchscript", backbone_only=True)
    with pytest.raises(ValueError, match="runs with torchscript"):
        ExportedModel(str(tmp_path), engine="openvino")


def test_compare_outputs_reports_a_wrong_export(model, images):
    reference = reference_outputs(model, images[0])
    tampered = reference_outputs(model, images[0])
    tampered.scores = tampered.scores + 1e-2
    assert not outputs_match(compare_outputs(reference, tampered))
    with pytest.raises(ValueError, match="shape"):
        compare_outputs(reference, reference[:1])


def test_export_model_rejects_scripting_to_onnx(model, images, tmp_path):
    with pytest.raises(ValueError, match="TorchScript only"):
        export_model(model, images[0], str(tmp_path), "onnx", method="scripting")
    with pytest.raises(FileNotFoundError, match="export_info.json"):
        ExportedModel(str(tmp_path))


@pytest.mark.slow
def test_export_model_cli(tmp_path):
    cli = export_tool
    out = tmp_path / "ts"
    argv = ["--config-file", D_CONFIG, "--format", "torchscript", "--backbone-only"]
    # 0: exported and checked against PyTorch on two image sizes.
    assert cli.main(argv + ["--output", str(out)] + SMALL) == 0
    info = json.loads((out / "export_info.json").read_text())
    assert (out / "model.ts").is_file()
    assert info["backbone_only"] and info["fused_bn"] and info["size_divisibility"] == 32
    with pytest.raises(SystemExit, match="TorchScript only"):
        cli.main(argv + ["--output", str(out), "--export-method", "scripting", "--format", "onnx"])


@pytest.mark.slow
def test_empty_batch_group_norm_matches_and_runs_empty_in_onnxruntime(tmp_path):
    # The mask head's batch is the detections: an image without any gives an empty one.
    onnxruntime = pytest.importorskip("onnxruntime")
    norm = torch.nn.GroupNorm(4, 12)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
        norm.bias.uniform_(-0.5, 0.5)
    head = torch.nn.Sequential(torch.nn.Conv2d(3, 12, 3, padding=1), EmptyBatchGroupNorm(norm))
    x = torch.randn(5, 3, 14, 14)
    with torch.no_grad():
        expected = norm(head[0](x))
        assert_close_to_scale(head(x), expected)
    path = str(tmp_path / "head.onnx")
    torch.onnx.export(
        head.eval(), (x,), path, input_names=["x"], dynamic_axes={"x": {0: "n"}}, opset_version=16
    )
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    assert session.run(None, {"x": x[:0].numpy()})[0].shape == (0, 12, 14, 14)
    # Another library's kernels: a looser bound, still relative to the magnitude.
    assert_close_to_scale(session.run(None, {"x": x.numpy()})[0], expected, rel=1e-4)
