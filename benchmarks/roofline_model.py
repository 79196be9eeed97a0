"""Roofline of a model, part by part (for the benchmarks): mult-adds, bytes moved, the
machine's limits.

For each part of a model (a set of its submodules, see :class:`PartTracker`):

* mult-adds, counted by fvcore
  (:func:`~atto_detectron.analysis.complexity.mult_adds_by_module`) and summed per part
  by :func:`sum_by_part`;
* bytes moved, counted by :class:`BytesCounterMode` during one forward pass: for every
  aten operator, the bytes of the tensors it reads and writes (weights included). This
  is the traffic of operators that each read their inputs from memory and write their
  outputs back; caches can make the real traffic smaller (small tensors reused by the
  next operator) or larger (an operator that reads its input more than once);
* time bounds from the machine's limits (:func:`measure_gemm_flops`,
  :func:`measure_memory_bandwidth`): compute = 2 * mult-adds / peak FLOP/s, memory =
  bytes / bandwidth; a part cannot run faster than the larger of the two
  (:func:`roofline_row`).

Time per part comes from :class:`PartTimer`, with the same forward hooks: the innermost
part that is running owns each moment and each operator.
"""

import math
import os
import time
from collections import OrderedDict, defaultdict
from typing import Callable, Dict, List, Mapping, Optional, Sequence

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from atto_detectron.analysis.complexity import mult_adds_by_module

__all__ = [
    "POST_PROCESSING",
    "detector_parts",
    "PartTracker",
    "PartTimer",
    "operator_bytes",
    "BytesCounterMode",
    "sum_by_part",
    "detector_part_counts",
    "measure_gemm_flops",
    "measure_memory_bandwidth",
    "roofline_row",
    "roofline_rows",
]

# What a GeneralizedRCNN does outside its parts' modules: preprocessing (normalization
# and padding), box NMS and score filtering (in the ROI heads, outside the box
# predictor's forward), mask pasting into the image (detector_postprocess).
POST_PROCESSING = "post-processing"
TOTAL = "total"

_BACKBONE_STAGES = ("stem", "res2", "res3", "res4", "res5")

# Operators that write their mutated argument without reading it first.
_WRITE_ONLY = {torch.ops.aten.copy_, torch.ops.aten.fill_, torch.ops.aten.zero_}
# In-place operators that write the indexed elements of their target only.
_INDEXED_WRITES = {torch.ops.aten.index_put_, torch.ops.aten._index_put_impl_}
# Operators that move no data: fresh uninitialized memory, metadata changes.
_NO_TRAFFIC = {
    torch.ops.aten.empty,
    torch.ops.aten.empty_like,
    torch.ops.aten.empty_strided,
    torch.ops.aten.new_empty,
    torch.ops.aten.new_empty_strided,
    torch.ops.aten.resize_,
}


def detector_parts(model: nn.Module) -> "OrderedDict[str, List[str]]":
    """
    The parts of a GeneralizedRCNN (Mask R-CNN) for a roofline: part -> module names.

    "stem", "res2".."res5": the bottom-up network's stages (AttoNet keeps them in
    ``stages``, ResNet as attributes; the bottom-up network's own operators, none in
    either, count with the stem); "FPN": the backbone around the bottom-up network;
    "RPN"; "box head": its ROIAlign, head and predictor; "mask head": its ROIAlign and
    head. Everything else is :data:`POST_PROCESSING`. Parts the model lacks (a stage not
    built, no mask head) are left out.
    """
    names = dict(model.named_modules())
    bottom_up = "backbone.bottom_up"
    parts = OrderedDict()
    for stage in _BACKBONE_STAGES:
        for name in (f"{bottom_up}.{stage}", f"{bottom_up}.stages.{stage}"):
            if name in names:
                parts[stage] = [name]
                break
    if "stem" in parts:
        parts["stem"].append(bottom_up)
    candidates = OrderedDict(
        [
            ("FPN", ["backbone"]),
            ("RPN", ["proposal_generator"]),
            ("box head", ["roi_heads.box_pooler", "roi_heads.box_head", "roi_heads.box_predictor"]),
            ("mask head", ["roi_heads.mask_pooler", "roi_heads.mask_head"]),
        ]
    )
    for part, modules in candidates.items():
        present = [name for name in modules if name in names]
        if present:
            parts[part] = present
    return parts


