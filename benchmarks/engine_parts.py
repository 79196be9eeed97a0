#!/usr/bin/env python
"""
Where the inference time goes, per part of the Mask R-CNN (stem, res2..res5, FPN, RPN,
box head with its ROIAlign, mask head with its ROIAlign, post-processing) and per engine:
PyTorch eager, OpenVINO fp32 and OpenVINO INT8, with one model compared part by part with
each of the others.

    python -m benchmarks.engine_parts --models AttoNet-A MobileNetV2-FPN ShuffleNetV2-FPN \\
        --sizes 800 --engines pytorch openvino openvino-int8 --repeats 3 --warmup 1
    python -m benchmarks.engine_parts --from-json output/benchmarks/engine_parts.json

Eager part times come from forward hooks (benchmarks.roofline_model.PartTimer), with the
roofline bound of each part (mult-adds, bytes moved and the machine's limits, as
benchmarks/roofline.py measures them). OpenVINO part times come from its per-node
performance counters: each node of the compiled model belongs to the part whose PyTorch
module scope the ONNX export wrote into its name ("/backbone/bottom_up/res2/..."); a node
OpenVINO made itself takes the part of the layers fused into it, else of the nodes that
read its output, else of the nodes it reads, else it is reported as unattributed; a
layout Reorder or a FakeQuantize takes the part of the nodes it converts its tensor for.
The runs of all models and engines are interleaved round by round, as in
bench_inference.py.
Writes engine_parts.json to --output-dir and its tables and findings to
docs/BENCHMARKS.md, between <!-- engine-parts:begin --> and <!-- engine-parts:end -->.
"""

import argparse
import logging
import os
import shlex
import statistics
import sys
import tempfile
import time
from collections import OrderedDict, defaultdict
from datetime import timedelta
from typing import Dict, Iterable, List, Mapping, NamedTuple, Optional, Sequence, Tuple

from torch import nn

from atto_detectron.analysis.formatting import format_number
from atto_detectron.deploy import detector_inputs, image_tensor, int8_dir, synthetic_image
from atto_detectron.deploy.export import ExportedModel
from atto_detectron.modeling import detector_postprocess
from benchmarks.common import (
    MODELS,
    REPO_ROOT,
    add_common_arguments,
    describe_cpu,
    image_size,
    machine_info,
    setup_process,
    write_doc_section,
)
from benchmarks.engines import build_benchmark_model, make_predictor
from benchmarks.roofline import (
    add_docs_arguments,
    add_limit_arguments,
    best_limits,
    measure_machine,
    measure_or_regenerate,
)
from benchmarks.roofline_model import (
    POST_PROCESSING,
    TOTAL,
    PartTimer,
    detector_part_counts,
    detector_parts,
    roofline_rows,
)

DOC_SECTION = "engine-parts"
JSON_NAME = "engine_parts.json"
DEFAULT_MODELS = ["AttoNet-A", "MobileNetV2-FPN", "ShuffleNetV2-FPN"]
# Part times of the PyTorch engines come from forward hooks, of OpenVINO's from its
# performance counters.
EAGER_ENGINES = ("pytorch", "pytorch-fused", "pytorch-fused-cl")
PROFILED_ENGINES = ("openvino", "openvino-int8")
ENGINE_CHOICES = EAGER_ENGINES + PROFILED_ENGINES
# Rows of an OpenVINO run besides the parts: the profiled nodes no rule places, and the
# call's wall time that no node accounts for.
UNATTRIBUTED = "unattributed"
OUTSIDE_NODES = "outside the nodes"
# How a node of the compiled model got its part (attribute_nodes), in order of trust.
RULES = ("name", "fused layers", "readers", "inputs", UNATTRIBUTED)
# Node types of OpenVINO's CPU plugin that convert a tensor for the nodes that read it.
CONVERSIONS = ("Reorder", "FakeQuantize")
MICROSECOND = timedelta(microseconds=1)
# Unattributed nodes listed per run in the JSON, by time.
UNATTRIBUTED_EXAMPLES = 5
# Containers whose forward is never called: the ONNX exporter gives them no scope.
_UNCALLED = (nn.ModuleDict, nn.ModuleList)


class RuntimeNode(NamedTuple):
    """
    A node of OpenVINO's compiled (runtime) model: its name as the performance counters
    report it, the names of the original layers fused into it, the names of its inputs,
    and its type in the CPU plugin ("Convolution", "MVN", "Reorder", ...).
    """

    name: str
    fused: Tuple[str, ...] = ()
    inputs: Tuple[str, ...] = ()
    type: str = ""


