"""AttoNet classifiers: ImageFolder data, training, evaluation, conversion to Detectron2."""

from .convert import classifier_to_d2_backbone, convert_classifier_checkpoint
from .data import (
    PIXEL_MEAN_RGB,
    PIXEL_STD_RGB,
    ClassificationData,
    ShardSampler,
    build_classification_data,
    build_train_transform,
    build_val_transform,
    check_imagefolder_root,
    read_rgb_image,
)
from .results import classifier_results, format_classifier_results, write_classifier_results
from .trainer import (
    ClassificationLoss,
    ClassifierTrainConfig,
    ClassifierTrainer,
    build_classifier_lr_scheduler,
    build_classifier_optimizer,
    evaluate_classifier,
)

__all__ = [k for k in globals().keys() if not k.startswith("_")]
