"""
The backbone grid's report: accuracy over seeds with 95% intervals, differences against
the reference model with Welch's intervals, the learning-rate check, the Pareto front
where it is resolved, plots and the model-zoo page (:mod:`.train_grid` runs the grid).

Every sentence about accuracy is generated here from the numbers it states, and says
"not resolved" wherever the interval of a difference contains zero.
"""

from typing import Dict, List, Optional, Sequence

from atto_detectron.analysis.formatting import format_number, format_ratio
from atto_detectron.analysis.intervals import (
    CONFIDENCE,
    format_difference,
    format_interval,
    mean_interval,
    pooled_std,
    std_interval,
    welch_interval,
)
from atto_detectron.analysis.paper_reference import ATTO_MASKRCNN

__all__ = [
    "METRICS",
    "TASKS",
    "OPERATING_POINTS",
    "read_run_metrics",
    "summarize_seeds",
    "seed_values",
    "pair_differences",
    "grid_spread",
    "choose_learning_rate",
    "pareto_front",
    "resolved_pareto",
    "findings",
    "format_model_zoo",
    "format_readme_results",
    "plot_grid",
]

# (task, metric) pairs of a run: Detectron2's COCOEvaluator AP, AP50 and AP75, in percent.
TASKS = ("box", "mask")
METRICS = [(task, m) for task in TASKS for m in ("AP", "AP50", "AP75")]
_SUMMARY_LABELS = {"box": "APd", "mask": "APm"}
# Where cost is measured: "ap" is the setting AP is measured at (the grid configs' test
# size and proposals), "voc" the VOC configs' (shortest edge 800, 1000 proposals).
OPERATING_POINTS = ("ap", "voc")


def read_run_metrics(results: Dict, dataset: Optional[str] = None) -> Dict[str, Dict[str, float]]:
    """
    Box and mask AP, AP50, AP75 of a tools/train_net.py ``results.json`` on ``dataset``
    (default: its first test set): ``{"box": {"AP": ..., "AP50": ..., "AP75": ...},
    "mask": {...}}``.

    Raises:
        ValueError: the record holds no evaluation (of ``dataset``).
    """
    summary = results.get("summary") or {}
    if dataset is not None:
        summary = {dataset: summary[dataset]} if dataset in summary else {}
    if not summary:
        raise ValueError(
            f"the results hold no evaluation summary{f' of {dataset}' if dataset else ''}"
        )
    labels = next(iter(summary.values()))
    return {task: dict(labels[label]) for task, label in _SUMMARY_LABELS.items() if label in labels}


def seed_values(runs: Sequence[Dict], task: str, metric: str = "AP50") -> List[float]:
    """The per-seed values of one metric, in run order."""
    return [run[task][metric] for run in runs if task in run and run[task].get(metric) is not None]


def summarize_seeds(runs: Sequence[Dict]) -> Dict[str, Dict[str, Dict[str, float]]]:
    """
    Mean, spread and 95% interval over runs (seeds) of every metric:
    ``{"box": {"AP50": {"mean", "std", "n", "min", "max", "low", "high", "half_width"}}}``
    (see :func:`~atto_detectron.analysis.intervals.mean_interval`).
    """
    summary: Dict[str, Dict[str, Dict[str, float]]] = {}
    for task, metric in METRICS:
        values = seed_values(runs, task, metric)
        if values:
            summary.setdefault(task, {})[metric] = mean_interval(values)
    return summary


def pair_differences(
    models: Dict[str, Dict], reference: str, metric: str = "AP50"
) -> Dict[str, Dict[str, Optional[Dict]]]:
    """
    ``{other: {"box": welch, "mask": welch}}``: Welch's interval of ``reference - other``
    (:func:`~atto_detectron.analysis.intervals.welch_interval`) for every other model;
    None where either has fewer than two seeds.
    """
    ref_runs = models.get(reference, {}).get("runs", [])
    pairs = {}
    for name, entry in models.items():
        if name == reference:
            continue
        runs = entry.get("runs", [])
        pairs[name] = {
            task: welch_interval(
                seed_values(ref_runs, task, metric), seed_values(runs, task, metric)
            )
            for task in TASKS
        }
    return pairs


