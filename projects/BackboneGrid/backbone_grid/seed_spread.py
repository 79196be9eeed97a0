"""
The seed-spread study's table (:mod:`.spread_study`): how far box and mask AP50 move
between seeds of AttoNet-A under each recipe, set of weights and validation set.
"""

from typing import Dict, List

from atto_detectron.analysis.intervals import (
    format_interval,
    pooled_std,
    seeds_needed,
    std_interval,
)

__all__ = ["format_seed_spread", "pooled_spread", "protocol_choice"]


def format_seed_spread(report: Dict) -> str:
    """The study as Markdown: one row per variant, its seeds, means and spreads."""
    lines = [
        f"{report.get('model', 'AttoNet-A')}, several seeds per recipe; each run's last "
        "weights and its weight average evaluated on both validation sets. Standard "
        "deviation over seeds, and the mean with its 95% interval. Written by "
        f"`{report['command']}` (`docs/results/seed_spread.json`).",
        "",
        "| variant | seeds | box AP50 std [95%] | mask AP50 std [95%] | box AP50 | mask AP50 |",
        "|:--|--:|--:|--:|--:|--:|",
    ]
    for variant in report["variants"]:
        box, mask = variant["box"], variant["mask"]
        if not box.get("values"):
            continue
        lines.append(
            f"| {variant['label']} | {len(variant['seeds'])} | {_spread(box)} | "
            f"{_spread(mask)} | {format_interval(box)} | {format_interval(mask)} |"
        )
    for note in report.get("notes", []):
        lines += ["", note]
    return "\n".join(lines)


def _spread(stats: Dict) -> str:
    interval = std_interval(stats["std"], len(stats["values"]) - 1)
    if interval is None:
        return "-"
    return f"{stats['std']:.2f} [{interval[0]:.2f}, {interval[1]:.2f}]"


def pooled_spread(report: Dict, weights: str, dataset: str) -> Dict:
    """
    The seed standard deviation pooled over the recipes (each about its own mean), of
    the variants with ``weights`` evaluated on ``dataset``: one variant per recipe, so
    every run counts once.

    Returns:
        dict: "recipes" (how many pooled), "dof", and per task ("box", "mask") the pooled
        std and its 95% interval (``(low, high)``); empty with fewer than 2 recipes.
    """
    variants = [
        v
        for v in report.get("variants", [])
        if v.get("weights") == weights
        and v.get("dataset") == dataset
        and len(v["box"].get("values", [])) >= 2
    ]
    if len(variants) < 2:
        return {}
    dof = sum(len(v["box"]["values"]) - 1 for v in variants)
    pooled = {"recipes": len(variants), "dof": dof}
    for task in ("box", "mask"):
        std = pooled_std([v[task]["values"] for v in variants])
        pooled[task] = {"std": std, "interval": std_interval(std, dof)}
    return pooled


def protocol_choice(
    report: Dict, chosen: Dict, half_width: float, minimum: int, target_std: float = None
) -> List[str]:
    """
    Sentences on the variant the grid's protocol uses (``chosen``: its recipe, weights
    and dataset): its spread with the interval, the others' range, the spread pooled over
    the recipes against ``target_std`` (where given), and the seeds per model that the
    protocol's spread asks for (Welch half-width at most ``half_width`` AP50, at least
    ``minimum``).
    """
    measured = [v for v in report.get("variants", []) if len(v["box"].get("values", [])) >= 2]
    picked = [v for v in measured if all(v.get(k) == value for k, value in chosen.items())]
    if not picked:
        return []
    variant = picked[0]
    worst = {id(v): max(v["box"]["std"], v["mask"]["std"]) for v in measured}
    spread = worst[id(variant)]
    lowest = min(measured, key=lambda v: worst[id(v)])
    interval = std_interval(spread, len(variant["box"]["values"]) - 1)
    lines = [
        f"The grid's protocol is \"{variant['label']}\": its larger seed standard "
        f"deviation (box or mask AP50) is {spread:.2f} [95%: {interval[0]:.2f}, "
        f"{interval[1]:.2f}]; across the variants measured it ranges from "
        f"{min(worst.values()):.2f} to {max(worst.values()):.2f}, each estimate as "
        f"uncertain as its interval says.",
    ]
    if lowest is not variant:
        other = std_interval(worst[id(lowest)], len(lowest["box"]["values"]) - 1)
        verdict = (
            "its interval overlaps the protocol's: it is not resolved as less noisy"
            if other[1] >= interval[0]
            else "resolved as less noisy than the protocol's"
        )
        lines.append(
            f"The lowest estimate is \"{lowest['label']}\" ({worst[id(lowest)]:.2f}); "
            f"{verdict}."
        )
    pooled = pooled_spread(report, variant.get("weights"), variant.get("dataset"))
    if pooled and target_std is not None:
        verdicts = []
        for task in ("box", "mask"):
            std, (low, high) = pooled[task]["std"], pooled[task]["interval"]
            if low > target_std:
                verdict = f"above the target of {target_std}, resolved"
            elif high <= target_std:
                verdict = f"at most the target of {target_std}, resolved"
            else:
                verdict = f"not resolved against the target of {target_std}"
            verdicts.append(f"{std:.2f} [95%: {low:.2f}, {high:.2f}] {task} AP50 ({verdict})")
        lines.append(
            f"Pooled over the {pooled['recipes']} recipes' runs with these weights and "
            f"validation set ({pooled['dof']} degrees of freedom; each recipe about its own "
            f"mean), the seed standard deviation is {' and '.join(verdicts)}."
        )
    try:
        seeds = seeds_needed(spread, half_width, minimum)
        lines.append(
            f"At this spread, {seeds} seeds per model give Welch's 95% interval of a "
            f"difference a half-width of at most {half_width} AP50, which sizes the grid "
            f"until its own runs measure the spread."
        )
    except ValueError as e:
        lines.append(str(e))
    return lines
