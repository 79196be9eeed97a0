"""MemoryLeanFPN: Detectron2's FPN with the same outputs and gradients, less memory held."""

import copy
import weakref

import pytest
import torch

from detectron2.config import get_cfg
from detectron2.layers import ShapeSpec
from detectron2.modeling.backbone.fpn import FPN, LastLevelMaxPool, LastLevelP6P7

from atto_detectron import AttoNet, add_attonet_config
from atto_detectron.modeling import MemoryLeanFPN, fpn_on


def _fpn_pair(make_top_block, fuse_type="sum"):
    """A MemoryLeanFPN and Detectron2's FPN with the same bottom-up and weights."""
    torch.manual_seed(0)
    kwargs = dict(in_features=["res2", "res3", "res4", "res5"], out_channels=32)
    kwargs.update(fuse_type=fuse_type)
    bottom_up = AttoNet("D", out_features=["res2", "res3", "res4", "res5"])
    top_block = make_top_block(bottom_up.output_shape()["res5"].channels)
    lean = MemoryLeanFPN(bottom_up, top_block=top_block, **kwargs)
    reference = FPN(copy.deepcopy(bottom_up), top_block=copy.deepcopy(top_block), **kwargs)
    reference.load_state_dict(lean.state_dict())
    return lean, reference


def _max_pool(res5_channels):
    return LastLevelMaxPool()


def _p6p7_from_res5(res5_channels):
    # P6/P7 from a bottom-up feature: res5 must stay available to the top block.
    return LastLevelP6P7(res5_channels, 32, in_feature="res5")


@pytest.mark.parametrize(
    "make_top_block, fuse_type",
    [(_max_pool, "sum"), (_max_pool, "avg"), (_p6p7_from_res5, "sum")],
)
def test_same_outputs_and_gradients_as_detectron2s_fpn(make_top_block, fuse_type):
    lean, reference = _fpn_pair(make_top_block, fuse_type)
    x = torch.randn(2, 3, 96, 128)
    lean.eval(), reference.eval()
    with torch.no_grad():
        expected, actual = reference(x), lean(x)
    assert list(actual) == list(expected) == list(lean.output_shape())
    for name in expected:
        assert torch.equal(actual[name], expected[name]), name

    lean.train(), reference.train()
    for model in (lean, reference):
        sum(out.square().mean() for out in model(x).values()).backward()
    for (name, p), q in zip(lean.named_parameters(), reference.parameters()):
        assert torch.equal(p.grad, q.grad), name


def test_bottom_up_features_are_freed_before_the_finest_output_conv():
    lean, _ = _fpn_pair(_max_pool)
    lean.eval()
    features = {}

    def keep_weak_references(module, inputs, outputs):
        features.update({name: weakref.ref(t) for name, t in outputs.items()})

    alive_at_p2 = {}

    def record_alive(module, inputs):
        alive_at_p2.update({name: ref() is not None for name, ref in features.items()})

    lean.bottom_up.register_forward_hook(keep_weak_references)
    # output_convs run coarsest first: the last one makes p2.
    lean.output_convs[-1].register_forward_pre_hook(record_alive)
    with torch.no_grad():
        lean(torch.randn(1, 3, 128, 160))
    assert alive_at_p2 == {"res2": False, "res3": False, "res4": False, "res5": False}


def test_fpn_builders_use_it_and_it_traces():
    cfg = add_attonet_config(get_cfg())
    cfg.MODEL.ATTONET.VARIANT = "D"
    cfg.MODEL.ATTONET.OUT_FEATURES = ["res2", "res3", "res4", "res5"]
    cfg.MODEL.FPN.IN_FEATURES = ["res2", "res3", "res4", "res5"]
    cfg.MODEL.FPN.OUT_CHANNELS = 32
    fpn = fpn_on(AttoNet("D", out_features=cfg.MODEL.ATTONET.OUT_FEATURES), cfg).eval()
    assert isinstance(fpn, MemoryLeanFPN) and isinstance(fpn, FPN)
    assert fpn.output_shape()["p6"] == ShapeSpec(channels=32, stride=64)
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        # Exported as Detectron2's FPN is: traced (its module lists do not script).
        traced = torch.jit.trace(fpn, x, strict=False)
        expected, actual = fpn(x), traced(x.clone())
    for name in expected:
        torch.testing.assert_close(actual[name], expected[name])
