"""ImageFolder data for classifier training: checks, transforms, (distributed) loaders.

The layout is torchvision's ImageFolder, as ImageNet and ImageNet50 are distributed::

    ROOT/train/<class>/*.jpg
    ROOT/val/<class>/*.jpg
"""

import os
from dataclasses import dataclass
from typing import Iterator, List, Optional, Sequence

import torch
from PIL import Image
from torch.utils.data import DataLoader, DistributedSampler, Sampler
from torchvision import datasets
from torchvision import transforms as T

from detectron2.utils import comm

__all__ = [
    "PIXEL_MEAN_RGB",
    "PIXEL_STD_RGB",
    "ClassificationData",
    "ShardSampler",
    "build_train_transform",
    "build_val_transform",
    "build_classification_data",
    "check_imagefolder_root",
    "read_rgb_image",
]

# torchvision's ImageNet statistics (RGB, 0..1 inputs). Detectron2's configs here use the
# same statistics in BGR order on 0..255 inputs (MODEL.PIXEL_MEAN / PIXEL_STD).
PIXEL_MEAN_RGB = (0.485, 0.456, 0.406)
PIXEL_STD_RGB = (0.229, 0.224, 0.225)

_SPLITS = ("train", "val")


def build_train_transform(image_size: int, min_crop_scale: float = 0.08) -> T.Compose:
    """
    The standard ImageNet training augmentation: a random crop of ``min_crop_scale`` to
    all of the image's area (aspect ratio 3/4..4/3) resized to ``image_size``, a random
    horizontal flip, and normalization. Output: ``(3, image_size, image_size)`` float.
    """
    return T.Compose(
        [
            T.RandomResizedCrop(image_size, scale=(min_crop_scale, 1.0), antialias=True),
            T.RandomHorizontalFlip(),
            T.ToTensor(),
            T.Normalize(PIXEL_MEAN_RGB, PIXEL_STD_RGB),
        ]
    )


def build_val_transform(image_size: int, crop_ratio: float = 0.875) -> T.Compose:
    """
    Resize the short side to ``image_size / crop_ratio`` (256 for 224), center crop
    ``image_size``, normalize. Output: ``(3, image_size, image_size)`` float.
    """
    return T.Compose(
        [
            T.Resize(int(round(image_size / crop_ratio)), antialias=True),
            T.CenterCrop(image_size),
            T.ToTensor(),
            T.Normalize(PIXEL_MEAN_RGB, PIXEL_STD_RGB),
        ]
    )


def read_rgb_image(path: str) -> Image.Image:
    """ImageFolder's loader, with an error that names the file when it cannot be decoded."""
    try:
        with open(path, "rb") as f:
            image = Image.open(f)
            return image.convert("RGB")
    except (OSError, SyntaxError, ValueError) as e:
        raise OSError(
            f"Cannot read image {path} ({type(e).__name__}: {e}). Replace or delete the "
            f"file, then resume training with --resume."
        ) from e


def check_imagefolder_root(root: str) -> List[str]:
    """
    Checks that ``root`` has ``train/`` and ``val/`` folders with the same class
    sub-folders.

    Returns:
        list[str]: the class names, sorted (the label of a class is its index here).

    Raises:
        FileNotFoundError: when ``root``, ``root/train`` or ``root/val`` is missing or
            has no class folder.
        ValueError: when the class folders of train and val differ.
    """
    if not os.path.isdir(root):
        raise FileNotFoundError(
            f"Dataset folder {root} does not exist. Expected an ImageFolder layout: "
            f"{os.path.join(root, 'train', '<class>', '*.jpg')} and "
            f"{os.path.join(root, 'val', '<class>', '*.jpg')}."
        )
    classes = {}
    for split in _SPLITS:
        folder = os.path.join(root, split)
        if not os.path.isdir(folder):
            raise FileNotFoundError(
                f"Missing {folder}: an ImageFolder dataset needs both "
                f"{os.path.join(root, 'train')} and {os.path.join(root, 'val')}, each with "
                f"one sub-folder of images per class."
            )
        names = sorted(entry.name for entry in os.scandir(folder) if entry.is_dir())
        if not names:
            raise FileNotFoundError(
                f"{folder} has no class folders: put the images of each class in "
                f"{os.path.join(folder, '<class>')}/."
            )
        classes[split] = names
    only_train = sorted(set(classes["train"]) - set(classes["val"]))
    only_val = sorted(set(classes["val"]) - set(classes["train"]))
    if only_train or only_val:
        raise ValueError(
            f"The class folders of {os.path.join(root, 'train')} and "
            f"{os.path.join(root, 'val')} differ (only in train: {only_train or 'none'}; "
            f"only in val: {only_val or 'none'}). Both splits need the same classes, or the "
            f"labels would not mean the same class in both."
        )
    return classes["train"]