def grid_spread(models: Dict[str, Dict], metric: str = "AP50") -> Dict[str, Optional[float]]:
    """The seed standard deviation pooled over every model with two or more seeds, per task."""
    return {
        task: pooled_std([seed_values(e.get("runs", []), task, metric) for e in models.values()])
        for task in TASKS
    }


def choose_learning_rate(checks: Sequence[Dict]) -> Optional[Dict]:
    """
    The learning-rate check's winner: the run with the highest mean of box and mask AP50
    on the held-out images (``checks``: ``{"lr", "box": {"AP50"}, "mask": {"AP50"}}``);
    the lower rate wins a tie. None without a finished check.
    """
    done = [c for c in checks if "box" in c and "mask" in c]
    if not done:
        return None
    return max(done, key=lambda c: ((c["box"]["AP50"] + c["mask"]["AP50"]) / 2, -c["lr"]))


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


def resolved_pareto(models: Dict[str, Dict], cost_key: str, task: str) -> Dict[str, object]:
    """
    The Pareto front of ``task`` AP50 against a cost, counting only resolved differences:
    a model is dominated when another costs no more and is better by a difference whose
    95% interval (Welch, over seeds) excludes zero.

    Returns:
        dict: ``front`` (models no one dominates, by cost) and ``dominated_by``
        ({model: [models that dominate it]}); models without cost or two seeds are left
        out.
    """
    entries = {
        name: e
        for name, e in models.items()
        if _cost(e, cost_key) and len(seed_values(e.get("runs", []), task)) >= 2
    }
    dominated_by = {}
    for name, entry in entries.items():
        values = seed_values(entry["runs"], task)
        winners = []
        for other, other_entry in entries.items():
            if other == name or _cost(other_entry, cost_key) > _cost(entry, cost_key):
                continue
            diff = welch_interval(seed_values(other_entry["runs"], task), values)
            if diff and diff["resolved"] and diff["difference"] > 0:
                winners.append(other)
        if winners:
            dominated_by[name] = winners
    front = sorted(
        (n for n in entries if n not in dominated_by), key=lambda n: _cost(entries[n], cost_key)
    )
    return {"front": front, "dominated_by": dominated_by}


def _cost(entry: Dict, cost_key: str) -> Optional[float]:
    """A model's cost: ``latency_ms`` / ``memory_mb`` at the AP operating point, or
    ``mult_adds`` / ``params``."""
    if cost_key in ("latency_ms", "memory_mb"):
        return (entry.get("cost", {}).get("ap") or {}).get(cost_key)
    return entry.get(cost_key)


def _mean(entry: Dict, task: str, metric: str = "AP50") -> Optional[float]:
    return entry.get("accuracy", {}).get(task, {}).get(metric, {}).get("mean")


def findings(report: Dict, reference: str = "AttoNet-A") -> List[str]:
    """
    Sentences about the grid, each with the numbers and intervals it rests on: every
    model's box and mask AP50 difference to ``reference`` (Welch's 95% interval, resolved
    or not) with its latency ratio at the AP operating point, the pooled seed spread, and
    which differences are resolved at all.
    """
    models = report["models"]
    if len(seed_values(models.get(reference, {}).get("runs", []), "box")) < 2:
        return [f"{reference} has fewer than two finished seeds: no difference is measured yet."]
    lines = []
    resolved = []
    ref_latency = _cost(models[reference], "latency_ms")
    for name, pair in report.get("pairs", {}).items():
        if not all(pair.get(task) for task in TASKS):
            lines.append(f"{reference} − {name}: not measured yet (fewer than two seeds).")
            continue
        latency = _cost(models[name], "latency_ms")
        speed = (
            f"; {name} takes {latency / ref_latency:.2f}x {reference}'s latency"
            if latency and ref_latency
            else ""
        )
        parts = [f"{task} AP50 {format_difference(pair[task])}" for task in TASKS]
        lines.append(f"{reference} − {name}: {'; '.join(parts)}{speed}.")
        resolved += [(name, task, pair[task]) for task in TASKS if pair[task]["resolved"]]
    pooled = grid_spread(models)
    if all(pooled.get(task) is not None for task in TASKS):
        dof = sum(max(0, len(seed_values(e.get("runs", []), "box")) - 1) for e in models.values())
        parts = []
        for task in TASKS:
            low, high = std_interval(pooled[task], dof)
            parts.append(f"{pooled[task]:.1f} [{low:.1f}, {high:.1f}] {task}")
        lines.append(
            f"Seed standard deviation pooled over the grid ({dof} degrees of freedom): "
            f"{' and '.join(parts)} AP50."
        )
    if resolved:
        named = ", ".join(
            f"{name} in {task} AP50 ({reference} "
            f"{'higher' if d['difference'] > 0 else 'lower'})"
            for name, task, d in resolved
        )
        lines.append(f"Resolved at {CONFIDENCE:.0%}: {reference} against {named}.")
    else:
        lines.append(
            f"No difference between {reference} and another model is resolved at "
            f"{CONFIDENCE:.0%}."
        )
    return lines


