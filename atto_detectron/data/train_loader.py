"""
A training data loader that continues where a resumed run stopped.

Detectron2's training loader (TrainingSampler -> mapper -> AspectRatioGroupedDataset) is
an endless stream that starts over in every process: a run resumed at iteration k sees
the batches of iterations 0, 1, ... again, with other augmentations. Here the batch of
each iteration is a function of (seed, process, iteration) alone, drawn the way
Detectron2 draws it:

* the image order is Detectron2's TrainingSampler: one random permutation of the
  dataset after another (a torch generator seeded once), dealt round-robin to the
  processes;
* with aspect-ratio grouping, landscape and portrait images fill separate buckets and a
  full bucket is the next batch (AspectRatioGroupedDataset);
* each image's random augmentation is seeded from (seed, iteration, process, slot).

Starting at iteration k replays only the index arithmetic of the first k batches (no
image is read), so resuming costs milliseconds.
"""

import itertools
import logging
import random
from typing import Iterator, List, Optional, Sequence, Tuple

import torch
from torch.utils.data import DataLoader, Dataset

from detectron2.data import DatasetFromList, DatasetMapper, get_detection_dataset_dicts
from detectron2.data.build import trivial_batch_collator
from detectron2.utils import comm

from ..utils.seeding import SAMPLE, derived_seed, seeded_generators
from .voc_instances import VOCDataError

__all__ = ["IterationBatchSampler", "ResumableTrainLoader", "build_resumable_train_loader"]

logger = logging.getLogger(__name__)

# A batch of one process: (augmentation seed, dataset index) per image.
SeededBatch = List[Tuple[int, int]]


class IterationBatchSampler:
    """
    The batches of one process, iteration after iteration from ``start_iter``, each a
    list of ``(augmentation seed, dataset index)``.
    """

    def __init__(
        self,
        size: int,
        batch_size: int,
        seed: int,
        aspect_groups: Optional[Sequence[int]] = None,
        rank: int = 0,
        world_size: int = 1,
        start_iter: int = 0,
    ):
        """
        Args:
            size: images in the dataset.
            batch_size: images per batch of this process.
            seed: the run's seed, the same in every process.
            aspect_groups: per image, 0 (landscape) or 1 (portrait) to batch them apart,
                as Detectron2's aspect-ratio grouping; None batches images in order.
            rank, world_size: this process and the number of processes.
            start_iter: the first iteration to yield.
        """
        if size <= 0:
            raise ValueError("The training dataset is empty.")
        self.size = size
        self.batch_size = batch_size
        self.seed = seed
        self.aspect_groups = aspect_groups
        self.rank = rank
        self.world_size = world_size
        self.start_iter = start_iter

    def _indices(self) -> Iterator[int]:
        # Detectron2's TrainingSampler(shuffle=True): successive permutations of one
        # generator, every world_size-th index for this process.
        generator = torch.Generator()
        generator.manual_seed(self.seed)
        stream = itertools.chain.from_iterable(
            torch.randperm(self.size, generator=generator).tolist() for _ in itertools.count()
        )
        return itertools.islice(stream, self.rank, None, self.world_size)

    def _index_batches(self) -> Iterator[List[int]]:
        if self.aspect_groups is None:
            indices = self._indices()
            while True:
                yield list(itertools.islice(indices, self.batch_size))
        buckets = ([], [])
        for index in self._indices():
            bucket = buckets[self.aspect_groups[index]]
            bucket.append(index)
            if len(bucket) == self.batch_size:
                yield bucket[:]
                bucket.clear()

    def __iter__(self) -> Iterator[SeededBatch]:
        batches = itertools.islice(self._index_batches(), self.start_iter, None)
        for iteration, indices in enumerate(batches, start=self.start_iter):
            yield [
                (derived_seed(self.seed, SAMPLE, iteration, self.rank, slot), index)
                for slot, index in enumerate(indices)
            ]


class _SeededMapDataset(Dataset):
    """``dataset[index]`` through ``mapper``, with numpy/random seeded per image."""

    def __init__(self, dataset, mapper):
        self.dataset = dataset
        self.mapper = mapper

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, key: Tuple[int, int]):
        seed, index = key
        with seeded_generators(seed):
            data = self.mapper(self.dataset[index])
            # As Detectron2's MapDataset: a mapper may drop an image (returns None);
            # take another one, chosen from the same seed.
            for attempt in itertools.count(1):
                if data is not None:
                    return data
                if attempt % 3 == 0:
                    logger.warning(f"The mapper dropped {attempt} images in a row.")
                data = self.mapper(self.dataset[random.randrange(len(self.dataset))])