def _imagefolder(folder: str, transform) -> datasets.ImageFolder:
    try:
        return datasets.ImageFolder(folder, transform=transform, loader=read_rgb_image)
    except FileNotFoundError as e:
        # torchvision's message names the empty classes but not the folder.
        raise FileNotFoundError(f"{folder}: {e}") from e


class ShardSampler(Sampler):
    """
    Every ``num_shards``-th index starting at ``shard``: the shards of all processes
    partition the dataset with no index repeated (unlike DistributedSampler, which pads),
    so that accuracies summed over processes count each image exactly once.
    """

    def __init__(self, size: int, shard: int = 0, num_shards: int = 1):
        self._indices = range(shard, size, num_shards)

    def __iter__(self) -> Iterator[int]:
        return iter(self._indices)

    def __len__(self) -> int:
        return len(self._indices)


@dataclass
class ClassificationData:
    """Loaders of one ImageFolder dataset, for this process."""

    train: DataLoader
    val: DataLoader
    classes: Sequence[str]
    root: str

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def build_classification_data(
    root: str,
    image_size: int = 224,
    batch_size: int = 256,
    num_workers: int = 4,
    seed: int = 0,
    min_crop_scale: float = 0.08,
    val_batch_size: Optional[int] = None,
) -> ClassificationData:
    """
    Args:
        root: ImageFolder dataset (see :func:`check_imagefolder_root`).
        image_size: side of the square crops the network sees (224 in the paper).
        batch_size: images per iteration summed over all processes; each process loads
            ``batch_size / world_size``.
        num_workers: loader processes per training process.
        seed: seeds the order of training images (a new order each epoch, see
            :meth:`DistributedSampler.set_epoch`).
        min_crop_scale: smallest area fraction of RandomResizedCrop (0.08: ImageNet's).
        val_batch_size: images per validation batch and process (default: as training).

    Returns:
        ClassificationData: ``train`` (shuffled, incomplete last batch dropped, the same
        number of batches in every process) and ``val`` (each image in exactly one
        process, in order).
    """
    classes = check_imagefolder_root(root)
    world_size, rank = comm.get_world_size(), comm.get_rank()
    if batch_size % world_size:
        raise ValueError(
            f"batch_size {batch_size} is not divisible by the number of processes "
            f"({world_size}); pick a multiple of {world_size}."
        )
    per_process = batch_size // world_size
    train_set = _imagefolder(
        os.path.join(root, "train"), build_train_transform(image_size, min_crop_scale)
    )
    val_set = _imagefolder(os.path.join(root, "val"), build_val_transform(image_size))
    if len(train_set) // world_size < per_process:
        raise ValueError(
            f"{os.path.join(root, 'train')} has {len(train_set)} images: fewer than one "
            f"batch of {per_process} per process. Lower the batch size."
        )
    pin_memory = torch.cuda.is_available()
    train_loader = DataLoader(
        train_set,
        batch_size=per_process,
        sampler=DistributedSampler(train_set, world_size, rank, shuffle=True, seed=seed),
        num_workers=num_workers,
        drop_last=True,
        pin_memory=pin_memory,
    )
    val_loader = DataLoader(
        val_set,
        batch_size=val_batch_size or per_process,
        sampler=ShardSampler(len(val_set), rank, world_size),
        num_workers=num_workers,
        pin_memory=pin_memory,
    )
    return ClassificationData(train=train_loader, val=val_loader, classes=classes, root=root)
