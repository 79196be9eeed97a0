"""
The backbone grid's report: accuracy over seeds, cost from one benchmark run, the Pareto
front, plots and the model-zoo table (tools/train_backbone_grid.py runs the grid).
"""

import statistics
from typing import Dict, List, Optional, Sequence

from .formatting import format_number, format_ratio

__all__ = [
    "METRICS",
    "read_run_metrics",
    "summarize_seeds",
    "pareto_front",
    "findings",
    "format_model_zoo",
    "plot_grid",
]

# (task, metric) pairs of a run: Detectron2's COCOEvaluator AP, AP50 and AP75, in percent.
METRICS = [(task, m) for task in ("box", "mask") for m in ("AP", "AP50", "AP75")]
_SUMMARY_LABELS = {"box": "APd", "mask": "APm"}


def read_run_metrics(results: Dict) -> Dict[str, Dict[str, float]]:
    """
    Box and mask AP, AP50, AP75 of a tools/train_net.py ``results.json`` (its first test
    set): ``{"box": {"AP": ..., "AP50": ..., "AP75": ...}, "mask": {...}}``.

    Raises:
        ValueError: the record holds no evaluation.
    """
    summary = results.get("summary") or {}
    if not summary:
        raise ValueError("the results hold no evaluation summary")
    labels = next(iter(summary.values()))
    return {task: dict(labels[label]) for task, label in _SUMMARY_LABELS.items() if label in labels}


def summarize_seeds(runs: Sequence[Dict]) -> Dict[str, Dict[str, Dict[str, float]]]:
    """
    Mean and spread over runs (seeds) of every metric: ``{"box": {"AP50": {"mean", "std",
    "min", "max", "n"}}}``; ``std`` is the sample standard deviation (0 for one run).
    """
    summary: Dict[str, Dict[str, Dict[str, float]]] = {}
    for task, metric in METRICS:
        values = [
            run[task][metric] for run in runs if task in run and run[task].get(metric) is not None
        ]
        if not values:
            continue
        summary.setdefault(task, {})[metric] = {
            "mean": statistics.fmean(values),
            "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "min": min(values),
            "max": max(values),
            "n": len(values),
        }
    return summary


def pareto_front(points: Dict[str, Sequence[float]]) -> List[str]:
    """
    The names whose (cost, value) no other point beats: none has a cost as low or lower
    and a value as high or higher, with one of the two strictly better. Sorted by cost.
    """
    front = []
    for name, (cost, value) in points.items():
        dominated = any(
            c <= cost and v >= value and (c < cost or v > value)
            for other, (c, v) in points.items()
            if other != name
        )
        if not dominated:
            front.append(name)
    return sorted(front, key=lambda n: points[n][0])


def _mean(entry: Dict, task: str, metric: str) -> Optional[float]:
    return entry.get("accuracy", {}).get(task, {}).get(metric, {}).get("mean")


def seed_spread(entries) -> Optional[float]:
    """The largest standard deviation over seeds of box or mask AP50 among ``entries``
    with at least two seeds; None without any."""
    spreads = [
        entry["accuracy"][task]["AP50"]["std"]
        for entry in entries
        for task in ("box", "mask")
        if entry.get("accuracy", {}).get(task, {}).get("AP50", {}).get("n", 0) >= 2
    ]
    return max(spreads) if spreads else None


def findings(report: Dict, reference: str = "AttoNet-A", baseline: str = "R50-FPN") -> List[str]:
    """
    Sentences comparing every model's mean box and mask AP50 and its eager latency with
    ``reference``'s and ``baseline``'s, and whether a peer beats ``reference`` at equal or
    lower latency, and how far AP50 varies between seeds. Only models with accuracy and
    latency take part.
    """
    models = {
        name: entry
        for name, entry in report["models"].items()
        if entry.get("latency_ms") and _mean(entry, "box", "AP50") is not None
    }
    if reference not in models:
        return [f"{reference} has no finished run yet."]
    ref = models[reference]
    lines = []
    for name, entry in models.items():
        if name == reference:
            continue
        box = _mean(entry, "box", "AP50") - _mean(ref, "box", "AP50")
        mask = _mean(entry, "mask", "AP50") - _mean(ref, "mask", "AP50")
        speed = entry["latency_ms"] / ref["latency_ms"]
        lines.append(
            f"{name}: box AP50 {box:+.1f} and mask AP50 {mask:+.1f} against {reference}, "
            f"at {speed:.2f}x {reference}'s latency."
        )
    if baseline in models:
        base = models[baseline]
        box = _mean(base, "box", "AP50") - _mean(ref, "box", "AP50")
        mask = _mean(base, "mask", "AP50") - _mean(ref, "mask", "AP50")
        speed = base["latency_ms"] / ref["latency_ms"]
        met = "within" if box <= 5 and mask <= 5 else "not within"

        def gap(points, task):
            side = "below" if points >= 0 else "above"
            return f"{abs(points):.1f} {task} AP50 {side}"

        lines.append(
            f"{reference} is {gap(box, 'box')} and {gap(mask, 'mask')} {baseline} at "
            f"{speed:.1f}x its speed: {met} 5 points of it."
        )
    spread = seed_spread(models.values())
    if spread is not None:
        lines.append(
            f"Between the seeds of one model, AP50 varies by up to {spread:.1f} points "
            f"(standard deviation): differences smaller than that are not resolved by these "
            f"runs."
        )
    for task in ("box", "mask"):
        better = [
            name
            for name, entry in models.items()
            if name not in (reference, baseline)
            and entry["latency_ms"] <= ref["latency_ms"]
            and _mean(entry, task, "AP50") > _mean(ref, task, "AP50")
        ]
        if better:
            lines.append(
                f"At equal or lower latency, {', '.join(better)} beat {reference} in {task} AP50."
            )
        else:
            lines.append(f"No model as fast as {reference} or faster beats it in {task} AP50.")
    return lines


