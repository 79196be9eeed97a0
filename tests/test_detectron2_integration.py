"""Registry, config keys, FPN, the shipped configs and the backbone swap."""

import math
import os

import pytest
import torch

from detectron2.config import get_cfg
from detectron2.layers import FrozenBatchNorm2d, ShapeSpec
from detectron2.modeling import BACKBONE_REGISTRY, build_backbone, build_model
from detectron2.modeling.backbone.fpn import FPN, LastLevelMaxPool
from detectron2.structures import BitMasks, Boxes, Instances
from detectron2.utils.events import EventStorage

import atto_detectron
from atto_detectron import AttoNet, add_attonet_config
from atto_detectron.config import load_config

from .helpers import CONFIGS, REPO_ROOT

# These small models and inputs gain nothing from a second thread (see one_thread).
pytestmark = pytest.mark.usefixtures("one_thread")


def test_import_registers_both_builders():
    assert BACKBONE_REGISTRY.get("build_attonet_backbone") is atto_detectron.build_attonet_backbone
    assert (
        BACKBONE_REGISTRY.get("build_attonet_fpn_backbone")
        is atto_detectron.build_attonet_fpn_backbone
    )


def test_config_defaults():
    cfg = add_attonet_config(get_cfg())
    assert cfg.MODEL.ATTONET.VARIANT == "A"
    assert cfg.MODEL.ATTONET.OUT_FEATURES == ["res2", "res3", "res4", "res5"]
    assert cfg.MODEL.ATTONET.NORM == "BN"
    assert cfg.MODEL.ATTONET.SPEC == ""


def _cfg(freeze_at=0, **attonet):
    cfg = add_attonet_config(get_cfg())
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.BACKBONE.FREEZE_AT = freeze_at
    for key, value in attonet.items():
        setattr(cfg.MODEL.ATTONET, key, value)
    return cfg


def test_backbone_builder_reads_the_config():
    cfg = _cfg(VARIANT="attonet-d", OUT_FEATURES=["res3", "res4"], NORM="GN", freeze_at=2)
    cfg.MODEL.BACKBONE.NAME = "build_attonet_backbone"
    backbone = build_backbone(cfg, ShapeSpec(channels=3))
    assert isinstance(backbone, AttoNet)
    assert backbone.spec.name == "AttoNet-D"
    assert list(backbone.output_shape()) == ["res3", "res4"]
    assert isinstance(backbone.stages["res3"][0].preact_norm, torch.nn.GroupNorm)
    assert not any(p.requires_grad for p in backbone.stages["res2"].parameters())
    assert all(p.requires_grad for p in backbone.stages["res3"].parameters())


@pytest.mark.parametrize("freeze_at", [-1, 6, 9])
def test_out_of_range_freeze_at_is_rejected_naming_the_key(freeze_at):
    cfg = _cfg(freeze_at=freeze_at)
    cfg.MODEL.BACKBONE.NAME = "build_attonet_backbone"
    with pytest.raises(ValueError, match=f"MODEL.BACKBONE.FREEZE_AT: .*got {freeze_at}"):
        build_backbone(cfg, ShapeSpec(channels=3))


def test_unknown_output_is_rejected_naming_the_key():
    cfg = _cfg(freeze_at=0)
    cfg.MODEL.BACKBONE.NAME = "build_attonet_backbone"
    cfg.MODEL.ATTONET.OUT_FEATURES = ["res2", "res6"]
    with pytest.raises(ValueError, match="MODEL.ATTONET.OUT_FEATURES: .*'res6'.*'res5'"):
        build_backbone(cfg, ShapeSpec(channels=3))


def test_freeze_at_5_freezes_every_stage():
    cfg = _cfg(freeze_at=5)
    cfg.MODEL.BACKBONE.NAME = "build_attonet_backbone"
    backbone = build_backbone(cfg, ShapeSpec(channels=3))
    assert not any(p.requires_grad for p in backbone.parameters())


def test_the_old_attonet_freeze_at_key_names_detectron2s():
    cfg = add_attonet_config(get_cfg())
    with pytest.raises(KeyError, match="MODEL.BACKBONE.FREEZE_AT"):
        cfg.merge_from_list(["MODEL.ATTONET.FREEZE_AT", "2"])


