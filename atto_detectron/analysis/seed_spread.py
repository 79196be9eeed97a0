"""
The seed-spread study's table (tools/measure_seed_spread.py): how far box and mask AP50
move between seeds of AttoNet-A under each recipe, set of weights and validation set.
"""

from typing import Dict

from .intervals import format_interval, std_interval

__all__ = ["format_seed_spread"]


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
