"""MobileNet-V2 and ShuffleNet-V2 backbones: registry, torchvision's parameters, shapes, norms."""

import os

import pytest
import torch
from torch import nn
from torchvision.models import mobilenet_v2, shufflenet_v2_x1_0

from detectron2.layers import FrozenBatchNorm2d, NaiveSyncBatchNorm, ShapeSpec
from detectron2.modeling import BACKBONE_REGISTRY, build_backbone, build_model

import atto_detectron
from atto_detectron.analysis.complexity import count_parameters
from atto_detectron.config import load_config
from atto_detectron.modeling import StagedBackbone, mobilenet_v2_backbone, shufflenet_v2_backbone

from .helpers import CONFIGS
from .test_detectron2_integration import _train_step_and_infer

# These small models and inputs gain nothing from a second thread (see one_thread).
pytestmark = pytest.mark.usefixtures("one_thread")

FACTORIES = {"mobilenet_v2": mobilenet_v2_backbone, "shufflenet_v2": shufflenet_v2_backbone}
CHANNELS = {"mobilenet_v2": [24, 32, 96, 1280], "shufflenet_v2": [24, 116, 232, 1024]}


def _torchvision_feature_parameters(name):
    if name == "mobilenet_v2":
        return count_parameters(mobilenet_v2(weights=None).features)
    net = shufflenet_v2_x1_0(weights=None)
    return count_parameters(net) - count_parameters(net.fc)


@pytest.mark.parametrize("name", FACTORIES)
def test_builders_are_registered_and_read_their_config_keys(name):
    fpn_builder = getattr(atto_detectron.modeling, f"build_{name}_fpn_backbone")
    assert BACKBONE_REGISTRY.get(f"build_{name}_fpn_backbone") is fpn_builder
    cfg = load_config(os.path.join(CONFIGS, f"synth/mask_rcnn_{name}_FPN_synth.yaml"))
    cfg.MODEL.BACKBONE.NAME = f"build_{name}_backbone"
    cfg.MODEL[name.upper()].OUT_FEATURES = ["res3", "res5"]
    cfg.MODEL[name.upper()].NORM = "GN"
    cfg.MODEL.BACKBONE.FREEZE_AT = 2
    backbone = build_backbone(cfg, ShapeSpec(channels=3))
    assert isinstance(backbone, StagedBackbone)
    assert list(backbone.output_shape()) == ["res3", "res5"]
    assert any(isinstance(m, nn.GroupNorm) for m in backbone.stages["res3"].modules())
    assert not any(isinstance(m, nn.BatchNorm2d) for m in backbone.modules())
    assert not any(p.requires_grad for p in backbone.stem.parameters())
    assert not any(p.requires_grad for p in backbone.stages["res2"].parameters())
    assert all(p.requires_grad for p in backbone.stages["res3"].parameters())
    cfg.MODEL.BACKBONE.FREEZE_AT = 7
    with pytest.raises(ValueError, match="MODEL.BACKBONE.FREEZE_AT.*got 7"):
        build_backbone(cfg, ShapeSpec(channels=3))


@pytest.mark.parametrize("name", FACTORIES)
def test_parameters_are_torchvisions_feature_extractor(name):
    backbone = FACTORIES[name]()
    assert count_parameters(backbone) == _torchvision_feature_parameters(name)


@pytest.mark.parametrize("name", FACTORIES)
def test_outputs_have_the_strides_and_channels_they_declare(name):
    backbone = FACTORIES[name]().eval()
    shapes = backbone.output_shape()
    assert [s.stride for s in shapes.values()] == [4, 8, 16, 32]
    assert [s.channels for s in shapes.values()] == CHANNELS[name]
    with torch.no_grad():
        outputs = backbone(torch.randn(2, 3, 96, 128))
    for key, shape in shapes.items():
        assert tuple(outputs[key].shape) == (
            2,
            shape.channels,
            96 // shape.stride,
            128 // shape.stride,
        )


@pytest.mark.parametrize("name", FACTORIES)
def test_backbones_are_scriptable(name):
    backbone = FACTORIES[name]().eval()
    scripted = torch.jit.script(backbone)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        expected, actual = backbone(x), scripted(x)
    for key in expected:
        torch.testing.assert_close(actual[key], expected[key])


@pytest.mark.parametrize(
    "norm, norm_class", [("FrozenBN", FrozenBatchNorm2d), ("naiveSyncBN", NaiveSyncBatchNorm)]
)
def test_norm_options_replace_every_batch_norm(norm, norm_class):
    backbone = mobilenet_v2_backbone(norm=norm)
    norms = [m for m in backbone.modules() if isinstance(m, (nn.BatchNorm2d, FrozenBatchNorm2d))]
    assert norms and all(isinstance(m, norm_class) for m in norms)


@pytest.mark.slow
@pytest.mark.parametrize("name", FACTORIES)
def test_synth_config_trains_a_step_and_predicts(name):
    cfg = load_config(os.path.join(CONFIGS, f"synth/mask_rcnn_{name}_FPN_synth.yaml"))
    model = _train_step_and_infer(cfg)
    assert isinstance(model.backbone.bottom_up, StagedBackbone)
    # The same FPN and heads as Atto-MaskRCNN's synth config.
    atto = load_config(os.path.join(CONFIGS, "synth/atto_maskrcnn_synth.yaml"))
    assert model.backbone._out_feature_channels["p2"] == atto.MODEL.FPN.OUT_CHANNELS


def test_d2heads_config_has_detectron2s_widths_and_more_parameters():
    narrow = build_model(load_config(os.path.join(CONFIGS, "synth/atto_maskrcnn_synth.yaml")))
    cfg = load_config(os.path.join(CONFIGS, "synth/atto_maskrcnn_synth_d2heads.yaml"))
    wide = build_model(cfg)
    assert (cfg.MODEL.FPN.OUT_CHANNELS, cfg.MODEL.ROI_BOX_HEAD.FC_DIM) == (256, 1024)
    assert cfg.MODEL.ROI_MASK_HEAD.CONV_DIM == 256
    assert wide.roi_heads.box_head.fc1.out_features == 1024
    assert count_parameters(wide.backbone.bottom_up) == count_parameters(narrow.backbone.bottom_up)
    assert count_parameters(wide) > 2 * count_parameters(narrow)
