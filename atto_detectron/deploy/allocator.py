"""
CPU memory allocator setting for inference: keep freed activation memory for reuse.

glibc's malloc serves every block above its mmap threshold (128 KiB at start, raised
adaptively to at most 32 MiB) with a fresh ``mmap`` and hands it back to the kernel on
``free``. A Mask R-CNN at shortest edge 800 allocates and frees full-resolution
activations of tens of MB at every layer, so each inference maps them again and the
kernel zero-fills every page on first touch: page faults and a memory pass per layer.
AttoNet's layers are thin and bound by memory traffic (``benchmarks/profile_inference.py``),
so this hits them harder than ResNet-50's.
"""

import ctypes
import ctypes.util

__all__ = ["DEFAULT_KEEP_BYTES", "keep_freed_memory"]

# glibc <malloc.h> mallopt() parameters.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3

# Blocks up to 1 GiB stay in the heap: more than any single activation of these models.
DEFAULT_KEEP_BYTES = 1 << 30


def keep_freed_memory(max_block_bytes: int = DEFAULT_KEEP_BYTES) -> bool:
    """
    Makes glibc's malloc serve blocks of up to ``max_block_bytes`` from its heap and keep
    freed memory there for the next allocation, instead of mapping and unmapping it
    each time: the same as starting Python with ``MALLOC_MMAP_THRESHOLD_=<bytes>
    MALLOC_TRIM_THRESHOLD_=<bytes>`` in the environment (or with jemalloc / tcmalloc
    preloaded). The process then holds on to its high-water mark of memory instead of
    returning it between inferences. Process-wide; call once, before the model runs.

    Returns:
        True when the setting took effect; False where the C library is not glibc
        (nothing is changed there).
    """
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    value = min(int(max_block_bytes), 2**31 - 1)
    # mallopt returns 1 on success, 0 on error.
    return bool(mallopt(_M_MMAP_THRESHOLD, value)) and bool(mallopt(_M_TRIM_THRESHOLD, value))
