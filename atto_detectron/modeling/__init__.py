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
from .fpn import (
    MemoryLeanFPN,
    build_attonet_fpn_backbone,
    build_mobilenet_v2_fpn_backbone,
    build_shufflenet_v2_fpn_backbone,
    fpn_on,
)
from .mask_paste import SeparablePasteROIMasks, detector_postprocess, paste_masks_separable
from .meta_arch import GeneralizedRCNNSeparablePaste, as_generalized_rcnn
from .peer_backbones import (
    build_mobilenet_v2_backbone,
    build_shufflenet_v2_backbone,
    mobilenet_v2_backbone,
    replace_batch_norms,
    shufflenet_v2_backbone,
)
from .staged_backbone import StagedBackbone

__all__ = [k for k in globals().keys() if not k.startswith("_")]
