"""Config keys of the AttoNet backbones."""

from detectron2.config import CfgNode as CN

__all__ = ["add_attonet_config"]


def add_attonet_config(cfg):
    """
    Adds ``cfg.MODEL.ATTONET`` to a Detectron2 config. Call it before
    ``cfg.merge_from_file`` on any yaml that sets these keys.

    Keys:
        VARIANT: "A".."D" (or "AttoNet-A".."AttoNet-D"), the networks of Table 1.
        SPEC: path of a spec file (yaml/json, the format of
            :func:`atto_detectron.modeling.save_attonet_spec`) describing another AttoNet,
            e.g. one found by tools/explore_design.py; when set, it replaces VARIANT.
        OUT_FEATURES: outputs among "stem", "res2".."res5" (strides 4, 4, 8, 16, 32).
        NORM: "BN", "SyncBN", "FrozenBN", "GN" (groups adapted to AttoNet widths), "".
        FREEZE_AT: 0 trains all layers (the default: AttoNets here start from scratch
            unless MODEL.WEIGHTS gives pretrained weights); 1 freezes the stem, k >= 2
            also stages res2 .. res<k>.
    """
    cfg.MODEL.ATTONET = CN()
    cfg.MODEL.ATTONET.VARIANT = "A"
    cfg.MODEL.ATTONET.SPEC = ""
    cfg.MODEL.ATTONET.OUT_FEATURES = ["res2", "res3", "res4", "res5"]
    cfg.MODEL.ATTONET.NORM = "BN"
    cfg.MODEL.ATTONET.FREEZE_AT = 0
    return cfg
