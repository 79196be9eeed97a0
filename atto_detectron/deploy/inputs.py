"""Input images for export checks and benchmarks."""

from typing import Dict, List

import numpy as np
import torch

__all__ = ["synthetic_image", "image_tensor", "detector_inputs"]


def synthetic_image(height: int, width: int, seed: int = 0) -> np.ndarray:
    """
    A reproducible ``(height, width, 3)`` uint8 image of uniform noise: no two regions
    alike, so that no two boxes tie in score (ties make the order of detections, and
    with it a comparison of two runtimes, arbitrary).
    """
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def image_tensor(image: np.ndarray) -> torch.Tensor:
    """``(H, W, 3)`` uint8 image -> ``(3, H, W)`` float32 tensor, as Detectron2 models take."""
    return torch.as_tensor(np.ascontiguousarray(image.transpose(2, 0, 1)).astype("float32"))


def detector_inputs(image: torch.Tensor) -> List[Dict]:
    """The batched input of a Detectron2 meta-architecture for one ``(3, H, W)`` image."""
    return [{"image": image, "height": image.shape[-2], "width": image.shape[-1]}]