class PartTracker:
    """
    Which part of ``model`` is running: forward pre- and post-hooks on the parts'
    modules keep a stack of the parts entered, and the innermost one is
    :attr:`current` (``rest`` outside all of them). A module inside another part's
    module (a stage inside the backbone) makes its own part current while it runs.

    (torch 2.3 has no ``torch.utils.module_tracker``, and ``FlopCounterMode``'s module
    tracking clones every tracked module's inputs and outputs, traffic that a byte
    count would see; plain hooks change nothing.)

    Args:
        model: the module whose submodules the parts name.
        parts: part -> names of its modules (``model.named_modules()`` names).
        rest: the part of everything outside the parts' modules.
        on_change: called with no arguments just before the current part changes.
    """

    def __init__(
        self,
        model: nn.Module,
        parts: Mapping[str, Sequence[str]],
        rest: str,
        on_change: Optional[Callable[[], None]] = None,
    ):
        modules = dict(model.named_modules())
        self.rest = rest
        self.parts = list(parts) + [rest]
        self._stack: List[str] = []
        self._on_change = on_change
        self._handles = []
        for part, names in parts.items():
            assert part != rest, f"part {part!r} has the name of the rest"
            for name in names:
                assert name in modules, (
                    f"part {part!r}: the model has no module {name!r}; it has "
                    f"{sorted(n for n in modules if n.count('.') < 2)[:20]}..."
                )
                module = modules[name]
                self._handles.append(module.register_forward_pre_hook(self._enter(part)))
                self._handles.append(module.register_forward_hook(self._exit(part)))

    @property
    def current(self) -> str:
        return self._stack[-1] if self._stack else self.rest

    def reset(self):
        """Forgets the parts entered (after a forward pass that raised)."""
        self._stack.clear()

    def remove(self):
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def _enter(self, part):
        def hook(module, inputs):
            if self._on_change is not None:
                self._on_change()
            self._stack.append(part)

        return hook

    def _exit(self, part):
        def hook(module, inputs, outputs):
            if self._on_change is not None:
                self._on_change()
            assert (
                self._stack and self._stack[-1] == part
            ), f"part {part!r} ended while {self._stack} were running"
            self._stack.pop()

        return hook


class PartTimer:
    """
    Times each part of ``model`` (see :class:`PartTracker`) over one call: each moment
    belongs to the innermost part running, so the parts add up to the call's time.

    Args:
        model, parts, rest: as :class:`PartTracker` takes them.
        clock: "wall" (``time.perf_counter``) or "cpu" (the process's CPU time, all
            threads: steadier on a shared machine).
    """

    def __init__(
        self, model: nn.Module, parts: Mapping[str, Sequence[str]], rest: str, clock: str = "wall"
    ):
        if clock not in ("wall", "cpu"):
            raise ValueError(f"clock must be 'wall' or 'cpu', got {clock!r}")
        self.clock = time.perf_counter if clock == "wall" else time.process_time
        self.tracker = PartTracker(model, parts, rest, on_change=self._switch)
        self.seconds: Dict[str, float] = defaultdict(float)
        self._last = None

    def _switch(self):
        now = self.clock()
        if self._last is not None:
            self.seconds[self.tracker.current] += now - self._last
        self._last = now

    def run(self, function: Callable, *args, **kwargs) -> "OrderedDict[str, float]":
        """
        Calls ``function(*args, **kwargs)`` once; returns seconds per part (every part
        and the rest, zero when it did not run) and "total".
        """
        self.tracker.reset()
        self.seconds.clear()
        start = self._last = self.clock()
        function(*args, **kwargs)
        self._switch()
        total = self._last - start
        self._last = None
        result = OrderedDict((part, self.seconds.get(part, 0.0)) for part in self.tracker.parts)
        result[TOTAL] = total
        return result

    def remove(self):
        self.tracker.remove()


def _extent(tensor: torch.Tensor):
    # (storage key, first byte, end byte) of the memory a tensor spans; a view spans its
    # own elements only, a broadcast (stride 0) dimension spans one element.
    itemsize = tensor.element_size()
    if tensor.numel() == 0:
        return None
    try:
        storage = tensor.untyped_storage()
    except (NotImplementedError, RuntimeError):  # opaque tensors (mkldnn, sparse)
        return ("tensor", id(tensor)), 0, tensor.numel() * itemsize
    span = 1 + sum((size - 1) * abs(stride) for size, stride in zip(tensor.shape, tensor.stride()))
    start = tensor.storage_offset() * itemsize
    return ("storage", storage.data_ptr()), start, start + span * itemsize


def _bytes_by_storage(extents) -> Dict:
    # Storage -> bytes: the hull of the spans of its tensors (each storage counted once).
    spans = {}
    for key, start, end in extents:
        if key in spans:
            start, end = min(start, spans[key][0]), max(end, spans[key][1])
        spans[key] = (start, end)
    return {key: end - start for key, (start, end) in spans.items()}


