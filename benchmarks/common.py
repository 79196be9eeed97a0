"""What bench_inference.py and bench_train.py share: the models, the machine, the files."""

import argparse
import json
import os
import platform
from collections import OrderedDict
from typing import Dict, List, Optional, Sequence

import torch

from atto_detectron.analysis.formatting import format_ratio
from atto_detectron.deploy.allocator import ALLOCATORS, use_allocator

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = os.path.join(REPO_ROOT, "configs")

# The compared models: Atto-MaskRCNN with each AttoNet and the ResNet-50-FPN baseline.
MODELS = OrderedDict(
    [
        ("AttoNet-A", os.path.join(CONFIGS, "atto_maskrcnn_voc.yaml")),
        ("AttoNet-B", os.path.join(CONFIGS, "atto_maskrcnn_voc_B.yaml")),
        ("AttoNet-C", os.path.join(CONFIGS, "atto_maskrcnn_voc_C.yaml")),
        ("AttoNet-D", os.path.join(CONFIGS, "atto_maskrcnn_voc_D.yaml")),
        ("R50-FPN", os.path.join(CONFIGS, "mask_rcnn_R_50_FPN_voc.yaml")),
        # AttoNet-A with Detectron2's FPN and head widths, and the peer backbones in
        # Atto-MaskRCNN's FPN and heads (projects/BackboneGrid/train_backbone_grid.py).
        ("AttoNet-A-d2heads", os.path.join(CONFIGS, "atto_maskrcnn_voc_d2heads.yaml")),
        ("MobileNetV2-FPN", os.path.join(CONFIGS, "mask_rcnn_mobilenet_v2_FPN_voc.yaml")),
        ("ShuffleNetV2-FPN", os.path.join(CONFIGS, "mask_rcnn_shufflenet_v2_FPN_voc.yaml")),
        # AttoNet-A with fewer proposals and detections at test time (not in the default
        # comparison: its workload differs from the others').
        ("AttoNet-A-fast", os.path.join(CONFIGS, "atto_maskrcnn_voc_fast.yaml")),
    ]
)
DEFAULT_MODELS = ["AttoNet-A", "AttoNet-B", "AttoNet-C", "AttoNet-D", "R50-FPN"]
BASELINE = "R50-FPN"
COLORS = {
    "AttoNet-A": "tab:blue",
    "AttoNet-B": "tab:orange",
    "AttoNet-C": "tab:green",
    "AttoNet-D": "tab:red",
    "R50-FPN": "black",
    "AttoNet-A-fast": "tab:purple",
    "AttoNet-A-d2heads": "tab:cyan",
    "MobileNetV2-FPN": "tab:brown",
    "ShuffleNetV2-FPN": "tab:pink",
}


def image_size(short_edge: int, aspect: float) -> List[int]:
    """(H, W) of a landscape image with the given shortest edge and W/H ratio."""
    return [short_edge, int(round(short_edge * aspect))]


def add_common_arguments(parser: argparse.ArgumentParser, sizes: Sequence[int], repeats: int):
    parser.add_argument(
        "--models",
        nargs="+",
        default=DEFAULT_MODELS,
        choices=list(MODELS),
        metavar="NAME",
        help=f"models to compare, among {', '.join(MODELS)} (default: {' '.join(DEFAULT_MODELS)})",
    )
    parser.add_argument(
        "--sizes",
        nargs="+",
        type=int,
        default=list(sizes),
        metavar="PIXELS",
        help=f"shortest edges of the input images (default: {' '.join(map(str, sizes))})",
    )
    parser.add_argument(
        "--aspect",
        type=float,
        default=4 / 3,
        help="width / height of the images (default 4/3, a landscape VOC image)",
    )
    parser.add_argument(
        "--baseline",
        default=BASELINE,
        choices=list(MODELS),
        help="the model the ratios compare with (default: %(default)s)",
    )
    parser.add_argument("--repeats", type=int, default=repeats, help="timed runs per model")
    parser.add_argument("--warmup", type=int, default=2, help="untimed runs before timing")
    parser.add_argument(
        "--threads",
        type=int,
        default=os.cpu_count(),
        help="CPU threads for every model (default: all cores, %(default)s here)",
    )
    parser.add_argument(
        "--allocator",
        choices=ALLOCATORS,
        default="keep-freed",
        help="glibc malloc for every model: keep freed memory for reuse "
        "(atto_detectron.deploy.keep_freed_memory; default) or as glibc sets it up",
    )
    parser.add_argument("--no-memory", action="store_true", help="skip peak-memory probes")
    parser.add_argument(
        "--output-dir",
        default=os.path.join(REPO_ROOT, "output", "benchmarks"),
        metavar="DIR",
        help="where the JSON and the PNG go (default: output/benchmarks)",
    )
    parser.add_argument(
        "--opts",
        nargs="+",
        default=[],
        metavar="KEY VALUE",
        help="config changes for every model, e.g. MODEL.RPN.POST_NMS_TOPK_TEST 300",
    )