def _fmt_metric(entry: Dict, task: str, metric: str) -> str:
    stats = entry.get("accuracy", {}).get(task, {}).get(metric)
    if not stats:
        return ""
    if stats["n"] > 1:
        return f"{stats['mean']:.1f} ± {stats['std']:.1f}"
    return f"{stats['mean']:.1f}"


def format_model_zoo(report: Dict, baseline: str = "R50-FPN") -> str:
    """The model-zoo table and findings of a grid report, as Markdown."""
    base_latency = report["models"].get(baseline, {}).get("latency_ms")
    header = [
        "model",
        "backbone params (M)",
        "params (M)",
        "mult-adds at 800 (G)",
        "latency (ms)",
        f"{baseline} / model",
        "memory (MB)",
        "seeds",
        "box AP",
        "box AP50",
        "box AP75",
        "mask AP",
        "mask AP50",
        "mask AP75",
        "Pareto (AP50 vs latency)",
    ]
    rows = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join([":--"] + ["--:"] * (len(header) - 1)) + "|",
    ]
    fronts = report.get("pareto", {}).get("latency_ms", {})
    for name, entry in report["models"].items():
        latency = entry.get("latency_ms")
        ratio = format_ratio(
            base_latency / latency if latency and base_latency else None, missing=""
        )
        cells = [
            f"**{name}**",
            format_number(entry.get("backbone_params"), 1e6, 2, missing=""),
            format_number(entry.get("params"), 1e6, 2, missing=""),
            format_number(entry.get("mult_adds"), 1e9, 1, missing=""),
            format_number(latency, 1, 0, missing=""),
            ratio,
            format_number(entry.get("memory_mb"), 1, 0, missing=""),
            str(len(entry.get("runs", []))),
        ]
        cells += [_fmt_metric(entry, task, metric) for task, metric in METRICS]
        cells.append(", ".join(task for task in ("box", "mask") if name in fronts.get(task, [])))
        rows.append("| " + " | ".join(cells) + " |")
    lines = rows + [""] + [f"- {line}" for line in findings(report)]
    return "\n".join(lines)


def plot_grid(report: Dict, path: str, cost: str) -> str:
    """
    Box and mask AP50 (mean over seeds, bars from min to max) against ``cost``
    ("latency_ms" or "mult_adds") for every model with both, the Pareto front drawn as
    a step line. Writes a PNG to ``path`` and returns it.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    label = {
        "latency_ms": "CPU latency at shortest edge 800 (ms, PyTorch eager)",
        "mult_adds": "mult-adds at 800 x 1067 (G)",
    }[cost]
    scale = 1e9 if cost == "mult_adds" else 1.0
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8))
    for ax, task in zip(axes, ("box", "mask")):
        points = {}
        for name, entry in report["models"].items():
            stats = entry.get("accuracy", {}).get(task, {}).get("AP50")
            if not stats or not entry.get(cost):
                continue
            x = entry[cost] / scale
            points[name] = (x, stats["mean"])
            ax.errorbar(
                x,
                stats["mean"],
                yerr=[[stats["mean"] - stats["min"]], [stats["max"] - stats["mean"]]],
                fmt="o",
                capsize=3,
            )
            ax.annotate(
                name, (x, stats["mean"]), textcoords="offset points", xytext=(4, 4), fontsize=8
            )
        front = pareto_front(points)
        if front:
            xs = [points[n][0] for n in front]
            ys = [points[n][1] for n in front]
            ax.step(xs, ys, where="post", color="tab:red", alpha=0.6, label="Pareto front")
            ax.legend(loc="lower right")
        ax.set_xscale("log")
        ax.set_xlabel(label)
        ax.set_ylabel(f"{task} AP50 (voc_synth_val, mean over seeds)")
        ax.grid(True, which="both", alpha=0.3)
    fig.suptitle("Mask R-CNN backbones on the generated VOC-layout data")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