def _extents(tree) -> list:
    tensors = (x for x in tree_flatten(tree)[0] if isinstance(x, torch.Tensor))
    return [extent for extent in map(_extent, tensors) if extent is not None]


def _index_put_bytes(target, indices, values, accumulate=False, *unused) -> "tuple[int, int]":
    # ``target[indices] = values``: reads the indices and the values, writes (and with
    # ``accumulate`` reads) the indexed elements, not the whole target.
    index_shapes, kept, dim = [], 1, 0
    for index in indices:
        if index is None:
            kept *= target.shape[dim]
            dim += 1
        elif index.dtype in (torch.bool, torch.uint8):
            index_shapes.append((int(index.sum()),))
            dim += index.dim()
        else:
            index_shapes.append(tuple(index.shape))
            dim += 1
    elements = math.prod(torch.broadcast_shapes(*index_shapes)) * kept
    elements *= math.prod(target.shape[dim:])
    indexed = elements * target.element_size()
    read = _bytes_by_storage(_extents([i for i in indices if i is not None] + [values]))
    return sum(read.values()) + (indexed if accumulate else 0), indexed


def operator_bytes(func, args, kwargs, outputs) -> "tuple[int, int]":
    """
    (bytes read, bytes written) of one call of the aten operator ``func``.

    Read: every tensor argument, each storage once (the hull of the parts of it that
    the arguments span). Written: every output in fresh memory, and every argument the
    operator mutates (an in-place operator reads and writes its target; ``copy_``,
    ``fill_``, ``zero_`` and ``out=`` arguments are written only; ``index_put_``
    writes the indexed elements only). An operator whose
    outputs are all views of its inputs (view, reshape of a contiguous tensor, slicing,
    transpose, expand, detach) moves nothing, and so do allocations of uninitialized
    memory (``empty``).
    """
    packet = func._overloadpacket
    if packet in _NO_TRAFFIC:
        return 0, 0
    if packet in _INDEXED_WRITES:
        return _index_put_bytes(*args, **kwargs)
    mutated, write_only = [], set()
    for index, argument in enumerate(func._schema.arguments):
        if argument.alias_info is None or not argument.alias_info.is_write:
            continue
        value = args[index] if index < len(args) else kwargs.get(argument.name)
        extents = _extents(value)
        mutated += extents
        if argument.is_out or packet in _WRITE_ONLY:
            write_only.update(key for key, _, _ in extents)
    inputs = _extents((args, kwargs))
    input_keys = {key for key, _, _ in inputs}
    outputs = _extents(outputs)
    fresh = [extent for extent in outputs if extent[0] not in input_keys]
    if outputs and not mutated and not fresh:
        return 0, 0  # a view
    read = _bytes_by_storage(extent for extent in inputs if extent[0] not in write_only)
    written = _bytes_by_storage(mutated + fresh)
    return sum(read.values()), sum(written.values())


class BytesCounterMode(TorchDispatchMode):
    """
    Counts the bytes every aten operator reads and writes (:func:`operator_bytes`)
    while the mode is active, per part: ``part_of()`` names the part each operator
    belongs to (e.g. ``PartTracker.current``; default: everything is "total").

    Attributes:
        read, written: part -> bytes.
        by_operator: part -> operator name -> bytes read and written.
    """

    def __init__(self, part_of: Optional[Callable[[], str]] = None):
        super().__init__()
        self.part_of = part_of or (lambda: TOTAL)
        self.read: Dict[str, int] = defaultdict(int)
        self.written: Dict[str, int] = defaultdict(int)
        self.by_operator: Dict[str, Dict[str, int]] = defaultdict(lambda: defaultdict(int))

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        outputs = func(*args, **kwargs)
        read, written = operator_bytes(func, args, kwargs, outputs)
        part = self.part_of()
        self.read[part] += read
        self.written[part] += written
        if read or written:
            self.by_operator[part][str(func._overloadpacket).replace("aten.", "")] += read + written
        return outputs

    def bytes(self, part: str) -> int:
        return self.read.get(part, 0) + self.written.get(part, 0)


