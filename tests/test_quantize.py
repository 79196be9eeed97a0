import json
import os

import pytest
import torch

from detectron2.modeling import build_model

from atto_detectron.config import load_config
from atto_detectron.deploy import (
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
from atto_detectron.deploy.calibration import calibration_images
from atto_detectron.deploy.int8_placement import int8_agreement, quantization_placement
from atto_detectron.deploy.quantize import (
    INT8_ENGINES,
    export_engines,
    int8_dir,
    quantize_export,
)
from atto_detectron.tools import export_model as export_tool
from benchmarks.engines import build_benchmark_model

from .helpers import SYNTH_DATASETS
from .test_export import D_CONFIG, SMALL

pytest.importorskip("openvino")
pytest.importorskip("nncf")

MODEL_FILE = {"onnxruntime-int8": "model.onnx", "openvino-int8": "model.xml"}
# AttoNet-D: 3 + 4 + 6 + 3 AttoModules; the first of each stage has a projection shortcut.
ATTONET_D_BLOCKS = 16
SYNTH_OPTS = [
    "DATASETS.TRAIN",
    f"('{SYNTH_DATASETS['train']}',)",
    "DATASETS.TEST",
    f"('{SYNTH_DATASETS['val']}',)",
    "DATALOADER.NUM_WORKERS",
    "0",
]


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return prepare_for_export(build_model(load_config(D_CONFIG, SMALL, device="cpu")))


def _noise(seed):
    return image_tensor(synthetic_image(128, 171, seed))


@pytest.fixture(scope="module")
def backbone_int8(model, tmp_path_factory):
    """A backbone-only ONNX export of AttoNet-D + FPN and its two INT8 models."""
    folder = str(tmp_path_factory.mktemp("backbone_int8"))
    export_model(model, _noise(0), folder, "onnx", backbone_only=True)
    inputs = [backbone_input(model, _noise(seed)) for seed in (10, 11, 12)]
    return folder, quantize_export(folder, inputs, calibration="3 noise images")


def test_calibration_images_are_evenly_spaced_train_images_at_test_size(synthetic_voc):
    cfg = load_config(D_CONFIG, SMALL + SYNTH_OPTS, device="cpu")
    images = calibration_images(cfg, 3)
    assert len(images) == 3
    for image in images:
        # ResizeShortestEdge(128, 192): the shorter side 128 unless the longer hits 192.
        assert image.shape[0] == 3 and image.dtype == torch.float32
        assert min(image.shape[1:]) == 128 or max(image.shape[1:]) == 192
    again = calibration_images(cfg, 3)
    assert all(torch.equal(a, b) for a, b in zip(images, again))
    assert len(calibration_images(cfg, 100)) == 8  # all the set has
    with pytest.raises(ValueError, match="DATASETS.TRAIN 'nope' is not a registered"):
        calibration_images(load_config(D_CONFIG, ["DATASETS.TRAIN", "('nope',)"]), 2)


@pytest.mark.slow
def test_int8_backbones_run_and_stay_close_to_fp32(model, backbone_int8):
    # Random weights make a harsh case (no trained, bounded activations; 64 quantizers in
    # a row): the relative error of the FPN outputs stays below 0.5 (0.2-0.4 measured),
    # where wrong scales or a lost tensor give 1 or more. The AP of a trained model is the
    # real measure (tools/export_model.py --int8 --run-eval).
    folder, folders = backbone_int8
    assert set(folders) == set(INT8_ENGINES)
    for seed in (0, 1):
        reference = reference_outputs(model, _noise(seed), backbone_only=True)
        for engine, int8_folder in folders.items():
            exported = ExportedModel(int8_folder)
            assert exported.engine == engine[: -len("-int8")]
            errors = int8_agreement(reference, exported(backbone_input(model, _noise(seed))))
            assert set(errors) == {"p2", "p3", "p4", "p5", "p6"}
            assert max(errors.values()) < 0.5, (engine, errors)
    with open(os.path.join(folders["openvino-int8"], "export_info.json")) as f:
        info = json.load(f)
    assert info["format"] == "openvino" and info["backbone_only"]
    assert info["quantization"]["calibration"] == "3 noise images"
    engines = export_engines(folder)
    assert engines["openvino-int8"] == (folders["openvino-int8"], "openvino")
    assert set(engines) == {"onnxruntime", "openvino", *INT8_ENGINES}


@pytest.mark.parametrize("engine", INT8_ENGINES)
def test_int8_placement_quantizes_each_conv_input_once(backbone_int8, engine):
    # Per AttoModule: int8 weights and inputs in every conv; 4 quantized tensors feed its
    # convs (the module input after BN + ReLU, shared by compression and projection, and
    # one per internal edge); nothing quantized for BN, ReLU or the residual Add.
    folder = backbone_int8[1][engine]
    placement = quantization_placement(os.path.join(folder, MODEL_FILE[engine]))
    blocks = placement["blocks"]
    assert len(blocks) == ATTONET_D_BLOCKS
    for name, block in blocks.items():
        projection = name.endswith(".0")
        assert block["convs"] == (5 if projection else 4), name
        assert block["int8_convs"] == block["convs"], (name, block)
        assert block["conv_input_quantizers"] == 4, (name, block)
        assert block["quantized_elementwise_inputs"] == 0, (name, block)
        if engine == "onnxruntime-int8":
            # onnxruntime's int8 conv (QLinearConv) also quantizes its output.
            assert block["quantize_ops"] == block["convs"] + 1, (name, block)


@pytest.mark.slow
def test_quantize_rejects_a_torchscript_export(model, tmp_path):
    export_model(model, _noise(0), str(tmp_path), "torchscript", backbone_only=True)
    with pytest.raises(ValueError, match="--format onnx"):
        quantize_export(str(tmp_path), [backbone_input(model, _noise(0))])
    with pytest.raises(ValueError, match="INT8 engine must be one of"):
        int8_dir(str(tmp_path), "tensorrt-int8")


@pytest.mark.slow
def test_int8_detectors_keep_predictors_and_post_processing_fp32(tmp_path):
    # The benchmark's fixed workload: zero box regression and equal scores, so boxes,
    # classes and scores come from the fp32 layers and post-processing alone and must
    # equal those of the fp32 model in the same runtime (which breaks the ties of equal
    # scores its own way, so not PyTorch's); the masks come through the int8 network.
    _, benchmark_model = build_benchmark_model(D_CONFIG, SMALL)
    export_model(prepare_for_export(benchmark_model), _noise(0), str(tmp_path), "onnx")
    folders = quantize_export(str(tmp_path), [_noise(seed) for seed in (10, 11)])
    for engine, folder in folders.items():
        placement = quantization_placement(os.path.join(folder, MODEL_FILE[engine]))
        assert placement["fp32_layers"] == [] and placement["fp32_post_processing"], engine
        assert len(placement["blocks"]) == ATTONET_D_BLOCKS
        fp32 = ExportedModel(str(tmp_path), engine=engine[: -len("-int8")])
        int8 = ExportedModel(folder)
        for seed in (0, 1):
            reference, instances = fp32(_noise(seed)), int8(_noise(seed))
            assert len(reference) == len(instances) == 10
            comparison = compare_outputs(reference, instances)
            masks = comparison.pop("pred_masks")
            assert outputs_match(comparison), (engine, comparison)
            assert masks[0] < 0.05, (engine, masks)  # 0.001-0.002 measured
            assert int8_agreement(reference, instances)["matched"] == 1.0


@pytest.mark.slow
def test_run_eval_writes_ap_per_engine(synthetic_voc, tmp_path):
    # TorchScript, one engine (the ONNX engines: test_run_eval_with_int8_engines).
    cli = export_tool
    out = tmp_path / "ts"
    argv = ["--config-file", D_CONFIG, "--format", "torchscript", "--no-check", "--run-eval"]
    assert cli.main(argv + ["--output", str(out)] + SMALL + SYNTH_OPTS) == 0
    report = json.loads((out / "evaluation.json").read_text())
    assert report["dataset"] == SYNTH_DATASETS["val"] and report["images"] == 8
    # PyTorch first, on the same images through the same pre- and post-processing.
    assert list(report["engines"]) == ["pytorch", "torchscript"]
    record = report["engines"]["torchscript"]
    assert set(record["APd"]) == set(record["APm"]) == {"AP", "AP50", "AP75"}
    assert record["folder"] == "." and record["seconds_per_image"] > 0
    pytorch = report["engines"]["pytorch"]
    for label in ("APd", "APm"):
        for key, value in record["minus_pytorch"][label].items():
            assert value == pytest.approx(record[label][key] - pytorch[label][key]), key


@pytest.mark.slow
def test_run_eval_with_int8_engines(synthetic_voc, tmp_path):
    cli = export_tool
    out = tmp_path / "onnx_int8"
    argv = ["--config-file", D_CONFIG, "--format", "onnx", "--no-check", "--run-eval"]
    argv += ["--int8", "--calibration-images", "2", "--output", str(out)]
    assert cli.main(argv + SMALL + SYNTH_OPTS) == 0
    report = json.loads((out / "evaluation.json").read_text())
    assert set(report["engines"]) == {"pytorch", "onnxruntime", "openvino", *INT8_ENGINES}
    for engine, record in report["engines"].items():
        assert set(record["APd"]) == set(record["APm"]) == {"AP", "AP50", "AP75"}, engine
    # Random weights: no AP to speak of, but both fp32 engines run the same model.
    for label in ("APd", "APm"):
        ours, theirs = (report["engines"][e][label] for e in ("onnxruntime", "openvino"))
        assert ours == pytest.approx(theirs, abs=0.1), label
    for engine in INT8_ENGINES:
        assert report["engines"][engine]["folder"] == engine
        info = json.loads((out / engine / "export_info.json").read_text())
        assert info["quantization"]["calibration_inputs"] == 2
        assert SYNTH_DATASETS["train"] in info["quantization"]["calibration"]


def test_export_model_cli_checks_int8_and_run_eval_options(tmp_path):
    cli = export_tool
    argv = ["--config-file", D_CONFIG, "--output", str(tmp_path)]
    with pytest.raises(SystemExit, match="add --format onnx"):
        cli.main(argv + ["--format", "torchscript", "--int8"])
    with pytest.raises(SystemExit, match="drop --backbone-only"):
        cli.main(argv + ["--format", "onnx", "--backbone-only", "--run-eval"])
    with pytest.raises(SystemExit, match="--calibration-images must be >= 1"):
        cli.main(argv + ["--format", "onnx", "--int8", "--calibration-images", "0"])