def apply_quick(args, argv: Sequence[str], defaults: Dict[str, object]) -> None:
    """
    ``--quick``: sets each option of ``defaults`` (argparse dest -> value) that the
    command line ``argv`` did not give explicitly.
    """
    given = {a.split("=")[0] for a in argv if a.startswith("--")}
    for dest, value in defaults.items():
        if "--" + dest.replace("_", "-") not in given:
            setattr(args, dest, value)


def setup_process(args) -> None:
    """The same threads and memory allocator for every model of a run."""
    torch.set_num_threads(args.threads)
    args.allocator = use_allocator(args.allocator)


def machine_info(threads: int, allocator: str = "default") -> Dict:
    """The machine and software a measurement comes from."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    info = {
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        # The widest vector instructions torch's CPU kernels use here (AVX2, AVX512, ...).
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "threads": threads,
        "allocator": allocator,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    try:
        import onnxruntime

        info["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        info["onnxruntime"] = None
    try:
        info["load_average_at_start"] = list(os.getloadavg())
    except OSError:
        pass
    return info


def describe_cpu(machine: Dict) -> str:
    """The CPU of a :func:`machine_info`, with its vector instructions where recorded."""
    capability = machine.get("cpu_capability")
    return f"{machine['cpu']} ({capability})" if capability else machine["cpu"]


def find_results(models: Sequence[str], explicit: Sequence[str]) -> Dict[str, str]:
    """
    results.json files of trained models (tools/train_net.py writes them in OUTPUT_DIR):
    ``NAME=FILE`` pairs given on the command line, else
    ``output/<config file name>/results.json`` where it exists.
    """
    found = {}
    for item in explicit:
        name, sep, path = item.partition("=")
        if not sep or name not in MODELS:
            raise SystemExit(
                f"error: --results {item!r}: expected NAME=FILE with NAME in {list(MODELS)}"
            )
        if not os.path.isfile(path):
            raise SystemExit(f"error: --results {item!r}: no such file {path!r}")
        found[name] = path
    for name in models:
        stem = os.path.splitext(os.path.basename(MODELS[name]))[0]
        path = os.path.join(REPO_ROOT, "output", stem, "results.json")
        if name not in found and os.path.isfile(path):
            found[name] = path
    return found


def read_accuracy(path: str) -> Optional[Dict[str, float]]:
    """APm and APd (AP, percent) of the first test set in a results.json."""
    with open(path) as f:
        record = json.load(f)
    for labels in record.get("summary", {}).values():
        return {label: values.get("AP") for label, values in labels.items()}
    return None


def write_json(path: str, data: Dict):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(data, f, indent=2)


def timing_entry(timings: Dict, name: str) -> Dict:
    """
    One model's part of :func:`time_interleaved`'s result (keys ``(model, engine)``):
    per engine the wall-time and CPU-time summaries and the raw seconds.
    """
    from benchmarks.engines import summarize_seconds

    entry = {"latency_s": {}, "seconds": {}, "cpu_s": {}, "cpu_seconds": {}}
    for (model, engine), seconds in timings["wall"].items():
        if model == name:
            entry["latency_s"][engine] = summarize_seconds(seconds)
            entry["seconds"][engine] = seconds
            entry["cpu_s"][engine] = summarize_seconds(timings["cpu"][(model, engine)])
            entry["cpu_seconds"][engine] = timings["cpu"][(model, engine)]
    return entry


def add_ratios(results: Dict, memory_key: str, baseline: str = BASELINE):
    """
    Adds ``ratio_to_baseline`` to each model's entry per size, each of the baseline's
    figures divided by the model's (> 1: the model is that many times faster / smaller):
    "latency" (medians), "latency_paired" (median of per-round ratios), "cpu" (CPU-time
    medians), "memory" (``memory_key`` of the memory probe) and "mult_adds".
    """
    from benchmarks.engines import paired_ratio

    if baseline not in results:
        return
    base = results[baseline]["sizes"]
    for record in results.values():
        for short, entry in record["sizes"].items():
            ratios = {"latency": {}, "latency_paired": {}, "cpu": {}, "memory": {}}
            for engine, stats in entry["latency_s"].items():
                if engine in base[short]["latency_s"]:
                    ratios["latency"][engine] = (
                        base[short]["latency_s"][engine]["median"] / stats["median"]
                    )
                    ratios["latency_paired"][engine] = paired_ratio(
                        base[short]["seconds"][engine], entry["seconds"][engine]
                    )
                    ratios["cpu"][engine] = (
                        base[short]["cpu_s"][engine]["median"] / entry["cpu_s"][engine]["median"]
                    )
            for engine, memory in entry.get("memory", {}).items():
                if engine in base[short].get("memory", {}):
                    ratios["memory"][engine] = (
                        base[short]["memory"][engine][memory_key] / memory[memory_key]
                    )
            if "mult_adds" in entry and "mult_adds" in base[short]:
                ratios["mult_adds"] = (
                    base[short]["mult_adds"]["total"] / entry["mult_adds"]["total"]
                )
            entry["ratio_to_baseline"] = ratios


def format_table(
    results: Dict, sizes: Sequence[int], memory_key: str, time_label: str = "latency ms"
) -> str:
    """
    A markdown table per model, size and engine: median wall time and its interquartile
    range, the ratios to the baseline (medians, paired rounds, CPU time), memory and
    mult-adds. Cells are not padded to the column width, as in the roofline tables.
    """
    rows = []
    for name, record in results.items():
        for short in sizes:
            entry = record["sizes"][str(short)]
            ratios = entry.get("ratio_to_baseline", {})
            for engine, stats in entry["latency_s"].items():
                memory = entry.get("memory", {}).get(engine)
                rows.append(
                    [
                        name,
                        short,
                        engine,
                        f"{stats['median'] * 1000:.0f}",
                        f"{stats['q1'] * 1000:.0f}-{stats['q3'] * 1000:.0f}",
                        format_ratio(ratios.get("latency", {}).get(engine), missing=""),
                        format_ratio(ratios.get("latency_paired", {}).get(engine), missing=""),
                        format_ratio(ratios.get("cpu", {}).get(engine), missing=""),
                        f"{memory[memory_key]:.0f}" if memory else "",
                        format_ratio(ratios.get("memory", {}).get(engine), missing=""),
                        f"{entry['mult_adds']['total'] / 1e9:.1f}" if "mult_adds" in entry else "",
                        format_ratio(ratios.get("mult_adds"), missing=""),
                    ]
                )
    headers = [
        "model",
        "short edge",
        "engine",
        f"{time_label} (median)",
        "IQR",
        "baseline / model",
        "paired",
        "CPU time",
        f"memory MB ({memory_key})",
        "baseline / model",
        "mult-adds G",
        "baseline / model",
    ]
    lines = ["| " + " | ".join(str(cell) for cell in line) + " |" for line in [headers] + rows]
    lines.insert(1, "|:--|--:|:--|" + "--:|" * (len(headers) - 3))
    return "\n".join(lines)


def report_figure(
    results: Dict,
    accuracy: Dict,
    sizes: Sequence[int],
    engines: Sequence[str],
    time_label: str,
    memory_engine: str,
    memory_key: str,
    memory_label: str,
):
    """
    The figure of :func:`plot_report`, or None when no panel has data. Panels: time vs
    shortest edge (median with interquartile bars, one line style per engine),
    mult-adds vs shortest edge, memory vs shortest edge, and mask AP (box AP when there
    is no mask AP) vs mult-adds at the largest size. A panel without data is left out,
    so a report of latency alone is a single panel.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    styles = ["-", "--", ":", "-."]
    timed, madds, memory = [], [], []
    for name, record in results.items():
        color = COLORS.get(name)
        entries = [record["sizes"][str(s)] for s in sizes]
        for engine, style in zip(engines, styles):
            if all(engine in e["latency_s"] for e in entries):
                stats = [e["latency_s"][engine] for e in entries]
                timed.append((f"{name} ({engine})", color, style, stats))
        if all("mult_adds" in e for e in entries):
            values = [e["mult_adds"]["total"] / 1e9 for e in entries]
            madds.append((name, color, values))
        if all(memory_engine in e.get("memory", {}) for e in entries):
            values = [e["memory"][memory_engine][memory_key] for e in entries]
            memory.append((name, color, values))
    largest = str(max(sizes))
    points = []
    for name, acc in accuracy.items():
        counted = results.get(name, {}).get("sizes", {}).get(largest, {}).get("mult_adds")
        value = (acc or {}).get("APm", (acc or {}).get("APd"))
        if counted and value is not None:
            points.append((name, counted["total"] / 1e9, value))

    def draw_time(ax):
        for label, color, style, stats in timed:
            medians = [s["median"] * 1000 for s in stats]
            errors = [
                [(s["median"] - s["q1"]) * 1000 for s in stats],
                [(s["q3"] - s["median"]) * 1000 for s in stats],
            ]
            ax.errorbar(
                sizes,
                medians,
                yerr=errors,
                fmt="o" + style,
                color=color,
                capsize=3,
                markersize=4,
                label=label,
            )
        ax.set(xlabel="shortest edge (px)", ylabel=f"{time_label} (ms; median, IQR)")
        ax.set_title(time_label)

    def draw_lines(series, ylabel, title):
        def draw(ax):
            for name, color, values in series:
                ax.plot(sizes, values, "o-", color=color, label=name)
            ax.set(xlabel="shortest edge (px)", ylabel=ylabel)
            ax.set_title(title)

        return draw

    def draw_accuracy(ax):
        for name, x, y in points:
            ax.scatter([x], [y], color=COLORS.get(name), label=name)
            ax.annotate(name, (x, y))
        ax.set(xlabel=f"mult-adds at shortest edge {largest} (G)", ylabel="mask AP (%)")
        ax.set_title("Accuracy vs mult-adds")

    panels = [
        draw
        for data, draw in (
            (timed, draw_time),
            (
                madds,
                draw_lines(madds, "mult-adds (G)", "Mult-adds of one inference (fixed workload)"),
            ),
            (memory, draw_lines(memory, f"MB ({memory_key})", memory_label)),
            (points, draw_accuracy),
        )
        if data
    ]
    if not panels:
        return None
    columns = min(len(panels), 2)
    rows = (len(panels) + columns - 1) // columns
    fig = plt.figure(figsize=(6 * columns, 4.5 * rows))
    for index, draw in enumerate(panels):
        ax = fig.add_subplot(rows, columns, index + 1)
        draw(ax)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def plot_report(
    results: Dict,
    accuracy: Dict,
    path: str,
    sizes: Sequence[int],
    engines: Sequence[str],
    time_label: str,
    memory_engine: str,
    memory_key: str,
    memory_label: str,
) -> Optional[str]:
    """
    Writes :func:`report_figure` as a PNG to ``path``: up to four panels, those with
    data (the accuracy panel only for models with results). Returns ``path``, or None
    (and writes nothing) when no panel has data.
    """
    fig = report_figure(
        results, accuracy, sizes, engines, time_label, memory_engine, memory_key, memory_label
    )
    if fig is None:
        return None
    import matplotlib.pyplot as plt

    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