def sum_by_part(
    per_module: Mapping[str, int], parts: Mapping[str, Sequence[str]], rest: str
) -> "OrderedDict[str, int]":
    """
    Per-module totals that include their submodules (as fvcore counts mult-adds) ->
    totals per part, each module's own share going to the innermost part it belongs to,
    as :class:`PartTracker` attributes operators; ``rest`` gets what no part's module
    holds. ``per_module[""]`` is the whole model.
    """
    owner = {name: part for part, names in parts.items() for name in names}

    def nearest_tracked_ancestor(name):
        while name:
            name = name.rpartition(".")[0]
            if name in owner:
                return name
        return None

    nested = defaultdict(int)  # tracked module (None: the model) -> its tracked children
    for name in owner:
        nested[nearest_tracked_ancestor(name)] += per_module.get(name, 0)
    result = OrderedDict((part, 0) for part in parts)
    for name, part in owner.items():
        result[part] += per_module.get(name, 0) - nested[name]
    result[rest] = per_module.get("", 0) - nested[None]
    return result


def detector_part_counts(model: nn.Module, inputs, parts=None) -> "OrderedDict[str, Dict]":
    """
    Mult-adds (fvcore, :func:`~.complexity.mult_adds_by_module`) and bytes moved
    (:class:`BytesCounterMode`, one forward pass without gradients) per part of a
    Detectron2 model on ``inputs`` (a list of dicts).

    Args:
        parts: part -> module names (default :func:`detector_parts`); the rest is
            :data:`POST_PROCESSING`.

    Returns:
        part -> {"mult_adds", "bytes", "bytes_read", "bytes_written", "operators"
        (operator -> bytes, largest first)}, with every part, the rest and "total".
    """
    parts = detector_parts(model) if parts is None else parts
    mult_adds = sum_by_part(mult_adds_by_module(model, inputs), parts, POST_PROCESSING)
    tracker = PartTracker(model, parts, POST_PROCESSING)
    try:
        with torch.no_grad(), BytesCounterMode(lambda: tracker.current) as counter:
            model(inputs)
    finally:
        tracker.remove()
    counts = OrderedDict()
    for part in tracker.parts:
        operators = sorted(counter.by_operator.get(part, {}).items(), key=lambda kv: -kv[1])
        counts[part] = {
            "mult_adds": mult_adds[part],
            "bytes": counter.bytes(part),
            "bytes_read": counter.read.get(part, 0),
            "bytes_written": counter.written.get(part, 0),
            "operators": OrderedDict(operators),
        }
    keys = ("mult_adds", "bytes", "bytes_read", "bytes_written")
    totals = {key: sum(count[key] for count in counts.values()) for key in keys}
    operators = defaultdict(int)
    for count in counts.values():
        for name, moved in count["operators"].items():
            operators[name] += moved
    totals["operators"] = OrderedDict(sorted(operators.items(), key=lambda kv: -kv[1]))
    counts[TOTAL] = totals
    return counts


def _best_seconds(function: Callable[[], object], repeats: int) -> List[float]:
    function()  # warm-up: first-touch page faults, library initialization
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        seconds.append(time.perf_counter() - start)
    return seconds


def measure_gemm_flops(size: int = 4096, repeats: int = 3) -> Dict:
    """
    The machine's fp32 matrix-multiply peak at the current thread count: ``torch.mm``
    of two ``size`` x ``size`` matrices, 2 * size**3 FLOP, best of ``repeats`` runs.

    Returns:
        dict: "flop_per_s" (the best run), "size", "seconds" (every run), "threads".
    """
    generator = torch.Generator().manual_seed(0)
    a = torch.rand(size, size, generator=generator)
    b = torch.rand(size, size, generator=generator)
    out = torch.empty(size, size)
    seconds = _best_seconds(lambda: torch.mm(a, b, out=out), repeats)
    return {
        "flop_per_s": 2 * size**3 / min(seconds),
        "size": size,
        "seconds": seconds,
        "threads": torch.get_num_threads(),
    }


def _largest_cache_bytes() -> Optional[int]:
    sizes = []
    root = "/sys/devices/system/cpu/cpu0/cache"
    try:
        for index in os.listdir(root):
            with open(os.path.join(root, index, "size")) as f:
                text = f.read().strip()
            scale = {"K": 1024, "M": 1024**2, "G": 1024**3}.get(text[-1:], 1)
            sizes.append(int(text.rstrip("KMG")) * scale)
    except (OSError, ValueError):
        return None
    return max(sizes) if sizes else None


