"""The report of a design search: the family's table (markdown and JSON) and its plot."""

import json
import math
import os
from typing import Dict, List, Mapping, Optional, Sequence, Union

from atto_detectron.analysis.formatting import MISSING, format_number
from atto_detectron.checkpoint import atomic_write
from atto_detectron.modeling import AttoNetSpec

from .family import derive_family, prototype_score_to_beat
from .neck import NeckGenome
from .records import Figures, SearchState

__all__ = [
    "family_summary",
    "format_family_table",
    "latency_front",
    "plot_family",
    "write_report",
]

_REQUIREMENT_LABELS = {
    "min_accuracy": ("{acc} >= {value:g}%", None),
    "min_mask_accuracy": ("mask AP50 >= {value:g}%", None),
    "max_params": ("params <= {value}", "count"),
    "max_mult_adds": ("mult-adds <= {value}", "count"),
    "max_latency_ms": ("latency <= {value:g} ms", None),
}


def _count(value: Optional[float]) -> str:
    """A count with 3 significant digits and a K, M or G suffix: "66.1K", "540K", "1.2M"."""
    if value is None:
        return MISSING
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3), ("", 1.0)):
        if value >= scale:
            break
    scaled = value / scale
    digits = max(0, 2 - math.floor(math.log10(scaled))) if scaled > 0 else 0
    text = format_number(value, scale, digits)
    # No trailing zeros, as in the budgets that people write ("1.2M", not "1.20M").
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text + unit


def _widths(spec: AttoNetSpec, neck: Optional[NeckGenome] = None) -> str:
    """ "stem / o_res2-o_res3-... x d_res2-d_res3-..." of a spec, and its neck."""
    stages = "-".join(str(modules[0].out_channels) for modules in spec.stages)
    depths = "-".join(str(len(modules)) for modules in spec.stages)
    text = f"{spec.stem_channels} / {stages} x {depths}"
    return text if neck is None else f"{text}, {neck.describe()}"


def latency_front(points: Sequence[Mapping]) -> List[Mapping]:
    """
    The points (with "latency_ms" and "accuracy") that no other point beats in both (as
    fast or faster and at least as accurate, better in one), fastest first.
    """
    timed = [p for p in points if p.get("latency_ms") is not None and p.get("accuracy") is not None]
    front, best = [], -math.inf
    for point in sorted(timed, key=lambda p: (p["latency_ms"], -p["accuracy"])):
        if point["accuracy"] > best:
            front.append(point)
            best = point["accuracy"]
    return front


def _figures(figures: Figures) -> Dict:
    """The figures that the report shows."""
    return {
        "accuracy": figures.accuracy,
        "mask_accuracy": figures.mask_accuracy,
        "params": figures.params,
        "mult_adds": figures.mult_adds,
        "latency_ms": figures.latency_ms,
        "latencies_ms": figures.latencies_ms,
        "netscore": figures.netscore,
        "score": figures.score,
        "met": figures.met,
        "feasible": figures.feasible,
    }