def test_spec_file_in_config_replaces_the_variant(tmp_path):
    data = atto_detectron.get_attonet_spec("D").to_dict()
    data["name"] = "AttoNet-wide-stem"
    data["stem_channels"] = 16
    path = atto_detectron.save_attonet_spec(
        atto_detectron.AttoNetSpec.from_dict(data), str(tmp_path / "spec.yaml")
    )
    cfg = _cfg(VARIANT="A", SPEC=path)
    cfg.MODEL.BACKBONE.NAME = "build_attonet_fpn_backbone"
    cfg.MODEL.FPN.IN_FEATURES = ["res2", "res3", "res4", "res5"]
    fpn = build_backbone(cfg, ShapeSpec(channels=3))
    assert fpn.bottom_up.spec.name == "AttoNet-wide-stem"
    assert fpn.bottom_up.stem.out_channels == 16
    assert fpn.bottom_up.output_shape()["res5"].channels == 140  # AttoNet-D's, not A's 952


def test_wrong_variant_in_config_names_the_valid_ones():
    cfg = _cfg(VARIANT="F")
    cfg.MODEL.BACKBONE.NAME = "build_attonet_backbone"
    with pytest.raises(ValueError, match="'A', 'B', 'C', 'D'"):
        build_backbone(cfg, ShapeSpec(channels=3))


def test_fpn_builder_uses_detectron2_fpn_and_fpn_keys():
    cfg = _cfg(VARIANT="B")
    cfg.MODEL.BACKBONE.NAME = "build_attonet_fpn_backbone"
    cfg.MODEL.FPN.IN_FEATURES = ["res2", "res3", "res4", "res5"]
    cfg.MODEL.FPN.OUT_CHANNELS = 64
    cfg.MODEL.FPN.NORM = "GN"
    cfg.MODEL.FPN.FUSE_TYPE = "avg"
    fpn = build_backbone(cfg, ShapeSpec(channels=3))
    assert isinstance(fpn, FPN) and isinstance(fpn.top_block, LastLevelMaxPool)
    assert isinstance(fpn.bottom_up, AttoNet)
    assert fpn._fuse_type == "avg"
    assert isinstance(fpn.fpn_lateral2.norm, torch.nn.GroupNorm)
    shapes = fpn.output_shape()
    assert {k: (v.channels, v.stride) for k, v in shapes.items()} == {
        "p2": (64, 4),
        "p3": (64, 8),
        "p4": (64, 16),
        "p5": (64, 32),
        "p6": (64, 64),
    }
    assert fpn.size_divisibility == 32
    outputs = fpn.eval()(torch.randn(1, 3, 96, 128))
    for name, spec in shapes.items():
        assert outputs[name].shape == (
            1,
            64,
            math.ceil(96 / spec.stride),
            math.ceil(128 / spec.stride),
        )


def _load(config_name):
    return load_config(os.path.join(CONFIGS, config_name), device="cpu")


def test_shipped_configs_load_through_base():
    cfg = _load("atto_maskrcnn_voc.yaml")
    assert cfg.MODEL.BACKBONE.NAME == "build_attonet_fpn_backbone"  # from _BASE_
    assert cfg.MODEL.ATTONET.VARIANT == "A"
    assert cfg.MODEL.MASK_ON and cfg.MODEL.ROI_HEADS.NUM_CLASSES == 20
    assert cfg.SOLVER.MOMENTUM == 0.9
    assert cfg.INPUT.MASK_FORMAT == "bitmask"


def _toy_batch(height=160, width=224):
    image = torch.randint(0, 256, (3, height, width), dtype=torch.uint8).float()
    instances = Instances((height, width))
    instances.gt_boxes = Boxes(
        torch.tensor([[10.0, 20.0, 100.0, 120.0], [120.0, 30.0, 200.0, 150.0]])
    )
    instances.gt_classes = torch.tensor([1, 5])
    masks = torch.zeros(2, height, width, dtype=torch.bool)
    masks[0, 20:120, 10:100] = True
    masks[1, 30:150, 120:200] = True
    instances.gt_masks = BitMasks(masks)
    return [{"image": image, "instances": instances, "height": height, "width": width}]