def _fmt_metric(entry: Dict, task: str, metric: str) -> str:
    stats = entry.get("accuracy", {}).get(task, {}).get(metric)
    return format_interval(stats) if stats else ""


def format_model_zoo(report: Dict, baseline: str = "R50-FPN") -> str:
    """The model-zoo tables (cost, learning rate, accuracy) and findings, as Markdown."""
    models = report["models"]
    base = models.get(baseline, {})
    cost_header = [
        "model",
        "backbone params (M)",
        "params (M)",
        "mult-adds at 800 (G)",
        "latency at AP point (ms)",
        "latency at 800 (ms)",
        f"{baseline} / model at 800",
        "memory at AP point (MB)",
        "memory at 800 (MB)",
        "base LR",
    ]
    rows = ["| " + " | ".join(cost_header) + " |", _align(len(cost_header))]
    for name, entry in models.items():
        ap_cost = entry.get("cost", {}).get("ap") or {}
        voc_cost = entry.get("cost", {}).get("voc") or {}
        base_voc = (base.get("cost", {}).get("voc") or {}).get("latency_ms")
        latency = voc_cost.get("latency_ms")
        rows.append(
            "| "
            + " | ".join(
                [
                    f"**{name}**",
                    format_number(entry.get("backbone_params"), 1e6, 2, missing=""),
                    format_number(entry.get("params"), 1e6, 2, missing=""),
                    format_number(entry.get("mult_adds"), 1e9, 1, missing=""),
                    format_number(ap_cost.get("latency_ms"), 1, 0, missing=""),
                    format_number(latency, 1, 0, missing=""),
                    format_ratio(base_voc / latency if latency and base_voc else None, missing=""),
                    format_number(ap_cost.get("memory_mb"), 1, 0, missing=""),
                    format_number(voc_cost.get("memory_mb"), 1, 0, missing=""),
                    format_number(entry.get("base_lr"), 1, 3, missing=""),
                ]
            )
            + " |"
        )
    acc_header = ["model", "seeds"] + [f"{task} {metric}" for task, metric in METRICS]
    acc_header += ["Pareto, latency (box / mask)"]
    acc_rows = ["| " + " | ".join(acc_header) + " |", _align(len(acc_header))]
    fronts = report.get("pareto", {}).get("latency_ms", {})
    for name, entry in models.items():
        cells = [f"**{name}**", str(len(entry.get("runs", [])))]
        cells += [_fmt_metric(entry, task, metric) for task, metric in METRICS]
        cells.append(" / ".join(_pareto_cell(fronts.get(task), name) for task in TASKS))
        acc_rows.append("| " + " | ".join(cells) + " |")
    lr_rows = _lr_table(report)
    return "\n".join(
        rows
        + ["", "Accuracy: mean over seeds [95% interval of the mean] on the validation set.", ""]
        + acc_rows
        + [""]
        + [f"- {line}" for line in findings(report)]
        + ([""] + lr_rows if lr_rows else [])
    )