def onnx_scope(model: nn.Module, module_name: str) -> str:
    """
    The scope torch.onnx writes into the names of the nodes that module ``module_name``
    of ``model`` (the exported GeneralizedRCNN) makes, e.g. "/backbone/bottom_up/res2/"
    for "backbone.bottom_up.stages.res2": one level per module called on the way down,
    each named by its last non-numeric name atom onwards ("res2.0" for the block "0" of
    "res2"); containers that are never called (ModuleDict, ModuleList) add no level.
    """
    modules = dict(model.named_modules())
    atoms = module_name.split(".")
    levels = []
    for end in range(1, len(atoms) + 1):
        if isinstance(modules[".".join(atoms[:end])], _UNCALLED):
            continue
        start = end - 1
        while start > 0 and atoms[start].isnumeric():
            start -= 1
        levels.append(".".join(atoms[start:end]))
    return "/" + "".join(level + "/" for level in levels)


def part_scopes(model: nn.Module, parts: Optional[Mapping[str, Sequence[str]]] = None):
    """
    ONNX scope -> part for the modules of each part (default :func:`detector_parts`),
    longest scope first, so that the first scope a node name starts with is the innermost
    part's, as :class:`~benchmarks.roofline_model.PartTimer` counts eager time.
    """
    parts = detector_parts(model) if parts is None else parts
    scopes = {onnx_scope(model, name): part for part, names in parts.items() for name in names}
    return OrderedDict(sorted(scopes.items(), key=lambda item: -len(item[0])))


def part_of_node(name: str, scopes: Mapping[str, str]) -> Optional[str]:
    """
    The part of a node named ``name`` in an OpenVINO profile of an ONNX export: the part
    of the longest scope of ``scopes`` (:func:`part_scopes`) the name starts with;
    :data:`POST_PROCESSING` for other names with a scope ("/Div", "/roi_heads/Gather_3":
    the detector's own code around the parts, as PyTorch eager counts it); None for a
    name without scope (a node OpenVINO made, e.g. "MVN_1862", "Multiply_33974").
    """
    if not name.startswith("/"):
        return None
    for scope, part in scopes.items():
        if name.startswith(scope):
            return part
    return POST_PROCESSING


def _unanimous(parts: Iterable[Optional[str]]) -> Optional[str]:
    found = {part for part in parts if part is not None}
    return found.pop() if len(found) == 1 else None


def attribute_nodes(
    graph: Sequence[RuntimeNode], scopes: Mapping[str, str]
) -> Dict[str, Tuple[Optional[str], str]]:
    """
    Node name -> (part or None, rule) for the nodes of a compiled model (in topological
    order, :func:`runtime_graph`). The rules, in order (:data:`RULES`):

    * "name": the node's name has a scope (:func:`part_of_node`);
    * "fused layers": the original layers fused into the node have scopes, all of one
      part ("Multiply_33974" holds "/backbone/bottom_up/res2/res2.0/Relu");
    * "readers": the nodes that read its output all belong to one part, by these rules
      (a GroupNorm that OpenVINO decomposed into MVN and Multiply, the batch indices of
      ROIAlign's boxes);
    * "inputs": the nodes it reads all belong to one part, by these rules;
    * otherwise (None, "unattributed").

    A conversion (:data:`CONVERSIONS`: a layout Reorder, a FakeQuantize) is made for the
    nodes that read it, and named after them or after the node it converts
    ("/Unsqueeze_7/fq_output_0" quantizes the padded image for the stem's conv): it takes
    the part of its readers first, then these rules.
    """
    conversions = {node.name for node in graph if node.type in CONVERSIONS}
    direct = {}
    for node in graph:
        part, rule = part_of_node(node.name, scopes), "name"
        if part is None:
            part, rule = (
                _unanimous(part_of_node(name, scopes) for name in node.fused),
                "fused layers",
            )
        direct[node.name] = (part, rule) if part is not None else None
    readers = defaultdict(list)
    for node in graph:
        for name in node.inputs:
            readers[name].append(node.name)
    by_readers = {}
    for node in reversed(graph):
        known = direct[node.name]
        if known and node.name not in conversions:
            by_readers[node.name] = known[0]
        else:
            by_readers[node.name] = _unanimous(by_readers.get(r) for r in readers[node.name])
    by_inputs = {}
    for node in graph:
        known = direct[node.name]
        by_inputs[node.name] = (
            known[0] if known else _unanimous(by_inputs.get(i) for i in node.inputs)
        )
    attribution = {}
    for node in graph:
        conversion = node.name in conversions
        if direct[node.name] and not conversion:
            attribution[node.name] = direct[node.name]
        elif by_readers[node.name] is not None:
            attribution[node.name] = (by_readers[node.name], "readers")
        elif direct[node.name]:
            attribution[node.name] = direct[node.name]
        elif by_inputs[node.name] is not None:
            attribution[node.name] = (by_inputs[node.name], "inputs")
        else:
            attribution[node.name] = (None, UNATTRIBUTED)
    return attribution


