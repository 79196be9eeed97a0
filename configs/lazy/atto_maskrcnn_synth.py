# Atto-MaskRCNN (AttoNet-A) on the generated VOC-layout data (tools/make_synthetic_voc.py)
# with the schedule of `make demo`, which trains on 2 CPU cores in minutes: the same
# model, data and schedule as ../synth/atto_maskrcnn_synth.yaml (which explains them).
#   python .../tools/lazyconfig_train_net.py --config-file configs/lazy/atto_maskrcnn_synth.py \
#       --num-gpus 2    # two CPU processes (Gloo), 2 images each
from fvcore.common.param_scheduler import CosineParamScheduler

import detectron2.data.transforms as T
from detectron2.config import LazyCall as L
from detectron2.solver import WarmupParamScheduler

from .common import dataloader, model, optimizer, train

# BN over each process's images; fewer sampled anchors and proposals (0 to 4 objects per
# image); ROIAlign with 2x2 samples per bin, which costs less on CPU.
model.backbone.bottom_up.norm = "BN"
model.proposal_generator.batch_size_per_image = 128
model.proposal_generator.post_nms_topk = (500, 300)  # (training, test)
model.roi_heads.batch_size_per_image = 32
model.roi_heads.box_pooler.sampling_ratio = 2
model.roi_heads.mask_pooler.sampling_ratio = 2

dataloader.train.dataset.names = "voc_synth_train"
dataloader.test.dataset.names = "voc_synth_val"
# The images at their own size (long side 256), never upsampled.
dataloader.train.mapper.augmentations = [
    L(T.ResizeShortestEdge)(short_edge_length=(192, 224, 256), max_size=256, sample_style="choice"),
    L(T.RandomFlip)(horizontal=True),
]
dataloader.test.mapper.augmentations = [
    L(T.ResizeShortestEdge)(short_edge_length=256, max_size=256, sample_style="choice"),
]
# Images load in the training processes themselves: on 2 cores a loader process would
# take time from training.
dataloader.train.num_workers = 0
dataloader.test.num_workers = 0

# 4 images per iteration, 1100 iterations: cosine decay after a 100-iteration warm-up.
dataloader.train.total_batch_size = 4
optimizer.lr = 0.02
train.max_iter = 1100
lr_multiplier = L(WarmupParamScheduler)(
    scheduler=L(CosineParamScheduler)(start_value=1.0, end_value=0.0),
    warmup_length=100 / train.max_iter,
    warmup_factor=0.001,
)
train.checkpointer.period = 275
train.eval_period = 0  # evaluates after the last iteration only
train.seed = 0

# On the CPU, also with several processes: DistributedDataParallel over Gloo takes no
# device_ids (Detectron2's create_ddp_model would pass the process's GPU).
train.device = "cpu"
train.ddp.device_ids = None
train.output_dir = "./output/lazy/atto_maskrcnn_synth"
