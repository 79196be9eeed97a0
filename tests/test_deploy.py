import copy
import os
import subprocess
import sys

import pytest
import torch
from torch import nn

from detectron2.layers import Conv2d, FrozenBatchNorm2d, ShapeSpec
from detectron2.modeling import build_model
from detectron2.modeling.backbone import build_resnet_backbone

from atto_detectron import AttoNet, build_attonet_classifier
from atto_detectron.analysis.detection import r50_fpn_maskrcnn_config
from atto_detectron.config import load_config
from atto_detectron.deploy import FUSABLE_NORMS, fuse_bn, fuse_conv_bn

from .helpers import CONFIGS, REPO_ROOT, SCALE_TOLERANCE, assert_close_to_scale

# These small models and inputs gain nothing from a second thread (see one_thread).
pytestmark = pytest.mark.usefixtures("one_thread")

# Outputs of a fused model equal the original's up to float32 rounding, which is relative
# to the outputs' magnitude (helpers.SCALE_TOLERANCE says why and how much).


def _randomize_batch_norms(model: nn.Module) -> nn.Module:
    # Fresh BNs are the identity in eval mode (mean 0, var 1, weight 1, bias 0), which a
    # fusion that dropped the BN would pass: give them statistics and affine parameters.
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, FUSABLE_NORMS):
                n = module.num_features
                module.running_mean.copy_(torch.rand(n, generator=generator) * 2 - 1)
                module.running_var.copy_(torch.rand(n, generator=generator) * 1.5 + 0.5)
                module.weight.copy_(torch.rand(n, generator=generator) + 0.5)
                module.bias.copy_(torch.rand(n, generator=generator) - 0.5)
    return model.eval()


def _count(model, kinds):
    return sum(isinstance(m, kinds) for m in model.modules())


def test_fuse_conv_bn_folds_the_norm_into_the_conv():
    conv = _randomize_batch_norms(Conv2d(4, 6, 3, padding=1, bias=False, norm=nn.BatchNorm2d(6)))
    fused = fuse_conv_bn(conv)
    x = torch.randn(2, 4, 9, 9)
    assert fused.norm is None and fused.bias is not None
    assert conv.norm is not None, "the original conv must stay as it was"
    assert_close_to_scale(fused(x), conv(x))


def test_fuse_conv_bn_refuses_training_mode_and_other_norms():
    with pytest.raises(ValueError, match="eval"):
        fuse_conv_bn(Conv2d(4, 6, 1, norm=nn.BatchNorm2d(6)).train())
    with pytest.raises(TypeError, match="GroupNorm"):
        fuse_conv_bn(Conv2d(4, 6, 1, norm=nn.GroupNorm(2, 6)).eval())


def test_fused_attonet_backbone_matches():
    model = _randomize_batch_norms(AttoNet("D", out_features=["res2", "res3", "res4", "res5"]))
    fused = fuse_bn(model)
    # The stem conv and each module's compression and mixing convs lose their BN; the
    # 16 pre-activation BNs follow an addition and stay.
    assert _count(model, nn.BatchNorm2d) == 1 + 16 * 3
    assert _count(fused, nn.BatchNorm2d) == 16
    x = torch.randn(1, 3, 96, 128)
    with torch.no_grad():
        expected, actual = model(x), fused(x)
    for name in expected:
        assert_close_to_scale(actual[name], expected[name], name=name)


def test_fused_attonet_classifier_matches():
    model = _randomize_batch_norms(build_attonet_classifier("C", num_classes=7))
    fused = fuse_bn(model)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert_close_to_scale(fused(x), model(x))
    assert _count(fused, nn.BatchNorm2d) == 16 + 1  # pre-activation BNs + the final BN


def test_fused_resnet_backbone_matches():
    # Detectron2's ResNet carries its norms the same way (FrozenBN in the model zoo).
    cfg = r50_fpn_maskrcnn_config()
    cfg.MODEL.RESNETS.DEPTH = 18
    cfg.MODEL.RESNETS.RES2_OUT_CHANNELS = 64
    model = _randomize_batch_norms(build_resnet_backbone(cfg, ShapeSpec(channels=3)))
    assert _count(model, FrozenBatchNorm2d) > 0
    fused = fuse_bn(model)
    assert _count(fused, FUSABLE_NORMS) == 0
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        expected, actual = model(x), fused(x)
    for name in expected:
        assert_close_to_scale(actual[name], expected[name], name=name)


def test_fused_mask_rcnn_matches():
    cfg = load_config(
        os.path.join(CONFIGS, "atto_maskrcnn_voc_D.yaml"),
        ["MODEL.RPN.POST_NMS_TOPK_TEST", "100", "TEST.DETECTIONS_PER_IMAGE", "20"],
        device="cpu",
    )
    cfg.MODEL.ATTONET.NORM = "SyncBN"  # the config's norm, which load_config maps on CPU
    model = _randomize_batch_norms(build_model(cfg))
    assert _count(model, nn.SyncBatchNorm) > 0
    fused = fuse_bn(model)
    assert _count(fused, nn.SyncBatchNorm) == 16
    image = torch.rand(3, 96, 128, generator=torch.Generator().manual_seed(0)) * 255
    inputs = [{"image": image, "height": 96, "width": 128}]
    with torch.no_grad():
        expected = model(inputs)[0]["instances"]
        actual = fused(inputs)[0]["instances"]
    assert len(expected) > 0, "the test needs detections to compare"
    assert len(actual) == len(expected)
    assert_close_to_scale(actual.pred_boxes.tensor, expected.pred_boxes.tensor, name="boxes")
    assert_close_to_scale(actual.scores, expected.scores, name="scores")
    torch.testing.assert_close(actual.pred_classes, expected.pred_classes)
    torch.testing.assert_close(actual.pred_masks, expected.pred_masks)


@pytest.mark.parametrize("damage", ["epsilon off by 1e-3", "running mean off by 1%"])
def test_a_slightly_wrong_fusion_fails_the_tolerance(damage, monkeypatch):
    from atto_detectron.deploy import fusion

    correct = fusion.fuse_conv_bn_eval

    def wrong(conv, bn):
        bn = copy.deepcopy(bn)
        if damage.startswith("epsilon"):
            bn.eps += 1e-3
        else:
            bn.running_mean.mul_(0.99)
        return correct(conv, bn)

    monkeypatch.setattr(fusion, "fuse_conv_bn_eval", wrong)
    model = _randomize_batch_norms(AttoNet("D", out_features=["res5"]))
    x = torch.randn(1, 3, 96, 128)
    with torch.no_grad():
        expected, actual = model(x)["res5"], fuse_bn(model)(x)["res5"]
    with pytest.raises(AssertionError, match="exceeds"):
        assert_close_to_scale(actual, expected)
    # ... by far: the tolerance is not near the damage it has to catch.
    error = (actual - expected).abs().max() / expected.abs().max()
    assert error > 20 * SCALE_TOLERANCE


@pytest.mark.slow
@pytest.mark.parametrize(
    "variable, value",
    [("ATEN_CPU_CAPABILITY", "default"), ("ONEDNN_MAX_CPU_ISA", "AVX2")],
)
def test_fusion_numerics_hold_on_another_kernel_path(variable, value):
    # The same machine with other float32 kernels: PyTorch's vectorized ops without AVX2
    # or AVX-512, or oneDNN's convolutions limited to AVX2 (the AVX2 path on an AVX-512 or
    # AMX machine).
    env = dict(os.environ, **{variable: value})
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", __file__, "-k", "fused"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout[-3000:]
    assert " passed" in result.stdout
