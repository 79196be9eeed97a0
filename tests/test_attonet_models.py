"""The AttoNet classifiers and backbones built from the spec table."""

import math

import pytest
import torch
from torch import nn

from detectron2.layers import FrozenBatchNorm2d
from detectron2.modeling import Backbone

from atto_detectron import ATTONET_VARIANTS, AttoNet, build_attonet_classifier

from .helpers import assert_close_to_scale

# These small models and inputs gain nothing from a second thread (see one_thread).
pytestmark = pytest.mark.usefixtures("one_thread")

# Table 2's parameter counts, and the exact counts of Table 1's clean reading
# (stem + 16 modules + FC, BNs on the stem, module inputs, after compression and mixing).
PAPER_PARAMS_M = {"A": 2.97, "B": 1.87, "C": 1.06, "D": 0.32}
TABLE1_PARAMS = {"A": 2_970_339, "B": 1_870_843, "C": 1_061_438, "D": 319_917}


@pytest.mark.parametrize("variant", list(ATTONET_VARIANTS))
def test_classifier_parameter_counts_match_the_paper(variant):
    model = build_attonet_classifier(variant, num_classes=51)
    total = sum(p.numel() for p in model.parameters())
    final_norm = 2 * ATTONET_VARIANTS[variant].out_channels
    assert total == TABLE1_PARAMS[variant] + final_norm
    assert round(total / 1e6, 2) == PAPER_PARAMS_M[variant]


def test_classifier_forward_shape_and_num_classes():
    model = build_attonet_classifier("attonet-c", num_classes=7).eval()
    logits = model(torch.randn(2, 3, 224, 224))
    assert logits.shape == (2, 7)
    assert torch.isfinite(logits).all()
    assert model.spec.name == "AttoNet-C"


def test_classifier_rejects_unknown_variant():
    with pytest.raises(ValueError, match="Valid variants"):
        build_attonet_classifier("AttoNet-Z")


@pytest.mark.slow
def test_classifier_trains():
    model = build_attonet_classifier("D", num_classes=3)
    x, y = torch.randn(6, 3, 64, 64), torch.tensor([0, 1, 2, 0, 1, 2])
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    losses = []
    for _ in range(15):
        loss = nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


ALL_FEATURES = ["stem", "res2", "res3", "res4", "res5"]


@pytest.mark.parametrize("variant", list(ATTONET_VARIANTS))
@pytest.mark.parametrize("size", [(224, 224), (97, 131)])
def test_backbone_shapes_at_every_stage(variant, size):
    spec = ATTONET_VARIANTS[variant]
    backbone = AttoNet(variant, out_features=ALL_FEATURES).eval()
    assert isinstance(backbone, Backbone)
    assert backbone.size_divisibility == 32
    h, w = size
    with torch.no_grad():
        outputs = backbone(torch.randn(1, 3, h, w))
    assert list(outputs) == ALL_FEATURES
    shapes = backbone.output_shape()
    expected_channels = [spec.stem_channels] + [stage[-1].out_channels for stage in spec.stages]
    for name, channels, stride in zip(ALL_FEATURES, expected_channels, [4, 4, 8, 16, 32]):
        assert shapes[name].channels == channels and shapes[name].stride == stride
        # Every stride-2 layer pads, so sizes round up.
        assert outputs[name].shape == (1, channels, math.ceil(h / stride), math.ceil(w / stride))


def test_backbone_train_mode_backward():
    backbone = AttoNet("B", out_features=["res3", "res5"]).train()
    outputs = backbone(torch.randn(2, 3, 64, 96))
    sum(o.mean() for o in outputs.values()).backward()
    assert all(p.grad is not None for p in backbone.parameters())


def test_stages_after_the_last_output_are_not_built():
    backbone = AttoNet("A", out_features=["res3"])
    assert list(backbone.stages.keys()) == ["res2", "res3"]
    assert list(backbone.output_shape()) == ["res3"]
    backbone = AttoNet("A", out_features=["stem"])
    assert list(backbone.stages.keys()) == []


def test_unknown_output_name():
    with pytest.raises(ValueError, match="res6"):
        AttoNet("A", out_features=["res6"])