def _train_step_and_infer(cfg):
    model = build_model(cfg)
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.001, momentum=0.9)
    backbone_before = [p.detach().clone() for p in model.backbone.bottom_up.parameters()]
    with EventStorage():
        losses = model(_toy_batch())
    assert {"loss_cls", "loss_box_reg", "loss_mask", "loss_rpn_cls", "loss_rpn_loc"} <= set(losses)
    assert all(torch.isfinite(v) for v in losses.values())
    optimizer.zero_grad()
    sum(losses.values()).backward()
    optimizer.step()
    backbone_after = list(model.backbone.bottom_up.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(backbone_before, backbone_after))
    model.eval()
    with torch.no_grad():
        outputs = model([{"image": _toy_batch()[0]["image"]}])
    instances = outputs[0]["instances"]
    assert instances.image_size == (160, 224)
    assert instances.has("pred_masks") and instances.has("pred_boxes")
    return model


def _readme_block(name):
    with open(os.path.join(REPO_ROOT, "README.md")) as f:
        readme = f.read()
    section = readme.split(f"<!-- {name}:begin -->", 1)[1].split(f"<!-- {name}:end -->", 1)[0]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


@pytest.mark.slow
def test_readme_backbone_swap_builds_a_trainable_attonet_fpn_model():
    namespace = {}
    exec(_readme_block("backbone-swap"), namespace)
    cfg, model = namespace["cfg"], namespace["model"]
    assert isinstance(model.backbone.bottom_up, AttoNet)
    assert model.backbone.bottom_up.spec.name == "AttoNet-A"
    # Nothing of the ResNet-50 start point is left: no weights to load, the statistics
    # of Detectron2's torchvision-style inputs, every layer trained with batch statistics.
    assert cfg.MODEL.WEIGHTS == ""
    assert model.pixel_std.flatten().tolist() == pytest.approx([57.375, 57.120, 58.395])
    assert all(p.requires_grad for p in model.backbone.bottom_up.parameters())
    assert not any(isinstance(m, FrozenBatchNorm2d) for m in model.backbone.bottom_up.modules())
    model = _train_step_and_infer(cfg)
    assert isinstance(model.backbone.bottom_up, AttoNet)


@pytest.mark.slow
def test_atto_maskrcnn_voc_config_trains_one_step():
    cfg = _load("atto_maskrcnn_voc.yaml")
    cfg.MODEL.ATTONET.VARIANT = "D"  # the smallest, to keep the test fast
    model = _train_step_and_infer(cfg)
    assert model.roi_heads.num_classes == 20


# Every Detectron2 config under configs/.
SHIPPED_CONFIGS = sorted(
    os.path.relpath(os.path.join(root, f), CONFIGS)
    for root, _, files in os.walk(CONFIGS)
    for f in files
    if f.endswith(".yaml") and not f.startswith("Base-")
)


def test_every_shipped_config_has_its_own_output_dir():
    output_dirs = {name: _load(name).OUTPUT_DIR for name in SHIPPED_CONFIGS}
    for name, output_dir in output_dirs.items():
        assert output_dir == f"output/{os.path.splitext(os.path.basename(name))[0]}"
    assert len(set(output_dirs.values())) == len(output_dirs)


@pytest.mark.parametrize("config_name", SHIPPED_CONFIGS)
def test_every_shipped_config_builds_a_20_class_mask_rcnn(config_name):
    cfg = _load(config_name)
    model = build_model(cfg)
    assert model.roi_heads.num_classes == 20 and cfg.MODEL.MASK_ON
    assert cfg.SOLVER.MOMENTUM == 0.9
    assert cfg.DATASETS.TRAIN and cfg.DATASETS.TEST
    if cfg.MODEL.BACKBONE.NAME == "build_attonet_fpn_backbone":
        assert isinstance(model.backbone.bottom_up, AttoNet)
        # atto_maskrcnn_{voc,synth}[_B|_C|_D][_fast].yaml: AttoNet-A unless named.
        suffix = os.path.splitext(os.path.basename(config_name))[0].split("_")[-2:]
        variant = next((s for s in suffix if s in ("B", "C", "D")), "A")
        assert model.backbone.bottom_up.spec.name == f"AttoNet-{variant}"
