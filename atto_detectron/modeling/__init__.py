from .attonet import AttoModule, AttoNet, AttoNetStem, attonet_norm, build_attonet_backbone
from .attonet_spec import (
    ATTONET_VARIANTS,
    STAGE_NAMES,
    AttoModuleSpec,
    AttoNetSpec,
    get_attonet_spec,
    load_attonet_spec,
    save_attonet_spec,
)
from .classifier import AttoNetClassifier, build_attonet_classifier
from .fpn import build_attonet_fpn_backbone

__all__ = [k for k in globals().keys() if not k.startswith("_")]