def test_backbone_is_scriptable_with_same_outputs():
    backbone = AttoNet("C", out_features=ALL_FEATURES).eval()
    scripted = torch.jit.script(backbone)
    x = torch.randn(1, 3, 75, 101)
    with torch.no_grad():
        expected, actual = backbone(x), scripted(x)
    assert list(actual) == ALL_FEATURES
    for name in ALL_FEATURES:
        torch.testing.assert_close(actual[name], expected[name], rtol=0, atol=0)


@pytest.mark.parametrize(
    "norm,norm_type",
    [
        ("BN", nn.BatchNorm2d),
        ("SyncBN", nn.SyncBatchNorm),
        ("FrozenBN", FrozenBatchNorm2d),
        ("GN", nn.GroupNorm),
    ],
)
def test_norm_options(norm, norm_type):
    backbone = AttoNet("C", out_features=["res5"], norm=norm)
    norms = [
        m
        for m in backbone.modules()
        if isinstance(m, (nn.BatchNorm2d, nn.SyncBatchNorm, FrozenBatchNorm2d, nn.GroupNorm))
    ]
    # Stem + 3 per module.
    assert len(norms) == 1 + 3 * 16
    assert all(type(m) is norm_type for m in norms)
    if norm == "GN":
        # Widths such as 139 or 5 are not multiples of 32: groups divide every width.
        assert all(m.num_channels % m.num_groups == 0 for m in norms)
        assert max(m.num_groups for m in norms) == 32
    out = backbone.train()(torch.randn(2, 3, 64, 64))["res5"]
    assert torch.isfinite(out).all()


def test_no_norm():
    backbone = AttoNet("D", out_features=["res5"], norm="")
    assert not any(
        isinstance(m, (nn.BatchNorm2d, FrozenBatchNorm2d, nn.GroupNorm)) for m in backbone.modules()
    )
    out = backbone(torch.randn(2, 3, 64, 64))["res5"]
    assert out.shape == (2, backbone.output_shape()["res5"].channels, 2, 2)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("norm", ["BN", "FrozenBN", ""])
def test_modules_leave_their_input_unchanged(norm):
    # The modules work in place on their intermediate tensors; the identity shortcut
    # (the input itself) must survive, in training and in inference.
    backbone = AttoNet("D", out_features=["res5"], norm=norm)
    modules = [m for stage in backbone.stages.values() for m in stage]
    assert any(m.shortcut is None for m in modules)
    for training in (True, False):
        for module in modules:
            module.train(training)
            x = torch.randn(2, module.in_channels, 8, 8, requires_grad=training)
            before = x.detach().clone()
            out = module(x)
            assert torch.equal(x.detach(), before)
            if training:
                out.sum().backward()
                assert torch.isfinite(x.grad).all()


@pytest.mark.parametrize("freeze_at", [0, 1, 2, 4, 5])
def test_freeze_at(freeze_at):
    backbone = AttoNet("D", out_features=["res2", "res3", "res4", "res5"], freeze_at=freeze_at)
    parts = [("stem", backbone.stem)] + list(backbone.stages.items())
    for index, (name, part) in enumerate(parts, start=1):
        frozen = freeze_at >= index
        params = list(part.parameters())
        assert params
        assert all(p.requires_grad != frozen for p in params), name
        has_frozen_bn = any(isinstance(m, FrozenBatchNorm2d) for m in part.modules())
        has_bn = any(isinstance(m, nn.BatchNorm2d) for m in part.modules())
        assert has_frozen_bn == frozen and has_bn != frozen, name


def test_cpu_inference_runs_channels_last_with_the_same_outputs():
    torch.manual_seed(0)
    backbone = AttoNet("D", out_features=["stem", "res2", "res3", "res4", "res5"]).eval()
    for module in backbone.modules():  # BN statistics away from the identity
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-1, 1)
            module.running_var.uniform_(0.5, 2)
    x = torch.randn(2, 3, 96, 128)
    with torch.no_grad():
        outputs = backbone(x)
        # The same layers applied in NCHW, as in training.
        expected = {"stem": backbone.stem(x)}
        features = expected["stem"]
        for name, stage in backbone.stages.items():
            features = expected[name] = stage(features)
    for name, value in outputs.items():
        assert value.is_contiguous(memory_format=torch.channels_last), name
        assert not expected[name].is_contiguous(memory_format=torch.channels_last), name
        assert_close_to_scale(value, expected[name], name=name)
    backbone.train()
    assert not backbone(x)["res5"].is_contiguous(memory_format=torch.channels_last)