def family_summary(state: Union[SearchState, Mapping]) -> Dict:
    """
    Args:
        state: the search state, or its JSON form (the state file's content).

    Returns:
        dict: "prototype" and "family" rows (each with "search" and "final" figures: the
        final ones are the retrained network's when the family was retrained), the
        generators and whether each joined the sequence, and every candidate's figures.
    """
    if isinstance(state, Mapping):
        state = SearchState.from_dict(state)
    prototype = state.prototype_record
    family = derive_family(state)
    try:
        requirements = state.resolved_requirements()
    except ValueError:  # a peer is not measured yet
        requirements = state.requirements
    in_sequence = {member.generator for member in family}
    rows = []
    for member in family:
        record = member.candidate
        final = state.retrained.get(record.id)
        # The verdict is on the final figures: retrained from scratch, a member can miss
        # a floor it met after fine-tuning in the search.
        figures = (final or record).figures
        beats_prototype = bool(
            figures.score is not None and figures.score > prototype_score_to_beat(prototype.figures)
        )
        rows.append(
            {
                "name": member.name,
                "generator": member.generator,
                "candidate": record.id,
                "widths": _widths(record.spec, record.neck),
                "search": _figures(record.figures),
                "final": _figures(final.figures) if final else None,
                "final_schedule": final.schedule if final else None,
                "spec_file": (final or record).spec_file,
                "weights": (final or record).weights,
                "beats_prototype": beats_prototype,
                "kept": bool(figures.feasible and beats_prototype),
            }
        )
    generators = []
    for generator in state.generators:
        k = generator.index
        own = [c for c in state.candidates if c.generator == k]
        feasible = [
            c.figures.score for c in own if c.figures.feasible and c.figures.score is not None
        ]
        generators.append(
            {
                "index": k,
                "candidates": [c.id for c in own],
                "feasible": len(feasible),
                "best_score": max(feasible) if feasible else None,
                "in_sequence": k in in_sequence,
            }
        )
    return {
        "task": state.task,
        "accuracy_name": state.accuracy_name,
        "input_size": list(state.input_size),
        "objective": state.requirements.objective,
        "latency_engines": list(state.settings.latency.engines),
        # Numbers (peers' figures in place of references, once the peers are measured).
        "requirements": requirements.to_dict(),
        "requirements_given": state.requirements.to_dict(),
        "peers": {
            name: dict(peer.to_dict(), mask_accuracy=peer.figures()["mask_accuracy"])
            for name, peer in state.peers.items()
        },
        "prototype": dict(
            _figures(prototype.figures),
            name=prototype.name,
            spec_file=prototype.spec_file,
            widths=_widths(prototype.spec, prototype.neck),
        ),
        "family": rows,
        "kept": [row["name"] for row in rows if row["kept"]],
        "generators": generators,
        "candidates": [
            dict(
                _figures(c.figures),
                id=c.id,
                generator=c.generator,
                parent=c.parent,
                widths=_widths(c.spec, c.neck),
            )
            for c in state.candidates
        ],
        "search_seconds": state.search_seconds,
    }


_OBJECTIVE_LABELS = {
    "netscore": ("NetScore", "NetScore: alpha = 2, beta = gamma = 0.5"),
    "latency": (
        "latency score",
        "latency score (the objective): 20 log10(a^2 / (p^0.5 t^0.5)), a in percent, p "
        "parameters in millions, t latency in ms",
    ),
}


def _requirements_text(
    requirements: Mapping, accuracy_name: str, given: Optional[Mapping] = None
) -> List[str]:
    texts = []
    for key, (template, kind) in _REQUIREMENT_LABELS.items():
        value = requirements.get(key)
        if isinstance(value, Mapping) and "of" in value:  # a peer not measured yet
            texts.append(f"{key} of {value['of']}")
            continue
        if isinstance(value, Mapping):  # a latency budget per engine
            budgets = ", ".join(f"{ms:g} ms in {engine}" for engine, ms in value.items())
            text = f"latency <= {budgets}"
        elif value is not None:
            shown = _count(value) if kind == "count" else value
            text = template.format(acc=accuracy_name, value=shown)
        else:
            continue
        reference = (given or {}).get(key)
        if isinstance(reference, Mapping) and "of" in reference:
            times = reference.get("times", 1.0)
            text += f" ({'' if times == 1.0 else f'{times:g} x '}{reference['of']})"
        texts.append(text)
    return texts


def _latency_engines(summary: Mapping) -> List[str]:
    """The engines whose latencies get a column each: none where one latency column does."""
    engines = summary.get("latency_engines") or []
    return engines if len(engines) > 1 else []


def _latency_header(summary: Mapping) -> str:
    engines = _latency_engines(summary)
    return " | ".join(f"latency {e}" for e in engines) if engines else "latency"