def runtime_graph(compiled) -> List[RuntimeNode]:
    """The nodes of an OpenVINO ``CompiledModel``'s runtime model, in execution order."""
    graph = []
    for op in compiled.get_runtime_model().get_ordered_ops():
        info = op.get_rt_info()

        def read(key):
            return info[key].astype(str) if key in info else ""

        inputs = tuple(i.get_source_output().get_node().get_friendly_name() for i in op.inputs())
        fused = tuple(filter(None, read("originalLayersNames").split(",")))
        graph.append(RuntimeNode(op.get_friendly_name(), fused, inputs, read("layerType")))
    return graph


def profile_by_part(
    profile: Iterable[Tuple[str, float]],
    attribution: Mapping[str, Tuple[Optional[str], str]],
    scopes: Mapping[str, str],
    parts: Sequence[str],
) -> Tuple["OrderedDict[str, float]", "OrderedDict[str, float]", "OrderedDict[str, float]"]:
    """
    Sums one inference's profile, (node name, seconds) pairs (OpenVINO's ``real_time`` of
    each node), per part.

    Args:
        attribution: of :func:`attribute_nodes`; a profiled node missing from it (a layer
            OpenVINO fused away, never run) is placed by its name alone.
        parts: the parts, in order (:data:`POST_PROCESSING` is added).

    Returns:
        (seconds per part, then :data:`UNATTRIBUTED`; seconds per rule of
        :data:`RULES`; seconds of each unattributed node). Every node's time is in
        exactly one part or in :data:`UNATTRIBUTED`, and in exactly one rule.
    """
    by_part = OrderedDict((part, 0.0) for part in list(parts) + [POST_PROCESSING, UNATTRIBUTED])
    by_rule = OrderedDict((rule, 0.0) for rule in RULES)
    unattributed = defaultdict(float)
    for name, seconds in profile:
        if name in attribution:
            part, rule = attribution[name]
        else:
            part = part_of_node(name, scopes)
            rule = "name" if part is not None else UNATTRIBUTED
        if part is None:
            part = UNATTRIBUTED
            unattributed[name] += seconds
        by_part[part] += seconds
        by_rule[rule] += seconds
    return by_part, by_rule, OrderedDict(sorted(unattributed.items(), key=lambda kv: -kv[1]))


def _profiled_model(exported: ExportedModel, export_dir: str) -> ExportedModel:
    # The same export, compiled with the same properties and OpenVINO's per-node
    # performance counters on (same outputs, same order).
    return ExportedModel(
        export_dir,
        allow_spinning=False,
        engine=exported.engine,
        openvino_properties={"PERF_COUNT": "YES"},
    )


