"""CPU threads of training processes."""

import os

import torch

from detectron2.utils import comm

__all__ = ["set_cpu_threads"]


def set_cpu_threads(threads: int = 0) -> int:
    """
    Sets torch's intra-op threads of this process and returns the number set.

    Args:
        threads: > 0: that many. 0: leave torch's default, except that CPU processes
            started together on one machine (``--num-gpus N`` without CUDA) share its
            cores, one N-th each, instead of each taking all of them.
    """
    if threads <= 0 and not torch.cuda.is_available() and comm.get_local_size() > 1:
        threads = max(1, (os.cpu_count() or 1) // comm.get_local_size())
    if threads > 0:
        torch.set_num_threads(threads)
    return torch.get_num_threads()