def _latency_cells(figures: Mapping, engines: Sequence[str], digits: int = 2) -> List[str]:
    """The latency in each of ``engines``, or the one latency without them."""
    if not engines:
        return [format_number(figures["latency_ms"], digits=digits, unit=" ms")]
    by_engine = figures.get("latencies_ms") or {}
    return [format_number(by_engine.get(e), digits=digits, unit=" ms") for e in engines]


def _peer_lines(summary: Mapping) -> List[str]:
    """The peers' table (empty without peers)."""
    if not summary.get("peers"):
        return []
    acc = summary["accuracy_name"]
    masks = _shows_masks(summary)
    engines = _latency_engines(summary)
    header = (
        f"| peer | config | {acc} | "
        + ("mask AP50 | " if masks else "")
        + f"params | mult-adds | {_latency_header(summary)} |"
    )
    lines = [
        "",
        f"Peers (measured once, at the start of the search; {acc} after the prototype's "
        f"schedule and seed, latency as the candidates'):",
        "",
        header,
        "|---" * (header.count("|") - 1) + "|",
    ]
    for name, peer in summary["peers"].items():
        mask = f"{format_number(peer.get('mask_accuracy'), digits=2)} | " if masks else ""
        lines.append(
            f"| {name} | {peer['config_file']} | {format_number(peer['accuracy'], digits=2)} | "
            f"{mask}{_count(peer['params'])} | {_count(peer['mult_adds'])} | "
            f"{' | '.join(_latency_cells(peer, engines))} |"
        )
    return lines


def _shows_masks(summary: Mapping) -> bool:
    # Mask AP50 columns where a requirement is on it.
    return summary.get("requirements", {}).get("min_mask_accuracy") is not None


def _met_text(figures: Mapping) -> str:
    if not figures["met"]:
        return "none set"
    return ", ".join(f"{k} {'yes' if ok else 'NO'}" for k, ok in figures["met"].items())


def _figure_cells(
    search: Mapping,
    final: Mapping,
    score: bool = False,
    masks: bool = False,
    engines: Sequence[str] = (),
) -> str:
    """
    The table's cells from accuracy in search to the final requirements (with the
    objective's score after NetScore when ``score``, the final mask AP50 after the final
    accuracy when ``masks``, a latency per engine of ``engines`` where given).
    """
    cells = [
        format_number(search["accuracy"], digits=2),
        format_number(final["accuracy"], digits=2),
    ]
    if masks:
        cells.append(format_number(final.get("mask_accuracy"), digits=2))
    cells += [
        _count(final["params"]),
        _count(final["mult_adds"]),
        *_latency_cells(final, engines),
        format_number(final["netscore"], digits=2),
    ]
    if score:
        cells.append(format_number(final.get("score"), digits=2))
    return " | ".join(cells + [_met_text(final)])