class ProfiledPredictor:
    """
    Runs an OpenVINO predictor of :func:`~benchmarks.engines.make_predictor` (the
    exported model, then ``detector_postprocess``) with OpenVINO's per-node performance
    counters on, and times each part of one call (:meth:`run`).

    OpenVINO's CPU plugin reports for each node the mean of all its runs since the model
    was compiled, in whole microseconds (``real_time``). Every node of the benchmark's
    fixed workload runs once per inference, so the running total of a node after ``k``
    inferences is its mean times ``k``, and one inference's node times are the
    differences of the running totals before and after it: exact to ``k`` microseconds
    per node (the mean is rounded down), whatever ran before (the first, slower runs of
    each input size). Every inference of the compiled model must go through
    :meth:`run`, which counts them.
    """

    def __init__(self, predictor, export_dir: str, model: nn.Module):
        predictor.exported = _profiled_model(predictor.exported, export_dir)
        self.exported = predictor.exported
        self.compiled = self.exported.openvino_compiled_model
        self.request = self.exported.openvino_request
        self.parts = list(detector_parts(model))
        self.scopes = part_scopes(model)
        self.attribution = attribute_nodes(runtime_graph(self.compiled), self.scopes)
        self.inferences = 0
        self._totals_us: Dict[str, int] = {}

    def _node_seconds(self) -> List[Tuple[str, float]]:
        """
        (node name, seconds) of every node in the last inference: the differences of the
        nodes' running totals (call once per inference, after it).
        """
        self.inferences += 1
        totals = OrderedDict(
            (info.node_name, info.real_time // MICROSECOND * self.inferences)
            for info in self.request.get_profiling_info()
        )
        seconds = [
            (name, (total - self._totals_us.get(name, 0)) * 1e-6) for name, total in totals.items()
        ]
        self._totals_us = totals
        return seconds

    def run(self, image):
        """
        One call on ``image``. Returns (seconds per row: each part, post-processing (the
        graph's nodes outside the parts, and ``detector_postprocess`` after the graph),
        :data:`UNATTRIBUTED`, :data:`OUTSIDE_NODES` (the exported model's wall time minus
        its nodes' time) and "total", the call's wall time; seconds per rule of
        :data:`RULES`; details: "pasting" (``detector_postprocess``), "profiled" (the
        nodes' time), "nodes" (how many were profiled), "unattributed_nodes" (name ->
        seconds)).
        """
        start = time.perf_counter()
        instances = self.exported(image)
        middle = time.perf_counter()
        detector_postprocess(instances, image.shape[-2], image.shape[-1])
        end = time.perf_counter()
        profile = self._node_seconds()
        by_part, by_rule, unattributed = profile_by_part(
            profile, self.attribution, self.scopes, self.parts
        )
        profiled = sum(by_part.values())
        seconds = OrderedDict(by_part)
        seconds[POST_PROCESSING] += end - middle
        seconds[OUTSIDE_NODES] = (middle - start) - profiled
        seconds[TOTAL] = end - start
        details = {
            "pasting": end - middle,
            "profiled": profiled,
            "nodes": len(profile),
            "unattributed_nodes": unattributed,
        }
        return seconds, by_rule, details


def _command(argv) -> str:
    return " ".join(["python", "-m", "benchmarks.engine_parts"] + [shlex.quote(a) for a in argv])


def get_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_arguments(parser, sizes=(800,), repeats=3)
    parser.set_defaults(models=DEFAULT_MODELS, warmup=1)
    parser.add_argument(
        "--engines",
        nargs="+",
        default=["pytorch", "openvino", "openvino-int8"],
        choices=ENGINE_CHOICES,
        help="PyTorch engines (forward hooks) and OpenVINO engines (performance counters) "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--subject",
        default="AttoNet-A",
        choices=list(MODELS),
        help="the model compared part by part with each of the others (default: %(default)s)",
    )
    parser.add_argument(
        "--no-roofline",
        action="store_true",
        help="skip the eager roofline (mult-adds and bytes per part, the machine's limits)",
    )
    add_limit_arguments(parser)
    add_docs_arguments(parser, DOC_SECTION, JSON_NAME)
    parser.add_argument(
        "--docs-section",
        default=DOC_SECTION,
        metavar="NAME",
        help="the section of --docs to write (default: %(default)s)",
    )
    return parser


def prepare_runs(args, logger, work_dir: str):
    """
    Every (model, engine) of ``args``: (predictor, part timer (PartTimer or
    :class:`ProfiledPredictor`), workload), with the OpenVINO exports in ``work_dir``;
    and the INT8 calibration of each model (as bench_inference.py calibrates).
    """
    from benchmarks.bench_inference import int8_calibration

    sample = image_tensor(synthetic_image(*image_size(max(args.sizes), args.aspect)))
    runs, calibration = OrderedDict(), {}
    for name in args.models:
        cfg, model = build_benchmark_model(MODELS[name], args.opts)
        workload = {
            "proposals": cfg.MODEL.RPN.POST_NMS_TOPK_TEST,
            "detections": cfg.TEST.DETECTIONS_PER_IMAGE,
        }
        inputs = None
        if "openvino-int8" in args.engines:
            inputs, calibration[name] = int8_calibration(cfg, logger)
        for engine in args.engines:
            logger.info(f"preparing {name} / {engine}")
            if engine in EAGER_ENGINES:
                predict = make_predictor(model, engine, sample)
                timer = PartTimer(predict.model, detector_parts(predict.model), POST_PROCESSING)
            else:
                folder = os.path.join(work_dir, f"{name}-{engine}")
                predict = make_predictor(
                    model,
                    engine,
                    sample,
                    work_dir=folder,
                    calibration=inputs,
                    calibration_source=calibration.get(name, ""),
                )
                if engine.endswith("-int8"):
                    folder = int8_dir(folder, engine)
                timer = ProfiledPredictor(predict, folder, model)
            runs[(name, engine)] = (predict, timer, workload)
    return runs, calibration


def _sample(predict, timer, image):
    # One timed call: (seconds per row, seconds per rule or None, details or None).
    if isinstance(timer, ProfiledPredictor):
        return timer.run(image)
    return timer.run(predict, image), None, None


def measure_runs(args, runs, logger, count: bool = False) -> "OrderedDict[str, Dict]":
    """
    Times the runs of :func:`prepare_runs` part by part at each size of ``args``:
    ``args.warmup`` untimed rounds, then ``args.repeats`` rounds, each calling every run
    once. With ``count``, also counts each eager part's mult-adds and bytes (an entry's
    "counts", for :func:`add_rooflines`). Returns "model/engine/size" -> entry.
    """
    entries = OrderedDict()
    for short in args.sizes:
        image = image_tensor(synthetic_image(*image_size(short, args.aspect)))
        counts = {}
        for (name, engine), (predict, _timer, _workload) in runs.items():
            if count and engine in EAGER_ENGINES:
                logger.info(f"{name} / {engine} at {short}: counting mult-adds and bytes")
                counts[(name, engine)] = detector_part_counts(predict.model, detector_inputs(image))
        logger.info(f"timing at {short} ({len(runs)} runs per round)")
        for _ in range(args.warmup):
            for predict, timer, _workload in runs.values():
                _sample(predict, timer, image)
        samples = defaultdict(list)
        for _ in range(args.repeats):
            for key, (predict, timer, _workload) in runs.items():
                samples[key].append(_sample(predict, timer, image))
        for (name, engine), (_predict, timer, workload) in runs.items():
            taken = samples[(name, engine)]
            entry = {
                "model": name,
                "config": os.path.relpath(MODELS[name], REPO_ROOT),
                "engine": engine,
                "short_edge": short,
                "image_size": image_size(short, args.aspect),
                **workload,
                "seconds": _by_key([s[0] for s in taken]),
            }
            if isinstance(timer, ProfiledPredictor):
                details = [s[2] for s in taken]
                entry["rules_s"] = _by_key([s[1] for s in taken])
                entry["pasting_s"] = [d["pasting"] for d in details]
                entry["profiled_s"] = [d["profiled"] for d in details]
                entry["profiled_nodes"] = details[-1]["nodes"]
                last = details[-1]["unattributed_nodes"].items()
                entry["unattributed_nodes_s"] = OrderedDict(
                    [(node, t) for node, t in last if t > 0][:UNATTRIBUTED_EXAMPLES]
                )
            if (name, engine) in counts:
                entry["counts"] = {
                    part: {"mult_adds": c["mult_adds"], "bytes": c["bytes"]}
                    for part, c in counts[(name, engine)].items()
                }
            entries[f"{name}/{engine}/{short}"] = entry
            _log_entry(logger, entry)
    return entries


def add_rooflines(entries: Mapping[str, Dict], limits: Mapping) -> None:
    """
    Replaces the "counts" of each entry by its "roofline", :func:`roofline_rows` of the
    counts and the medians at the machine's ``limits`` (:func:`best_limits`).
    """
    peak, bandwidth = limits["gemm"]["flop_per_s"], limits["memory"]["bytes_per_s"]
    for entry in entries.values():
        if "counts" in entry:
            medians = {part: statistics.median(s) for part, s in entry["seconds"].items()}
            entry["roofline"] = roofline_rows(entry.pop("counts"), medians, peak, bandwidth)


def run(args, argv) -> dict:
    """
    Times every model and engine part by part, round by round; with the roofline, also
    counts each eager part's mult-adds and bytes and measures the machine's limits
    before and after the models (the better of the two counts).
    """
    import openvino

    logger = logging.getLogger("engine_parts")
    setup_process(args)
    machine = machine_info(args.threads, args.allocator)
    machine["openvino"] = openvino.__version__
    report = {
        "command": _command(argv),
        "machine": machine,
        "opts": args.opts,
        "clock": "wall",
        "repeats": args.repeats,
        "warmup": args.warmup,
        "subject": args.subject,
        "calibration": {},
        "limits": None,
        "runs": None,
    }
    roofline = not args.no_roofline and any(e in EAGER_ENGINES for e in args.engines)
    measured = [measure_machine(args)] if roofline else []
    with tempfile.TemporaryDirectory(prefix="engine_parts_") as work_dir:
        runs, report["calibration"] = prepare_runs(args, logger, work_dir)
        report["runs"] = measure_runs(args, runs, logger, count=roofline)
    if roofline:
        measured.append(measure_machine(args))
        report["limits"] = best_limits(measured)
        add_rooflines(report["runs"], report["limits"])
    return report


def _by_key(samples: Sequence[Mapping[str, float]]) -> "OrderedDict[str, List[float]]":
    # Per key (the keys of every sample are the same), the values of every sample.
    return OrderedDict((key, [sample[key] for sample in samples]) for key in samples[0])


def _log_entry(logger, entry):
    cells = ", ".join(
        f"{part} {statistics.median(s) * 1000:.1f}" for part, s in entry["seconds"].items()
    )
    logger.info(f"{entry['model']} / {entry['engine']} at {entry['short_edge']} (ms): {cells}")


# ----------------------------------------------------------------------------- report


def spread(seconds: Sequence[float]) -> Dict[str, float]:
    """Median, min and max of a part's repeats (seconds)."""
    return {"median": statistics.median(seconds), "min": min(seconds), "max": max(seconds)}


def difference(subject: Sequence[float], other: Sequence[float]) -> Dict:
    """
    The subject's median minus the other's (seconds), "resolved" when the ranges of the
    two (min to max over the repeats) do not overlap, each with two repeats at least:
    a difference inside the spread of the repeats is not resolved.
    """
    a, b = spread(subject), spread(other)
    resolved = (
        len(subject) >= 2 and len(other) >= 2 and (a["min"] > b["max"] or a["max"] < b["min"])
    )
    return {"seconds": a["median"] - b["median"], "resolved": resolved}


def format_difference(diff: Dict) -> str:
    """ "+20.1 ms", or "not resolved (+0.4 ms)"."""
    text = f"{diff['seconds'] * 1000:+.1f} ms"
    return text if diff["resolved"] else f"not resolved ({text})"


def _ms(seconds: float) -> str:
    # Milliseconds with one decimal, never "-0.0" (a node time a microsecond below zero).
    text = format_number(seconds, 1e-3)
    return "0.0" if text == "-0.0" else text


def _cell(seconds: Optional[Sequence[float]]) -> str:
    if not seconds:
        return "-"
    s = spread(seconds)
    if len(seconds) < 2:
        return _ms(s["median"])
    return f"{_ms(s['median'])} [{_ms(s['min'])}, {_ms(s['max'])}]"


def _bound_cell(row: Optional[Mapping]) -> str:
    if not row or row.get("bound_by") is None:
        return "-"
    return (
        f"{format_number(row['bound_s'], 1e-3)} {row['bound_by']}, "
        f"{format_number(row['x_from_roofline'], 1, 1)}x"
    )


def _rows(entries: Sequence[Mapping]) -> List[str]:
    # Every row of any of the entries, in their order ("total" last).
    rows = OrderedDict()
    for entry in entries:
        for row in entry["seconds"]:
            if row != TOTAL:
                rows[row] = None
    return list(rows) + [TOTAL]


def format_table(entries: Sequence[Mapping]) -> str:
    """
    One engine at one size: per row (part), each model's median ms and [min, max] over
    the repeats, and, where the entries have a roofline, its bound (ms, what bounds it,
    measured / bound).
    """
    with_bound = any("roofline" in entry for entry in entries)
    header = ["part"]
    for entry in entries:
        header.append(f"{entry['model']} (ms)")
        if with_bound:
            header.append("bound (ms), x")
    lines = [
        "| " + " | ".join(header) + " |",
        "|:--|" + "--:|" * (len(header) - 1),
    ]
    for row in _rows(entries):
        cells = [f"**{row}**" if row == TOTAL else row]
        for entry in entries:
            cells.append(_cell(entry["seconds"].get(row)))
            if with_bound:
                cells.append(_bound_cell(entry.get("roofline", {}).get(row)))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _roofline_clause(subject: Mapping, other: Mapping, part: str) -> str:
    # The eager roofline of a part for both models, and how far apart their bounds are.
    a = subject.get("roofline", {}).get(part)
    b = other.get("roofline", {}).get(part)
    if not a or not b or a.get("bound_by") is None or b.get("bound_by") is None:
        return ""

    # The difference of the eager medians is the difference of the bounds (more or less
    # work: mult-adds or bytes) plus the rest (how far each runs from its bound).
    extra = statistics.median(subject["seconds"][part]) - statistics.median(other["seconds"][part])
    work = a["bound_s"] - b["bound_s"]
    bounds = ", ".join(f"{format_number(r['bound_s'], 1e-3)} {r['bound_by']}" for r in (a, b))
    distances = ", ".join(f"{format_number(r['x_from_roofline'], 1, 1)}x" for r in (a, b))
    return (
        f"; eager {extra * 1000:+.1f} = work {work * 1000:+.1f} ({bounds}) + distance "
        f"{(extra - work) * 1000:+.1f} ({distances})"
    )


def compare(report: Mapping, short: int, subject: str, other: str) -> Tuple[List[Dict], List]:
    """
    Per row of the two models at ``short`` (total included): the subject's median minus
    the other's, per engine (:func:`difference`), and the engines where the subject is
    slower (the difference resolved and positive); and the (engine, subject's entry,
    other's entry) of the engines both ran.
    """
    by_engine = OrderedDict()
    for entry in report["runs"].values():
        if entry["short_edge"] == short and entry["model"] in (subject, other):
            by_engine.setdefault(entry["engine"], {})[entry["model"]] = entry
    pairs = [(engine, e[subject], e[other]) for engine, e in by_engine.items() if len(e) == 2]
    rows = _rows([entry for _, a, b in pairs for entry in (a, b)])
    comparison = []
    for row in rows:
        diffs = OrderedDict()
        for engine, a, b in pairs:
            if row in a["seconds"] and row in b["seconds"]:
                diffs[engine] = difference(a["seconds"][row], b["seconds"][row])
        slower = [e for e, d in diffs.items() if d["resolved"] and d["seconds"] > 0]
        comparison.append({"row": row, "differences": diffs, "slower_in": slower})
    return comparison, pairs


def format_findings(report: Mapping, short: int) -> List[str]:
    """
    Per other model, the rows (parts) where the subject is slower in at least one engine,
    with the difference in each engine and the eager roofline of both models; then the
    rows where it is slower in none.
    """
    subject = report.get("subject")
    models = list(OrderedDict((e["model"], None) for e in report["runs"].values()))
    if subject not in models:
        return []
    lines = []
    for other in models:
        if other == subject:
            continue
        comparison, pairs = compare(report, short, subject, other)
        if not pairs:
            continue
        eager = next(
            ((a, b) for engine, a, b in pairs if engine in EAGER_ENGINES and "roofline" in a),
            None,
        )
        total = next(c for c in comparison if c["row"] == TOTAL)
        totals = ", ".join(f"{e} {format_difference(d)}" for e, d in total["differences"].items())
        lines += ["", f"**{subject} against {other}** (total: {totals}).", ""]
        slower = [c for c in comparison if c["row"] != TOTAL and c["slower_in"]]
        for item in slower:
            diffs = ", ".join(f"{e} {format_difference(d)}" for e, d in item["differences"].items())
            why = _roofline_clause(*eager, item["row"]) if eager else ""
            lines.append(f"- {item['row']}: {diffs}{why}.")
        rest = [
            c["row"]
            for c in comparison
            if c["row"] not in (TOTAL, UNATTRIBUTED, OUTSIDE_NODES) and not c["slower_in"]
        ]
        if not slower:
            lines.append(f"{subject} is slower than {other} in no part.")
        elif rest:
            lines += ["", f"Slower in no engine: {', '.join(rest)}."]
    return lines


def format_int8_gains(
    report: Mapping, short: int, fp32: str = "openvino", int8: str = "openvino-int8"
) -> List[str]:
    """
    Per model that ran both ``fp32`` and ``int8`` at ``short``: each part's fp32 median
    over its INT8 median (the speed-up INT8 gives that part), the total's, and the share
    of the INT8 total spent in parts that INT8 made less than 1.25x faster.
    Empty when no model ran both engines.
    """
    by_model = OrderedDict()
    for entry in report["runs"].values():
        if entry["short_edge"] == short and entry["engine"] in (fp32, int8):
            by_model.setdefault(entry["model"], {})[entry["engine"]] = entry
    pairs = [(model, e[fp32], e[int8]) for model, e in by_model.items() if len(e) == 2]
    if not pairs:
        return []
    rows = [
        row
        for row in _rows([entry for _, a, b in pairs for entry in (a, b)])
        if row not in (UNATTRIBUTED, OUTSIDE_NODES)
    ]
    header = ["part"] + [model for model, _, _ in pairs]
    lines = ["| " + " | ".join(header) + " |", "|:--|" + "--:|" * len(pairs)]
    slow_share = {}
    for row in rows:
        cells = [f"**{row}**" if row == TOTAL else row]
        for model, a, b in pairs:
            if row not in a["seconds"] or row not in b["seconds"]:
                cells.append("-")
                continue
            before = statistics.median(a["seconds"][row])
            after = statistics.median(b["seconds"][row])
            gain = before / after if after > 0 else float("inf")
            cells.append(f"{gain:.2f}x")
            if row != TOTAL and gain < 1.25:
                slow_share[model] = slow_share.get(model, 0.0) + after
        lines.append("| " + " | ".join(cells) + " |")
    shares = ", ".join(
        f"{model} {100 * slow_share.get(model, 0.0) / statistics.median(b['seconds'][TOTAL]):.0f}%"
        for model, _, b in pairs
    )
    lines += [
        "",
        f"Share of the {int8} total in parts sped up less than 1.25x: {shares}.",
    ]
    return lines


def _describe_machine(machine: Mapping) -> str:
    load = machine.get("load_average_at_start")
    load = f", load average {load[0]:.1f} at the start" if load else ""
    # The release, e.g. 2026.4.1 of "2026.4.1-22982-e213a147257-releases/2026/4".
    version = str(machine.get("openvino") or "").split("-")[0]
    openvino = f", OpenVINO {version}" if version else ""
    return (
        f"{describe_cpu(machine)}, {machine['threads']} threads ({machine['cpu_count']} "
        f"cores), torch {machine['torch']}{openvino}, allocator {machine['allocator']}{load}"
    )


def format_markdown(report: Mapping) -> str:
    """The docs section of an engine_parts.json: how it measures, the tables, the findings."""
    limits = report.get("limits")
    lines = [
        "## Where the time goes, per part and engine",
        "",
        "Written by `benchmarks/engine_parts.py` from its `engine_parts.json`:",
        "",
        f"```bash\n{report['command']}\n```",
        "",
        f"Machine: {_describe_machine(report['machine'])}. Cells: median ms of "
        f"{report['repeats']} runs [min, max] ({report['warmup']} warm-up), models and "
        "engines interleaved; random weights, the benchmark's fixed workload.",
        "",
        "* PyTorch: forward hooks; post-processing = normalization, "
        "padding, box NMS, score filtering, mask pasting.",
        "* OpenVINO (`-int8`: NNCF's model): per-node counters (differences of running "
        "totals). A node goes to the part whose module scope its name carries, else to "
        "that of the layers fused into it, of its readers, of its inputs; unattributed: "
        "none. Post-processing = the graph's "
        "nodes outside the parts, then `detector_postprocess`; outside the nodes = wall "
        "time minus the nodes' time.",
        "* The RPN includes its top-k and NMS, the heads their ROIAlign.",
    ]
    if report.get("calibration"):
        sources = OrderedDict()
        for model, source in report["calibration"].items():
            sources.setdefault(source, []).append(model)
        described = "; ".join(f"{', '.join(m)}: {c}" for c, m in sources.items())
        lines += ["", f"INT8 calibration: {described}."]
    if limits:
        peak, bandwidth = limits["gemm"]["flop_per_s"], limits["memory"]["bytes_per_s"]
        lines += [
            "",
            "Bound (eager): each part's roofline ([ROOFLINE.md](ROOFLINE.md); here "
            f"{peak / 1e9:.1f} GFLOP/s and {bandwidth / 1e9:.1f} GB/s), what bounds it, and "
            "the median / bound.",
        ]
    groups = OrderedDict()
    for entry in report["runs"].values():
        groups.setdefault(entry["short_edge"], OrderedDict()).setdefault(
            entry["engine"], []
        ).append(entry)
    for short, engines in groups.items():
        height, width = next(iter(engines.values()))[0]["image_size"]
        for engine, entries in engines.items():
            lines += [
                "",
                f"### Shortest edge {short} ({height} x {width}), {engine}",
                "",
                format_table(entries),
            ]
        gains = format_int8_gains(report, short)
        if gains:
            lines += [
                "",
                f"### INT8 gain per part at shortest edge {short}",
                "",
                "OpenVINO's fp32 median over its INT8 median:",
                "",
            ] + gains
        findings = format_findings(report, short)
        if findings:
            lines += [
                "",
                f"### {report['subject']} against each model at shortest edge {short}",
                "",
                f"Differences of medians, {report['subject']} minus the other model; not "
                "resolved where their [min, max] overlap. Parts where "
                f"{report['subject']} is slower in some engine; \"eager\": the difference in "
                "eager PyTorch, ms = work (the two bounds) + distance from the bound (the "
                "two medians / bounds):",
            ] + findings
    return "\n".join(lines)


def write_docs(report: Mapping, path: str, section: str = DOC_SECTION) -> str:
    return write_doc_section(section, format_markdown(report), path)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    args = get_parser().parse_args(argv)
    return measure_or_regenerate(
        args,
        argv,
        run,
        JSON_NAME,
        lambda report, path: write_docs(report, path, args.docs_section),
    )


if __name__ == "__main__":
    main()
