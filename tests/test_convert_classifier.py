"""tools/convert_classifier_to_d2.py: classifier weights into Atto-MaskRCNN's backbone."""

import os
import pickle

import pytest
import torch
from torch import nn

from detectron2.checkpoint import DetectionCheckpointer
from detectron2.config import get_cfg
from detectron2.modeling import build_model

from atto_detectron import add_attonet_config, build_attonet_classifier
from atto_detectron.checkpoint import AtomicCheckpointer
from atto_detectron.classification import PIXEL_MEAN_RGB, PIXEL_STD_RGB
from atto_detectron.tools import convert_classifier_to_d2 as convert_tool

from .helpers import CONFIGS, assert_close_to_scale

# These small models and inputs gain nothing from a second thread (see one_thread).
pytestmark = pytest.mark.usefixtures("one_thread")

STEM_CONV = "stem.conv1.weight"


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    """An AttoNet-A classifier with trained-looking norms, saved as train_classifier saves."""
    torch.manual_seed(0)
    model = build_attonet_classifier("A", num_classes=51)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.2, 0.2)
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
                module.num_batches_tracked.fill_(100)
    folder = tmp_path_factory.mktemp("classifier")
    AtomicCheckpointer(model, str(folder)).save("model_final", iteration=99)
    return model.eval(), str(folder / "model_final.pth")


@pytest.fixture(scope="module")
def converted(classifier, tmp_path_factory):
    output = str(tmp_path_factory.mktemp("converted") / "attonet_a.pkl")
    convert_tool.main([classifier[1], output])
    return output


def _atto_maskrcnn(*opts):
    cfg = get_cfg()
    add_attonet_config(cfg)
    cfg.merge_from_file(os.path.join(CONFIGS, "atto_maskrcnn_voc.yaml"))
    cfg.merge_from_list(["MODEL.DEVICE", "cpu", *opts])
    return build_model(cfg).eval()


def _load(model, path):
    """Loads ``path`` through Detectron2's checkpointer; returns what it found incompatible."""
    checkpointer = DetectionCheckpointer(model)
    found = []
    checkpointer._log_incompatible_keys = found.append  # called by Checkpointer.load
    checkpointer.load(path)
    return found[0]


def _without_counters(state_dict):
    return {k: v for k, v in state_dict.items() if not k.endswith("num_batches_tracked")}


def test_converted_file_has_detectron2_format(classifier, converted):
    with open(converted, "rb") as f:
        data = pickle.load(f)
    assert data["__author__"] == "atto_detectron" and data["matching_heuristics"] is True
    expected = _without_counters(classifier[0].backbone.state_dict())
    assert list(data["model"]) == list(expected)  # the backbone's own names, no prefix


@pytest.mark.parametrize(
    "opts",
    [(), ("MODEL.ATTONET.NORM", "FrozenBN", "MODEL.BACKBONE.FREEZE_AT", "2")],
    ids=["config-as-is", "FrozenBN-freeze-at-2"],
)
def test_weights_load_into_atto_maskrcnn_bottom_up_completely(classifier, converted, opts):
    model = _atto_maskrcnn(*opts)
    incompatible = _load(model, converted)
    assert not incompatible.unexpected_keys and not incompatible.incorrect_shapes
    missing = incompatible.missing_keys
    assert missing and not [k for k in missing if k.startswith("backbone.bottom_up.")]
    # What the classifier cannot provide: the FPN and the heads.
    assert all(
        k.startswith(("backbone.fpn_", "proposal_generator.", "roi_heads.")) for k in missing
    )

    expected = _without_counters(classifier[0].backbone.state_dict())
    loaded = _without_counters(model.backbone.bottom_up.state_dict())
    assert sorted(loaded) == sorted(expected)
    for name, value in expected.items():
        if name == STEM_CONV:  # RGB classifier, BGR detector
            value = value.flip(1)
        assert torch.equal(loaded[name], value), name


def test_detector_backbone_computes_the_classifier_features(classifier, converted):
    model = _atto_maskrcnn("MODEL.ATTONET.NORM", "FrozenBN", "MODEL.BACKBONE.FREEZE_AT", "2")
    _load(model, converted)
    image_bgr = torch.randint(0, 256, (1, 3, 64, 96)).float()
    with torch.no_grad():
        # Detectron2's input: BGR, 0..255, normalized by the config's PIXEL_MEAN/STD.
        d2_input = (image_bgr - model.pixel_mean) / model.pixel_std
        d2_features = model.backbone.bottom_up(d2_input)["res5"]
        # The classifier's input: RGB, 0..1, torchvision's statistics.
        mean, std = torch.tensor(PIXEL_MEAN_RGB), torch.tensor(PIXEL_STD_RGB)
        rgb = image_bgr.flip(1) / 255.0
        classifier_input = (rgb - mean[:, None, None]) / std[:, None, None]
        features = classifier[0].backbone(classifier_input)["res5"]
    # The two input normalizations round differently before the first conv.
    assert_close_to_scale(d2_features, features, rel=1e-4)


def test_rgb_conversion_round_trips_into_a_classifier(classifier, tmp_path):
    output = str(tmp_path / "rgb.pkl")
    convert_tool.main([classifier[1], output, "--input-format", "RGB"])
    torch.manual_seed(1)
    target = build_attonet_classifier("A", num_classes=51)
    incompatible = _load(target, output)
    # Name matching puts every backbone weight back; the final norm and FC were left out.
    assert not incompatible.unexpected_keys
    assert {k.split(".")[0] for k in incompatible.missing_keys} == {"final_norm", "fc"}
    expected = _without_counters(classifier[0].backbone.state_dict())
    for name, value in _without_counters(target.backbone.state_dict()).items():
        assert torch.equal(value, expected[name]), name


def test_bad_checkpoints_give_clear_errors_and_write_nothing(tmp_path):
    output = tmp_path / "out.pkl"
    with pytest.raises(SystemExit, match=f"{tmp_path / 'none.pth'} does not exist"):
        convert_tool.main([str(tmp_path / "none.pth"), str(output)])
    detector_like = tmp_path / "detector.pth"
    torch.save({"model": {"roi_heads.box_head.fc1.weight": torch.zeros(2, 2)}}, detector_like)
    with pytest.raises(SystemExit, match=f"{detector_like}: No 'backbone.stem.conv1.weight'"):
        convert_tool.main([str(detector_like), str(output)])
    tensor_file = tmp_path / "tensor.pth"
    torch.save(torch.zeros(3), tensor_file)
    with pytest.raises(SystemExit, match="neither a state dict nor a checkpoint"):
        convert_tool.main([str(tensor_file), str(output)])
    with pytest.raises(SystemExit, match="must end in .pkl"):
        convert_tool.main([str(detector_like), str(tmp_path / "out.pth")])
    assert not output.exists() and not (tmp_path / "out.pth").exists()