class ResumableTrainLoader:
    """
    An endless iterable of training batches (lists of mapped dataset dicts), the batch
    of iteration ``i`` the same whenever ``i`` is reached. Set :attr:`start_iter` (and
    :attr:`seed`, to continue a run) before iterating.
    """

    def __init__(
        self,
        dataset: Sequence[dict],
        mapper,
        total_batch_size: int,
        seed: int,
        aspect_ratio_grouping: bool = True,
        num_workers: int = 0,
    ):
        """
        Args:
            dataset: Detectron2 dataset dicts (with "width" and "height").
            mapper: dataset dict -> model input dict, e.g. DatasetMapper(cfg, True).
            total_batch_size: images per iteration over all processes.
            seed: the run's seed, the same in every process.
            aspect_ratio_grouping: batch landscape and portrait images apart.
            num_workers: data loading processes per training process.
        """
        world_size = comm.get_world_size()
        if total_batch_size <= 0 or total_batch_size % world_size != 0:
            raise ValueError(
                f"SOLVER.IMS_PER_BATCH ({total_batch_size}) must be a positive multiple of the "
                f"number of processes ({world_size})."
            )
        self.aspect_groups = (
            [0 if d["width"] > d["height"] else 1 for d in dataset]
            if aspect_ratio_grouping
            else None
        )
        self.dataset = _SeededMapDataset(DatasetFromList(list(dataset), copy=False), mapper)
        self.batch_size = total_batch_size // world_size
        self.num_workers = num_workers
        self.seed = seed
        self.start_iter = 0

    def __iter__(self) -> Iterator[List[dict]]:
        sampler = IterationBatchSampler(
            len(self.dataset),
            self.batch_size,
            self.seed,
            self.aspect_groups,
            rank=comm.get_rank(),
            world_size=comm.get_world_size(),
            start_iter=self.start_iter,
        )
        loader = DataLoader(
            self.dataset,
            batch_sampler=sampler,
            collate_fn=trivial_batch_collator,
            num_workers=self.num_workers,
            # Its own generator: the loader's base seed is then not drawn from torch's
            # global one, whose state belongs to the training step.
            generator=torch.Generator().manual_seed(self.seed),
        )
        return iter(loader)


def build_resumable_train_loader(cfg, seed: int, mapper=None) -> ResumableTrainLoader:
    """
    The training loader of ``cfg`` (DATASETS.TRAIN, SOLVER.IMS_PER_BATCH,
    DATALOADER.{NUM_WORKERS, ASPECT_RATIO_GROUPING, FILTER_EMPTY_ANNOTATIONS}), as
    Detectron2's ``build_detection_train_loader`` with DATALOADER.SAMPLER_TRAIN
    "TrainingSampler", but resumable (:class:`ResumableTrainLoader`).

    Args:
        cfg: a Detectron2 config.
        seed: the run's seed, the same in every process.
        mapper: default DatasetMapper(cfg, is_train=True).
    """
    if cfg.DATALOADER.SAMPLER_TRAIN != "TrainingSampler":
        raise ValueError(
            f"DATALOADER.SAMPLER_TRAIN {cfg.DATALOADER.SAMPLER_TRAIN!r}: the resumable loader "
            f"draws images as TrainingSampler does."
        )
    try:
        dataset = get_detection_dataset_dicts(
            cfg.DATASETS.TRAIN,
            filter_empty=cfg.DATALOADER.FILTER_EMPTY_ANNOTATIONS,
            min_keypoints=(
                cfg.MODEL.ROI_KEYPOINT_HEAD.MIN_KEYPOINTS_PER_IMAGE if cfg.MODEL.KEYPOINT_ON else 0
            ),
            proposal_files=cfg.DATASETS.PROPOSAL_FILES_TRAIN if cfg.MODEL.LOAD_PROPOSALS else None,
        )
    except AssertionError as e:
        if not str(e).startswith("No valid data found"):
            raise
        raise VOCDataError(
            f"DATASETS.TRAIN {', '.join(cfg.DATASETS.TRAIN)}: no image has an object to train "
            f"on (images with only background or void labels are left out, "
            f"DATALOADER.FILTER_EMPTY_ANNOTATIONS). Check its SegmentationObject PNGs, or "
            f"train on a split with labelled objects."
        ) from None
    return ResumableTrainLoader(
        dataset,
        mapper if mapper is not None else DatasetMapper(cfg, True),
        cfg.SOLVER.IMS_PER_BATCH,
        seed,
        aspect_ratio_grouping=cfg.DATALOADER.ASPECT_RATIO_GROUPING,
        num_workers=cfg.DATALOADER.NUM_WORKERS,
    )
