# The parts that every Atto-MaskRCNN LazyConfig shares: the counterpart of
# ../Base-AttoNet-FPN.yaml, built on Detectron2's own common/ configs. Not a config to
# train by itself (atto_detectron.model_zoo does not list it): the configs next to it
# import from it.
import detectron2.data.transforms as T
from detectron2 import model_zoo
from detectron2.config import LazyCall as L
from detectron2.layers import ShapeSpec

# Importing atto_detectron also registers the VOC-layout datasets (voc_2012_seg_*,
# voc_synth_*), which Detectron2's lazyconfig_train_net.py would otherwise not know.
from atto_detectron import AttoNet
from atto_detectron.modeling import GeneralizedRCNNSeparablePaste, MemoryLeanFPN

# Detectron2's Mask R-CNN with FPN (its anchors, samplers, ROIAlignV2 poolers and
# test thresholds), on AttoNet-A instead of ResNet-50.
model = model_zoo.get_config("common/models/mask_rcnn_fpn.py").model
# GeneralizedRCNN with masks pasted ~4x faster on CPU, as the yacs configs build it.
model._target_ = GeneralizedRCNNSeparablePaste
# Detectron2's FPN with a forward that frees memory as it goes, as the yacs configs build.
model.backbone._target_ = MemoryLeanFPN
model.backbone.bottom_up = L(AttoNet)(
    spec="A",
    out_features=["res2", "res3", "res4", "res5"],
    # No pretrained weights: batch statistics across GPUs, and every layer trains.
    # PyTorch's SyncBN runs on GPUs only: for several CPU processes (Gloo) override
    #   model.backbone.bottom_up.norm=naiveSyncBN train.device=cpu train.ddp.device_ids=null
    norm="SyncBN",
    freeze_at=0,
)
# FPN and heads narrowed with the backbone (Base-AttoNet-FPN.yaml says why): FPN and
# RPN head 96 channels, FPN with GN, box head 2 x FC-512 (20 classes, not COCO's 80),
# mask head 4 convs of 96 channels with GN.
model.backbone.out_channels = 96
model.backbone.norm = "GN"
model.proposal_generator.head.in_channels = 96
model.roi_heads.num_classes = 20
model.roi_heads.box_head.input_shape = ShapeSpec(channels=96, height=7, width=7)
model.roi_heads.box_head.fc_dims = [512, 512]
model.roi_heads.box_predictor.input_shape = ShapeSpec(channels=512)
model.roi_heads.mask_head.input_shape = ShapeSpec(channels=96, height=14, width=14)
model.roi_heads.mask_head.conv_dims = [96, 96, 96, 96, 96]  # 4 convs, then the deconv
model.roi_heads.mask_head.conv_norm = "GN"
# Torchvision-style ImageNet statistics (BGR, 0..255 inputs); Detectron2's common model
# divides by 1, the statistics of its caffe-style ResNet weights.
model.pixel_mean = [103.530, 116.280, 123.675]
model.pixel_std = [57.375, 57.120, 58.395]

# Detectron2's COCO-format loaders; the dataset names are set by each config. VOC
# instance masks are stored as COCO RLE (bitmasks). Multi-scale training, 800-pixel
# testing, as Detectron2's configs.
dataloader = model_zoo.get_config("common/data/coco.py").dataloader
dataloader.train.mapper.instance_mask_format = "bitmask"
dataloader.train.mapper.augmentations = [
    L(T.ResizeShortestEdge)(
        short_edge_length=(480, 512, 544, 576, 608, 640, 672, 704, 736, 768, 800),
        max_size=1333,
        sample_style="choice",
    ),
    L(T.RandomFlip)(horizontal=True),
]
dataloader.test.mapper.augmentations = [
    L(T.ResizeShortestEdge)(short_edge_length=800, max_size=1333, sample_style="choice"),
]
# Box and mask AP; the predictions are kept in the run's folder.
dataloader.evaluator.output_dir = "${...train.output_dir}/inference"

# SGD with momentum 0.9 and weight decay 1e-4, as the paper (Sec. 4.2).
optimizer = model_zoo.get_config("common/optim.py").SGD

train = model_zoo.get_config("common/train.py").train
train.init_checkpoint = ""  # trains from scratch; see ../atto_maskrcnn_voc.yaml for weights