def format_family_table(summary: Mapping) -> str:
    """The report as markdown: requirements, the prototype and family table, generators."""
    acc = summary["accuracy_name"]
    h, w = summary["input_size"]
    objective = summary.get("objective", "netscore")
    score_name, score_text = _OBJECTIVE_LABELS[objective]
    extra = objective != "netscore"  # the objective's own column after NetScore
    requirements = _requirements_text(
        summary["requirements"], acc, summary.get("requirements_given")
    ) or ["none"]
    masks = _shows_masks(summary)
    engines = _latency_engines(summary)
    header = (
        f"| network | from | stem / stage widths x depths | {acc} in search | {acc} final | "
        + ("mask AP50 final | " if masks else "")
        + f"params | mult-adds | {_latency_header(summary)} | NetScore final | "
        + (f"{score_name} final | " if extra else "")
        + "requirements (final) | kept |"
    )
    lines = [
        f"# Design search: {summary['task']}",
        "",
        f"Requirements (indicator function): {'; '.join(requirements)}. Parameters and "
        f"mult-adds at {h}x{w}. Candidates are ranked by {score_name}. {score_text}.",
        *_peer_lines(summary),
        "",
        header,
        "|---" * (header.count("|") - 1) + "|",
    ]
    p = summary["prototype"]
    lines.append(
        f"| {p['name']} (prototype) | human | {p['widths']} | "
        f"{_figure_cells(p, p, extra, masks, engines)} | - |"
    )
    for row in summary["family"]:
        final = row["final"] or row["search"]
        lines.append(
            f"| {row['name']} | G{row['generator']}, candidate {row['candidate']} | "
            f"{row['widths']} | {_figure_cells(row['search'], final, extra, masks, engines)} | "
            f"{'yes' if row['kept'] else 'NO'} |"
        )
    if not summary["family"]:
        lines.append(
            "| (no family: no generator produced a network that meets the requirements with "
            f"a higher {score_name} than the prototype) |"
        )
    retrained = all(row["final_schedule"] == "scratch" for row in summary["family"])
    lines += [
        "",
        f'"{acc} in search": after inheriting the parent\'s weights and fine-tuning. '
        + (
            '"final": the same network retrained from scratch on the prototype\'s schedule '
            "and seed (the fair comparison with the prototype)."
            if retrained
            else '"final": the search figures (the family was not retrained).'
        )
        + ' "kept": the final figures meet the requirements and beat the prototype\'s '
        f"{score_name} (where the prototype meets them). Kept: "
        + (", ".join(summary["kept"]) or "none")
        + ".",
        "",
        f"| generator | candidates | meeting the requirements | best {score_name} | "
        "in the sequence |",
        "|---|---|---|---|---|",
    ]
    for g in summary["generators"]:
        lines.append(
            f"| G{g['index']} | {len(g['candidates'])} | {g['feasible']} | "
            f"{format_number(g['best_score'], digits=2)} | "
            f"{'yes' if g['in_sequence'] else 'no'} |"
        )
    front = latency_front(summary["candidates"])
    if front:
        engine = f" in {engines[0]}" if engines else ""
        front_header = (
            f"| candidate | {_latency_header(summary)} | {acc} | stem / stage widths x depths |"
        )
        lines += [
            "",
            f"Latency-accuracy front of the candidates (search figures; none is faster{engine} "
            "and more accurate):",
            "",
            front_header,
            "|---" * (front_header.count("|") - 1) + "|",
        ]
        for point in front:
            lines.append(
                f"| {point['id']} | {' | '.join(_latency_cells(point, engines, digits=1))} | "
                f"{format_number(point['accuracy'], digits=2)} | {point.get('widths', MISSING)} |"
            )
    lines += ["", f"Search time: {format_number(summary['search_seconds'], 60, 1, ' min')}.", ""]
    return "\n".join(lines)


