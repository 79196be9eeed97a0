# Atto-MaskRCNN (Sec. 4.2 of the paper): AttoNet-A + FPN Mask R-CNN on Pascal VOC 2012
# instance segmentation, as a LazyConfig for Detectron2's tools/lazyconfig_train_net.py.
# The same model, data and schedule as ../atto_maskrcnn_voc.yaml (which explains them).
from fvcore.common.param_scheduler import MultiStepParamScheduler

from detectron2.config import LazyCall as L
from detectron2.solver import WarmupParamScheduler

from .common import dataloader, model, optimizer, train

dataloader.train.dataset.names = "voc_2012_seg_train"
dataloader.test.dataset.names = "voc_2012_seg_val"

# 16 images per iteration (e.g. 8 GPUs x 2), 27k iterations from scratch, step decay at
# 21k and 25k after a 1k-iteration linear warm-up.
dataloader.train.total_batch_size = 16
optimizer.lr = 0.02
train.max_iter = 27000
lr_multiplier = L(WarmupParamScheduler)(
    scheduler=L(MultiStepParamScheduler)(
        values=[1.0, 0.1, 0.01],
        milestones=[21000, 25000],
        num_updates=train.max_iter,
    ),
    warmup_length=1000 / train.max_iter,
    warmup_factor=0.001,
)

train.checkpointer.period = 3000
train.eval_period = 3000
# Each config writes its own folder; runs must not share one.
train.output_dir = "./output/lazy/atto_maskrcnn_voc"
