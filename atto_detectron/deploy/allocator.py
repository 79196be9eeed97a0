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

__all__ = [
    "ALLOCATORS",
    "DEFAULT_KEEP_BYTES",
    "keep_freed_memory",
    "release_freed_memory",
    "use_allocator",
]

# glibc <malloc.h> mallopt() parameters.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3

# Blocks up to 1 GiB stay in the heap: more than any single activation of these models.
DEFAULT_KEEP_BYTES = 1 << 30

# The settings a process can run with: glibc's malloc keeping freed blocks for reuse
# (:func:`keep_freed_memory`), or as it starts.
ALLOCATORS = ("keep-freed", "default")


def _libc():
    """The C library, or None where it cannot be loaded."""
    try:
        return ctypes.CDLL(ctypes.util.find_library("c"))
    except (OSError, TypeError):
        return None


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
    mallopt = getattr(_libc(), "mallopt", None)
    if mallopt is None:
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    value = min(int(max_block_bytes), 2**31 - 1)
    # mallopt returns 1 on success, 0 on error.
    return bool(mallopt(_M_MMAP_THRESHOLD, value)) and bool(mallopt(_M_TRIM_THRESHOLD, value))


def use_allocator(name: str) -> str:
    """
    Sets up this process with the allocator ``name`` (one of :data:`ALLOCATORS`) and
    returns the one in effect: "default" where "keep-freed" cannot be set (not glibc).
    """
    if name not in ALLOCATORS:
        raise ValueError(f"allocator must be one of {ALLOCATORS}, got {name!r}")
    return name if name == "default" or keep_freed_memory() else "default"


def release_freed_memory() -> None:
    """Hands freed heap memory back to the kernel now (glibc ``malloc_trim``), if possible."""
    malloc_trim = getattr(_libc(), "malloc_trim", None)
    if malloc_trim is not None:
        malloc_trim(0)