def _align(columns: int) -> str:
    return "|" + "|".join([":--"] + ["--:"] * (columns - 1)) + "|"


def _pareto_cell(front: Optional[Dict], name: str) -> str:
    if not front:
        return ""
    if name in front.get("front", []):
        return "front"
    if name in front.get("dominated_by", {}):
        return "below " + ", ".join(front["dominated_by"][name])
    return "-"


def _lr_table(report: Dict) -> List[str]:
    checks = {
        name: e.get("lr_check", []) for name, e in report["models"].items() if e.get("lr_check")
    }
    if not checks:
        return []
    rates = sorted({c["lr"] for runs in checks.values() for c in runs})
    header = ["model"] + [f"lr {lr:g}" for lr in rates] + ["chosen"]
    rows = [
        "Learning-rate check: box / mask AP50 on the held-out training images, one seed "
        "each; the highest mean of the two is chosen.",
        "",
        "| " + " | ".join(header) + " |",
        _align(len(header)),
    ]
    for name, runs in checks.items():
        by_lr = {c["lr"]: c for c in runs if "box" in c}
        cells = [f"**{name}**"]
        for lr in rates:
            c = by_lr.get(lr)
            cells.append(f"{c['box']['AP50']:.1f} / {c['mask']['AP50']:.1f}" if c else "")
        chosen = report["models"][name].get("base_lr")
        cells.append(f"{chosen:g}" if chosen is not None else "")
        rows.append("| " + " | ".join(cells) + " |")
    return rows