def plot_family(summary: Mapping, path: str) -> str:
    """
    Writes a PNG with three panels: accuracy against mult-adds and against parameters
    (every candidate, the prototype and the family, with the accuracy floor and the
    budgets), and the objective's score (NetScore unless the requirements chose another)
    of every candidate in search order.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    acc = summary["accuracy_name"]
    # Numbers only (a requirement of a peer that is not measured yet has no line); of a
    # latency budget per engine, the objective's engine's, whose latencies are plotted.
    requirements = dict(summary["requirements"])
    engines = summary.get("latency_engines") or []
    if isinstance(requirements.get("max_latency_ms"), Mapping) and engines:
        requirements["max_latency_ms"] = requirements["max_latency_ms"].get(engines[0])
    requirements = {k: v for k, v in requirements.items() if isinstance(v, (int, float))}
    score_name = _OBJECTIVE_LABELS[summary.get("objective", "netscore")][0]
    candidates = summary["candidates"][1:]
    prototype = summary["prototype"]
    panels = [("mult_adds", "max_mult_adds", "mult-adds"), ("params", "max_params", "parameters")]
    timed = any(c.get("latency_ms") is not None for c in summary["candidates"])
    if timed:
        in_engine = f" in {engines[0]}" if len(engines) > 1 else ""
        panels.append(("latency_ms", "max_latency_ms", f"latency{in_engine} (ms)"))
    fig, axes = plt.subplots(1, len(panels) + 1, figsize=(5.4 * (len(panels) + 1), 4.8))
    for ax, (key, budget, label) in zip(axes, panels):
        ok = [c for c in candidates if c["feasible"]]
        bad = [c for c in candidates if not c["feasible"]]
        ax.scatter(
            [c[key] for c in ok],
            [c["accuracy"] for c in ok],
            s=18,
            c="0.6",
            label="candidates (search)",
        )
        ax.scatter(
            [c[key] for c in bad],
            [c["accuracy"] for c in bad],
            s=18,
            c="0.6",
            marker="x",
            label="candidates failing the requirements",
        )
        ax.scatter(
            [prototype[key]],
            [prototype["accuracy"]],
            s=120,
            c="k",
            marker="*",
            label=f"prototype {prototype['name']}",
            zorder=3,
        )
        for row in summary["family"]:
            final = row["final"] or row["search"]
            ax.scatter([final[key]], [final["accuracy"]], s=60, zorder=3)
            ax.annotate(
                row["name"],
                (final[key], final["accuracy"]),
                fontsize=8,
                xytext=(4, 4),
                textcoords="offset points",
            )
        if requirements.get("min_accuracy") is not None:
            ax.axhline(
                requirements["min_accuracy"], ls="--", c="tab:red", lw=1, label="accuracy floor"
            )
        if requirements.get(budget) is not None:
            ax.axvline(requirements[budget], ls=":", c="tab:red", lw=1, label=f"{label} budget")
        ax.set_xscale("log")
        ax.set_xlabel(label)
        ax.set_ylabel(f"{acc} (%)")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7, loc="lower right")
    axes[0].set_title("family (final figures) and all candidates")
    if timed:
        ax = axes[2]
        front = latency_front(summary["candidates"])
        ax.step(
            [p["latency_ms"] for p in front],
            [p["accuracy"] for p in front],
            where="post",
            c="tab:blue",
            lw=1,
            label="latency-accuracy front (search figures)",
        )
        for name, peer in summary.get("peers", {}).items():
            if peer.get("latency_ms") is None or peer.get("accuracy") is None:
                continue
            ax.scatter([peer["latency_ms"]], [peer["accuracy"]], s=50, c="tab:green", marker="s")
            ax.annotate(
                name,
                (peer["latency_ms"], peer["accuracy"]),
                fontsize=8,
                xytext=(4, -10),
                textcoords="offset points",
            )
        ax.legend(fontsize=7, loc="lower right")
        ax.set_title("latency: candidates, front and peers (squares)")

    ax = axes[-1]
    ids = [c["id"] for c in candidates]
    scores = [
        c["score"] if c["score"] is not None and c["feasible"] else math.nan for c in candidates
    ]
    ax.plot(ids, scores, "o", c="0.6", ms=4, label="candidates meeting the requirements")
    if prototype["score"] is not None:
        ax.axhline(prototype["score"], c="k", lw=1, label="prototype")
    for row in summary["family"]:
        ax.plot([row["candidate"]], [row["search"]["score"]], "o", ms=8)
        ax.annotate(
            row["name"],
            (row["candidate"], row["search"]["score"]),
            fontsize=8,
            xytext=(4, 4),
            textcoords="offset points",
        )
    ax.set_xlabel("candidate")
    ax.set_ylabel(f"{score_name} (search)")
    ax.set_title("successively better generators")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_report(state: Mapping, output_dir: str) -> Dict[str, str]:
    """
    Writes ``report.json``, ``report.md`` and ``family.png`` to ``output_dir``.

    Returns:
        dict: "json", "markdown", "plot" -> path.
    """
    summary = family_summary(state)
    paths = {
        "json": os.path.join(output_dir, "report.json"),
        "markdown": os.path.join(output_dir, "report.md"),
        "plot": os.path.join(output_dir, "family.png"),
    }
    atomic_write(paths["json"], lambda f: json.dump(summary, f, indent=2), mode="w")
    atomic_write(paths["markdown"], lambda f: f.write(format_family_table(summary)), mode="w")
    plot_family(summary, paths["plot"])
    return paths