def measure_memory_bandwidth(array_bytes: Optional[int] = None, repeats: int = 5) -> Dict:
    """
    The machine's memory bandwidth at the current thread count, STREAM-like: "copy"
    (b = a; reads and writes one array each) and "add" (c = a + b; reads two, writes
    one) over fp32 arrays of ``array_bytes`` each (default: 8 times the largest CPU
    cache, at least 256 MB), bytes read and written per second, best of ``repeats``.

    Returns:
        dict: "bytes_per_s" (the larger of copy and add), "copy_bytes_per_s",
        "add_bytes_per_s", "array_bytes", "largest_cache_bytes", "seconds" (per kernel,
        every run), "threads".
    """
    cache = _largest_cache_bytes()
    if array_bytes is None:
        array_bytes = max(256 * 1024**2, 8 * (cache or 0))
    numel = array_bytes // 4
    a = torch.full((numel,), 1.0)
    b = torch.full((numel,), 2.0)
    c = torch.empty(numel)
    seconds = {
        "copy": _best_seconds(lambda: b.copy_(a), repeats),
        "add": _best_seconds(lambda: torch.add(a, b, out=c), repeats),
    }
    moved = {"copy": 2 * numel * 4, "add": 3 * numel * 4}
    rates = {kernel: moved[kernel] / min(s) for kernel, s in seconds.items()}
    return {
        "bytes_per_s": max(rates.values()),
        "copy_bytes_per_s": rates["copy"],
        "add_bytes_per_s": rates["add"],
        "array_bytes": numel * 4,
        "largest_cache_bytes": cache,
        "seconds": seconds,
        "threads": torch.get_num_threads(),
    }


def roofline_row(
    mult_adds: float,
    bytes_moved: float,
    seconds: Optional[float],
    peak_flops: float,
    bandwidth: float,
) -> Dict:
    """
    One part's roofline: compute bound 2 * mult-adds / ``peak_flops`` (FLOP/s), memory
    bound ``bytes_moved`` / ``bandwidth`` (bytes/s), the larger of the two as the bound
    and what it is ("compute" or "memory"; None when the part does no work), the
    arithmetic intensity (FLOP per byte), and, with the measured ``seconds``, how many
    times the bound the part took ("x_from_roofline").
    """
    if not (peak_flops > 0 and bandwidth > 0):
        raise ValueError(
            f"peak FLOP/s and bandwidth must be positive, got {peak_flops}, {bandwidth}"
        )
    flop = 2 * mult_adds
    compute_s = flop / peak_flops
    memory_s = bytes_moved / bandwidth
    bound_s = max(compute_s, memory_s)
    if bound_s == 0:
        bound_by = None
    else:
        bound_by = "compute" if compute_s >= memory_s else "memory"
    return {
        "mult_adds": mult_adds,
        "flop": flop,
        "bytes": bytes_moved,
        "flop_per_byte": flop / bytes_moved if bytes_moved else None,
        "compute_bound_s": compute_s,
        "memory_bound_s": memory_s,
        "bound_s": bound_s,
        "bound_by": bound_by,
        "measured_s": seconds,
        "x_from_roofline": seconds / bound_s if seconds is not None and bound_s > 0 else None,
    }


def roofline_rows(
    counts: Mapping[str, Mapping],
    seconds: Optional[Mapping[str, float]],
    peak_flops: float,
    bandwidth: float,
) -> "OrderedDict[str, Dict]":
    """
    :func:`roofline_row` for every part of ``counts`` (:func:`detector_part_counts`)
    with its measured ``seconds`` (part -> seconds, "total" included; None: no times),
    and a "total" row whose bound is the sum of the parts' bounds (the parts run one
    after the other, each held back by its own limit), with "bound_by" the limit that
    holds back most of it and "memory_bound_share" the share of memory-bound parts.
    """
    seconds = seconds or {}
    rows = OrderedDict()
    for part, count in counts.items():
        if part == TOTAL:
            continue
        rows[part] = roofline_row(
            count["mult_adds"], count["bytes"], seconds.get(part), peak_flops, bandwidth
        )
    total = roofline_row(
        sum(r["mult_adds"] for r in rows.values()),
        sum(r["bytes"] for r in rows.values()),
        seconds.get(TOTAL),
        peak_flops,
        bandwidth,
    )
    total["bound_s"] = sum(r["bound_s"] for r in rows.values())
    memory_s = sum(r["bound_s"] for r in rows.values() if r["bound_by"] == "memory")
    total["memory_bound_share"] = memory_s / total["bound_s"] if total["bound_s"] else None
    if total["bound_s"]:
        total["bound_by"] = "memory" if 2 * memory_s > total["bound_s"] else "compute"
    else:
        total["bound_by"] = None
    if total["measured_s"] is not None and total["bound_s"] > 0:
        total["x_from_roofline"] = total["measured_s"] / total["bound_s"]
    rows[TOTAL] = total
    return rows