def plot_grid(report: Dict, path: str, cost: str) -> str:
    """
    Box and mask AP50 (mean over seeds; bars: the 95% interval of the mean) against
    ``cost`` ("latency_ms" at the AP operating point, or "mult_adds" at 800) for every
    model with both; the Pareto front is drawn only between models whose difference is
    resolved. Writes a PNG to ``path`` and returns it.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    label = {
        "latency_ms": "CPU latency at the AP operating point (ms, PyTorch eager)",
        "mult_adds": "mult-adds at 800 x 1067 (G)",
    }[cost]
    scale = 1e9 if cost == "mult_adds" else 1.0
    fig, axes = plt.subplots(1, 2, figsize=(12, 5))
    for ax, task in zip(axes, TASKS):
        for name, entry in report["models"].items():
            stats = entry.get("accuracy", {}).get(task, {}).get("AP50")
            x = _cost(entry, cost)
            if not stats or not x:
                continue
            x /= scale
            half = stats.get("half_width")
            ax.errorbar(
                x, stats["mean"], yerr=[[half], [half]] if half else None, fmt="o", capsize=3
            )
            ax.annotate(
                f"{name} (n={stats['n']})",
                (x, stats["mean"]),
                textcoords="offset points",
                xytext=(4, 4),
                fontsize=8,
            )
        front = resolved_pareto(report["models"], cost, task)
        # A segment of the front only where the pricier model is resolved better.
        names = front["front"]
        for cheap, dear in zip(names, names[1:]):
            diff = welch_interval(
                seed_values(report["models"][dear]["runs"], task),
                seed_values(report["models"][cheap]["runs"], task),
            )
            if diff and diff["resolved"] and diff["difference"] > 0:
                xs = [_cost(report["models"][n], cost) / scale for n in (cheap, dear)]
                ys = [_mean(report["models"][n], task) for n in (cheap, dear)]
                ax.step(xs, ys, where="post", color="tab:red", alpha=0.6)
        ax.set_xscale("log")
        ax.set_xlabel(label)
        ax.set_ylabel(f"{task} AP50 (mean over seeds)")
        ax.grid(True, which="both", alpha=0.3)
    fig.suptitle(
        "Mask R-CNN backbones on the generated VOC-layout data. Bars: 95% interval of the "
        "mean over seeds;\nred steps: Pareto front, drawn only between resolved differences",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def format_readme_results(
    report: Dict, reference: str = "AttoNet-A", baseline: str = "R50-FPN"
) -> str:
    """
    README.md's results table: accuracy (means with 95% intervals, the difference with
    Welch's interval) and cost of ``reference`` and ``baseline``, every figure from the
    grid report, beside the paper's.
    """
    models = report["models"]
    ref, base = models.get(reference, {}), models.get(baseline, {})
    d2 = models.get(f"{reference}-d2heads", {})

    def acc(entry, task):
        stats = entry.get("accuracy", {}).get(task, {}).get("AP50")
        if not stats:
            return "not measured yet"
        return f"{format_interval(stats)}, {stats['n']} seed{'s' if stats['n'] != 1 else ''}"

    def cost(entry, point, key, scale=1.0, digits=0, unit=""):
        value = (entry.get("cost", {}).get(point) or {}).get(key)
        return format_number(value, scale, digits, unit, missing="not measured yet")

    def ratio(key, point=None):
        if point:
            a = (ref.get("cost", {}).get(point) or {}).get(key)
            b = (base.get("cost", {}).get(point) or {}).get(key)
        else:
            a, b = ref.get(key), base.get(key)
        return f" ({b / a:.2f}x)" if a and b else ""

    pair = report.get("pairs", {}).get(baseline) or {}
    if all(pair.get(t) for t in TASKS):
        difference = "; ".join(f"{t} {format_difference(pair[t])}" for t in TASKS)
    else:
        difference = "not measured yet (two seeds each needed)"
    ap_point = (report.get("benchmarks", {}).get("ap") or {}).get("setting", "where AP is measured")
    missing = "not measured yet"
    paper = ATTO_MASKRCNN

    def row(label, a, b="", p=""):
        return f"| {label} | {a} | {b} | {p} |"

    rows = [
        row("", f"Atto-MaskRCNN ({reference})", "ResNet-50-FPN Mask R-CNN", "paper"),
        "|:--|:--|:--|:--|",
        row(
            "box AP50, `voc_synth_grid_val`, mean [95% interval]",
            acc(ref, "box"),
            acc(base, "box"),
            f"APd ~{paper['box_ap']} (VOC 2012; IoU threshold not stated)",
        ),
        row(
            "mask AP50, same",
            acc(ref, "mask"),
            acc(base, "mask"),
            f"APm ~{paper['mask_ap']:.0f} (VOC 2012)",
        ),
        row(f"{reference} − {baseline}, AP50 [95% interval, Welch]", difference),
        row(
            "parameters",
            format_number(ref.get("params"), 1e6, 2, "M", missing),
            format_number(base.get("params"), 1e6, 2, "M", missing) + ratio("params"),
            f"{paper['params'] / 1e6:.1f}M (R50 ~{paper['params_ratio_vs_r50']:.0f}x)",
        ),
        row(
            "mult-adds, 800x1067",
            format_number(ref.get("mult_adds"), 1e9, 1, "G", missing),
            format_number(base.get("mult_adds"), 1e9, 1, "G", missing) + ratio("mult_adds"),
            f"{paper['mult_adds'] / 1e9:.0f}G (R50 ~{paper['mult_adds_ratio_vs_r50']:.0f}x; "
            "input size not stated)",
        ),
        row(
            f"parameters, mult-adds with Detectron2's FPN/head widths ({reference}-d2heads)",
            f"{format_number(d2.get('params'), 1e6, 2, 'M', '-')}, "
            f"{format_number(d2.get('mult_adds'), 1e9, 1, 'G', '-')}",
        ),
        row(
            f"CPU latency, eager, {ap_point}",
            cost(ref, "ap", "latency_ms", unit=" ms"),
            cost(base, "ap", "latency_ms", unit=" ms") + ratio("latency_ms", "ap"),
        ),
        row(
            "CPU latency, eager, 800x1067, 1000 proposals",
            cost(ref, "voc", "latency_ms", unit=" ms"),
            cost(base, "voc", "latency_ms", unit=" ms") + ratio("latency_ms", "voc"),
        ),
        row(
            "inference memory at 800 (weights + one inference)",
            cost(ref, "voc", "memory_mb", unit=" MB"),
            cost(base, "voc", "memory_mb", unit=" MB") + ratio("memory_mb", "voc"),
        ),
    ]
    return "\n".join(rows)