BENCHMARKS_DOC = os.path.join(REPO_ROOT, "docs", "BENCHMARKS.md")
# The rooflines (benchmarks/roofline.py, benchmarks/train_roofline.py) have a page of their own.
ROOFLINE_DOC = os.path.join(REPO_ROOT, "docs", "ROOFLINE.md")
BENCHMARKS_DOC_INTRO = """# Benchmarks

Measured tables of the benchmark scripts in `benchmarks/`. Each section between a
`<!-- NAME:begin -->` and a `<!-- NAME:end -->` comment is written by the script that
measures it, from its JSON: rerun the script (or regenerate from the JSON) rather than
editing it by hand. Text outside the markers is kept.
"""


def replace_doc_section(text: str, name: str, content: str) -> str:
    """
    ``text`` with what lies between ``<!-- name:begin -->`` and ``<!-- name:end -->``
    replaced by ``content`` (the section appended at the end when the markers are
    absent); everything outside the markers is kept as it is.
    """
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    counts = (text.count(begin), text.count(end))
    section = f"{begin}\n{content.strip()}\n{end}"
    if counts == (0, 0):
        return text.rstrip("\n") + ("\n\n" if text.strip() else "") + section + "\n"
    start, stop = text.find(begin), text.find(end)
    if counts != (1, 1) or stop < start:
        raise ValueError(
            f"expected one {begin!r} before one {end!r}, found {counts[0]} and {counts[1]}"
            + (" in the wrong order" if counts == (1, 1) else "")
        )
    return text[:start] + section + text[stop + len(end) :]


def write_doc_section(name: str, content: str, path: str = BENCHMARKS_DOC) -> str:
    """
    Writes ``content`` as the section ``name`` of the Markdown file ``path`` (see
    :func:`replace_doc_section`), creating the file with :data:`BENCHMARKS_DOC_INTRO`
    if it does not exist. Returns ``path``.
    """
    text = BENCHMARKS_DOC_INTRO
    if os.path.exists(path):
        with open(path) as f:
            text = f.read()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        f.write(replace_doc_section(text, name, content))
    return path
