# Atto-MaskRCNN with AttoNet-C: everything else as atto_maskrcnn_voc.py.
from .atto_maskrcnn_voc import (  # noqa: F401  (the config is every name imported here)
    dataloader,
    lr_multiplier,
    model,
    optimizer,
    train,
)

model.backbone.bottom_up.spec = "C"
# Each config writes its own folder; runs must not share one.
train.output_dir = "./output/lazy/atto_maskrcnn_voc_C"
